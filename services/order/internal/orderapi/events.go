package orderapi

import (
	"context"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"github.com/pizzashop/pizzashop/services/order/internal/order"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Stream is the JetStream stream the order service owns.
var Stream = jetstream.StreamConfig{
	Name:        "ORDER",
	Description: "Order status changes (pizzashop.order.v1.OrderStatusChanged)",
	Subjects:    []string{"order.>"},
	MaxAge:      30 * 24 * time.Hour,
}

// Subject is where the change of order id to status s is published:
// "order.<status>.<id>".
func Subject(s order.Status, id string) string {
	return "order." + strings.ToLower(s.String()) + "." + id
}

// statusEvent encodes the event for the order's current status.
func statusEvent(ctx context.Context, o *order.Order) (outbox.Entry, error) {
	ev := &orderv1.OrderStatusChanged{
		EventId:   outbox.NewID(),
		OccurTime: timestamppb.New(o.UpdateTime),
		Status:    orderv1.OrderStatus(o.Status),
		Order:     ToProto(o),
	}
	return outbox.NewEntry(ctx, Subject(o.Status, o.ID), ev.EventId, ev)
}
