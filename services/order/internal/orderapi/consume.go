package orderapi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/natsx"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	deliveryv1 "github.com/pizzashop/pizzashop/proto/pizzashop/delivery/v1"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	"github.com/pizzashop/pizzashop/services/order/internal/order"
	"google.golang.org/protobuf/proto"
)

// The durable consumers through which the order service follows the kitchen
// and the delivery board.
var (
	KitchenConsumer  = natsx.ConsumerConfig{Stream: "KITCHEN", Durable: "order-kitchen-events", FilterSubjects: []string{"kitchen.*.*"}}
	DeliveryConsumer = natsx.ConsumerConfig{Stream: "DELIVERY", Durable: "order-delivery-events", FilterSubjects: []string{"delivery.*.*"}}
)

var fromTicket = map[kitchenv1.TicketStatus]order.Status{
	kitchenv1.TicketStatus_TICKET_STATUS_QUEUED:    order.StatusAccepted,
	kitchenv1.TicketStatus_TICKET_STATUS_BAKING:    order.StatusBaking,
	kitchenv1.TicketStatus_TICKET_STATUS_READY:     order.StatusReady,
	kitchenv1.TicketStatus_TICKET_STATUS_REJECTED:  order.StatusRejected,
	kitchenv1.TicketStatus_TICKET_STATUS_CANCELLED: order.StatusCancelled,
}

var fromDelivery = map[deliveryv1.DeliveryStatus]order.Status{
	deliveryv1.DeliveryStatus_DELIVERY_STATUS_OUT_FOR_DELIVERY: order.StatusOutForDelivery,
	deliveryv1.DeliveryStatus_DELIVERY_STATUS_DELIVERED:        order.StatusDelivered,
	deliveryv1.DeliveryStatus_DELIVERY_STATUS_PICKED_UP:        order.StatusPickedUp,
}

// HandleKitchen applies a ticket change to its order.
func (s *Server) HandleKitchen(ctx context.Context, m jetstream.Msg) error {
	var ev kitchenv1.TicketStatusChanged
	if err := proto.Unmarshal(m.Data(), &ev); err != nil {
		return natsx.Permanent(fmt.Errorf("decode ticket event: %w", err))
	}
	to, ok := fromTicket[ev.GetStatus()]
	t := ev.GetTicket()
	if !ok || t.GetId() == "" {
		return natsx.Permanent(fmt.Errorf("ticket event with status %s for %q", ev.GetStatus(), t.GetId()))
	}
	var estimate time.Time
	if t.GetEstimatedReadyTime() != nil {
		estimate = t.GetEstimatedReadyTime().AsTime()
	}
	return s.apply(ctx, t.GetId(), to, ev.GetOccurTime().AsTime(), t.GetReason(), estimate)
}

// HandleDelivery applies a delivery change to its order.
func (s *Server) HandleDelivery(ctx context.Context, m jetstream.Msg) error {
	var ev deliveryv1.DeliveryStatusChanged
	if err := proto.Unmarshal(m.Data(), &ev); err != nil {
		return natsx.Permanent(fmt.Errorf("decode delivery event: %w", err))
	}
	d := ev.GetDelivery()
	if d.GetId() == "" {
		return natsx.Permanent(errors.New("delivery event without an id"))
	}
	to, ok := fromDelivery[ev.GetStatus()]
	if !ok {
		return nil // waiting on the board: nothing changes for the order
	}
	return s.apply(ctx, d.GetId(), to, ev.GetOccurTime().AsTime(), "", time.Time{})
}

// apply moves an order forward. Repeated, stale and out-of-order events
// change nothing, so the same event may be applied any number of times.
func (s *Server) apply(ctx context.Context, id string, to order.Status, at time.Time, reason string, estimate time.Time) error {
	_, _, err := s.store.Update(ctx, id, func(o *order.Order) (bool, []outbox.Entry, error) {
		prev := o.Status
		moved := o.Advance(to, at, reason)
		// Only an event about where the order is now may move its
		// estimate: a late QUEUED after BAKING must not bring back the
		// queue's guess.
		estimated := o.Status == to && o.SetEstimate(estimate)
		switch {
		case !moved && !estimated:
			return false, nil, nil
		case o.Status == prev && !estimated:
			// A late step, recorded in the history: the order is where it
			// was, and its watchers have heard of that already.
			return true, nil, nil
		}
		ev, err := statusEvent(ctx, o)
		return true, []outbox.Entry{ev}, err
	})
	if errors.Is(err, order.ErrNotFound) {
		return natsx.Permanent(fmt.Errorf("event for unknown order %s: %w", id, err))
	}
	return err
}
