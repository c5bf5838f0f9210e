package deliveryapi

import (
	"context"
	"fmt"
	"github.com/pizzashop/pizzashop/pkg/ids"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/auth"
	"github.com/pizzashop/pizzashop/pkg/errs"
	"github.com/pizzashop/pizzashop/pkg/natsx"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	deliveryv1 "github.com/pizzashop/pizzashop/proto/pizzashop/delivery/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"github.com/pizzashop/pizzashop/services/delivery/internal/delivery"
	"github.com/pizzashop/pizzashop/services/delivery/internal/deliverydb"
	"google.golang.org/protobuf/proto"
)

// Server implements DeliveryService and consumes ready orders.
type Server struct {
	deliveryv1.UnimplementedDeliveryServiceServer
	store *deliverydb.Store
	conn  *nats.Conn
	log   *slog.Logger
	now   func() time.Time

	// closing ends the live streams, which would otherwise hold a graceful
	// stop for its whole grace period.
	closing chan struct{}
	// KeepAlive is the longest silence on the board stream
	// (grpcx.DefaultKeepAlive when zero).
	KeepAlive time.Duration
	closeOnce sync.Once

	// boards shares the board streams' snapshots (watch.go).
	boards boards
}

// NewServer returns the delivery server. conn feeds the board streams.
func NewServer(store *deliverydb.Store, conn *nats.Conn, log *slog.Logger) *Server {
	return &Server{store: store, conn: conn, log: log, now: now, closing: make(chan struct{})}
}

// now is the time of a change. The store keeps milliseconds, so changes keep
// no more: a delivery reads back exactly as it was returned.
func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// EndWatches ends every WatchDeliveries stream, now and from now on, with
// Unavailable so that boards reconnect (to another replica). Call it when
// shutdown begins.
func (s *Server) EndWatches() { s.closeOnce.Do(func() { close(s.closing) }) }

// ReadyConsumer is the durable consumer that puts ready orders on the board
// or at the counter.
var ReadyConsumer = natsx.ConsumerConfig{Stream: "ORDER", Durable: "delivery-ready-orders", FilterSubjects: []string{"order.ready.*"}}

// HandleReady puts a ready order on the board (delivery) or at the counter
// (pickup) as a waiting delivery. A repeated event changes nothing; an event
// that can never make a delivery is dead-lettered.
func (s *Server) HandleReady(ctx context.Context, m jetstream.Msg) error {
	var ev orderv1.OrderStatusChanged
	if err := proto.Unmarshal(m.Data(), &ev); err != nil {
		return natsx.Permanent(fmt.Errorf("decode order event: %w", err))
	}
	o := ev.GetOrder()
	if ev.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_READY {
		return natsx.Permanent(fmt.Errorf("order %q: event status is %s, want ORDER_STATUS_READY", o.GetId(), ev.GetStatus()))
	}
	d, err := delivery.New(o.GetId(), handoverFromOrder(o), readyTime(&ev), s.now())
	if err != nil {
		return natsx.Permanent(fmt.Errorf("ready order %q: %w", o.GetId(), err))
	}
	entry, err := statusEvent(ctx, d)
	if err != nil {
		return err
	}
	// False for a repeat: the delivery exists and may have moved on.
	_, err = s.store.Insert(ctx, d, entry)
	return err
}

// readyTime is when the order became ready: the event's time, else its
// history's, else zero (now).
func readyTime(ev *orderv1.OrderStatusChanged) time.Time {
	if t := ev.GetOccurTime(); t != nil {
		return t.AsTime().Truncate(time.Millisecond)
	}
	for _, c := range ev.GetOrder().GetHistory() {
		if c.GetStatus() == orderv1.OrderStatus_ORDER_STATUS_READY && c.GetChangeTime() != nil {
			return c.GetChangeTime().AsTime().Truncate(time.Millisecond)
		}
	}
	return time.Time{}
}

// Page sizes of ListDeliveries.
const (
	defaultPageSize = 50
	maxPageSize     = 200
)

func fulfillmentFilter(field string, f orderv1.Fulfillment) (delivery.Fulfillment, error) {
	switch f {
	case orderv1.Fulfillment_FULFILLMENT_UNSPECIFIED:
		return 0, nil
	case orderv1.Fulfillment_FULFILLMENT_DELIVERY, orderv1.Fulfillment_FULFILLMENT_PICKUP:
		return delivery.Fulfillment(f), nil
	}
	return 0, errs.Invalid(field, "unknown fulfillment %d: must be FULFILLMENT_DELIVERY or FULFILLMENT_PICKUP", f)
}

