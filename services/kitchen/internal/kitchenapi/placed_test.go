package kitchenapi_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"github.com/pizzashop/pizzashop/services/kitchen/internal/kitchen"
	"github.com/pizzashop/pizzashop/services/kitchen/internal/kitchenapi"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// orderStream declares the ORDER stream the order service owns and starts
// the placed-orders consumer on it, as main does.
func (e *env) orderStream(t *testing.T) {
	t.Helper()
	ctx := testContext(t)
	if err := e.bus.EnsureStream(ctx, jetstream.StreamConfig{Name: "ORDER", Subjects: []string{"order.>"}}); err != nil {
		t.Fatalf("EnsureStream(ORDER): %v", err)
	}
	e.wg.Go(func() {
		if err := e.bus.Consume(e.ctx, kitchenapi.OrdersConsumer, e.srv.HandlePlaced); err != nil {
			t.Errorf("Consume: %v", err)
		}
	})
}

// placedEvent is what the order service publishes when order id is placed.
func placedEvent(id string) *orderv1.OrderStatusChanged {
	o := &orderv1.Order{
		Id: id, CustomerName: "Ada Lovelace", Status: orderv1.OrderStatus_ORDER_STATUS_PLACED,
		Item:        &orderv1.OrderItem{PizzaId: "margherita", Size: commonv1.Size_SIZE_LARGE},
		Fulfillment: orderv1.Fulfillment_FULFILLMENT_PICKUP, CreateTime: timestamppb.New(orderAt),
		Price: &menuv1.PriceBreakdown{Pizza: &menuv1.PriceLine{ItemId: "margherita", Name: "Margherita"}},
	}
	return &orderv1.OrderStatusChanged{EventId: outbox.NewID(), OccurTime: timestamppb.New(orderAt),
		Status: orderv1.OrderStatus_ORDER_STATUS_PLACED, Order: o}
}

// publish puts ev on subject as the order service's relay would and
// returns its stream sequence.
func (e *env) publish(t *testing.T, subject string, ev *orderv1.OrderStatusChanged) uint64 {
	t.Helper()
	data, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := e.bus.JS.Publish(testContext(t), subject, data, jetstream.WithMsgID(ev.GetEventId()))
	if err != nil {
		t.Fatalf("publish %s: %v", subject, err)
	}
	return ack.Sequence
}

// waitConsumed waits until the placed-orders consumer has acknowledged (or
// dead-lettered) everything up to stream sequence seq.
func (e *env) waitConsumed(t *testing.T, seq uint64) {
	t.Helper()
	ctx := testContext(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		cons, err := e.bus.JS.Consumer(ctx, "ORDER", kitchenapi.OrdersConsumer.Durable)
		if err == nil {
			info, err := cons.Info(ctx)
			if err != nil {
				t.Fatalf("consumer info: %v", err)
			}
			if info.AckFloor.Stream >= seq {
				return
			}
		} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Fatalf("consumer: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("placed-orders consumer did not get past stream sequence %d within 10s", seq)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHandlePlacedRefusesBadIDs: an order id that is not one of ours would
// make a ticket no cook can start, mark ready or reject (the API answers
// not found for such ids) that sits in the queue, and in every estimate,
// for good. Such an event goes to the dead letters instead.
func TestHandlePlacedRefusesBadIDs(t *testing.T) {
	e := newEnv(t)
	e.orderStream(t)
	ctx := testContext(t)
	for _, id := range []string{"BAD-ID", "a.b"} {
		e.publish(t, "order.placed.bad", placedEvent(id))
	}
	e.waitConsumed(t, e.publish(t, "order.placed.good1", placedEvent("good1")))
	if tk, err := e.store.Get(ctx, "good1"); err != nil || tk.Status != kitchen.StatusQueued {
		t.Errorf("Get(good1) = %s, %v; want a queued ticket", tk.Status, err)
	}
	for _, id := range []string{"BAD-ID", "a.b"} {
		if _, err := e.store.Get(ctx, id); !errors.Is(err, kitchen.ErrNotFound) {
			t.Errorf("Get(%q) error = %v, want ErrNotFound: a bad order id makes no ticket", id, err)
		}
	}
	if n, err := e.srv.QueueLength(ctx); err != nil || n != 1 {
		t.Errorf("QueueLength = %d, %v; want 1", n, err)
	}
}