// ListDeliveries lists deliveries in the order they became ready.
func (s *Server) ListDeliveries(ctx context.Context, req *deliveryv1.ListDeliveriesRequest) (*deliveryv1.ListDeliveriesResponse, error) {
	f := deliverydb.Filter{Statuses: delivery.OpenStatuses}
	if st := req.GetStatus(); st != deliveryv1.DeliveryStatus_DELIVERY_STATUS_UNSPECIFIED {
		if !delivery.Status(st).Valid() {
			return nil, errs.Invalid("status", "unknown delivery status %d", st)
		}
		f.Statuses = []delivery.Status{delivery.Status(st)}
	}
	var err error
	if f.Fulfillment, err = fulfillmentFilter("fulfillment", req.GetFulfillment()); err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, errs.Invalid("page_size", "must not be negative, got %d", size)
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	var after *delivery.Delivery
	if tok := req.GetPageToken(); tok != "" {
		// The token is the id of the last delivery of the previous page;
		// its ready time and id are where the next page starts.
		if !ids.Valid(tok) {
			return nil, errs.Invalid("page_token", "is not a token from a previous page")
		}
		d, err := s.store.Get(ctx, tok)
		if err != nil {
			if errs.KindOf(err) == errs.KindNotFound {
				return nil, errs.Invalid("page_token", "is not a token from a previous page")
			}
			return nil, err
		}
		after = &d
	}
	list, err := s.store.List(ctx, f, size+1, after)
	if err != nil {
		return nil, err
	}
	resp := &deliveryv1.ListDeliveriesResponse{}
	if len(list) > size {
		list = list[:size]
		resp.NextPageToken = list[size-1].ID()
	}
	for _, d := range list {
		resp.Deliveries = append(resp.Deliveries, toProto(d))
	}
	return resp, nil
}

// GetDelivery returns one delivery.
func (s *Server) GetDelivery(ctx context.Context, req *deliveryv1.GetDeliveryRequest) (*deliveryv1.GetDeliveryResponse, error) {
	if !ids.Valid(req.GetId()) {
		return nil, delivery.ErrNotFound
	}
	d, err := s.store.Get(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &deliveryv1.GetDeliveryResponse{Delivery: toProto(d)}, nil
}

// change makes a move on a delivery and stores it with its event.
func (s *Server) change(ctx context.Context, id string, move func(*delivery.Delivery) error) (*deliveryv1.Delivery, error) {
	if !ids.Valid(id) {
		return nil, delivery.ErrNotFound
	}
	d, _, err := s.store.Update(ctx, id, func(d *delivery.Delivery) (bool, []outbox.Entry, error) {
		if err := move(d); err != nil {
			return false, nil, err
		}
		e, err := statusEvent(ctx, *d)
		return true, []outbox.Entry{e}, err
	})
	if err != nil {
		return nil, err
	}
	return toProto(d), nil
}

// errNoCaller: the policy let through a call without a credential.
var errNoCaller = errs.New(errs.KindUnauthenticated, "UNAUTHENTICATED", "this call needs a courier credential")

// DispatchDelivery hands a waiting delivery order to the calling courier.
func (s *Server) DispatchDelivery(ctx context.Context, req *deliveryv1.DispatchDeliveryRequest) (*deliveryv1.DispatchDeliveryResponse, error) {
	c, ok := auth.FromContext(ctx)
	if !ok {
		return nil, errNoCaller
	}
	d, err := s.change(ctx, req.GetId(), func(d *delivery.Delivery) error { return d.Dispatch(c.Subject, s.now()) })
	if err != nil {
		return nil, err
	}
	return &deliveryv1.DispatchDeliveryResponse{Delivery: d}, nil
}

// DeliverDelivery marks a dispatched order handed over at the door by the
// calling courier, the one who took it.
func (s *Server) DeliverDelivery(ctx context.Context, req *deliveryv1.DeliverDeliveryRequest) (*deliveryv1.DeliverDeliveryResponse, error) {
	c, ok := auth.FromContext(ctx)
	if !ok {
		return nil, errNoCaller
	}
	d, err := s.change(ctx, req.GetId(), func(d *delivery.Delivery) error { return d.Deliver(c.Subject, s.now()) })
	if err != nil {
		return nil, err
	}
	return &deliveryv1.DeliverDeliveryResponse{Delivery: d}, nil
}

// PickupDelivery marks a waiting pickup order collected at the counter.
func (s *Server) PickupDelivery(ctx context.Context, req *deliveryv1.PickupDeliveryRequest) (*deliveryv1.PickupDeliveryResponse, error) {
	d, err := s.change(ctx, req.GetId(), func(d *delivery.Delivery) error { return d.Pickup(s.now()) })
	if err != nil {
		return nil, err
	}
	return &deliveryv1.PickupDeliveryResponse{Delivery: d}, nil
}
