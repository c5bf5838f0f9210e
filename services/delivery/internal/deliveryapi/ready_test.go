package deliveryapi_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/natsx"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	deliveryv1 "github.com/pizzashop/pizzashop/proto/pizzashop/delivery/v1"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"github.com/pizzashop/pizzashop/services/delivery/internal/delivery"
	"github.com/pizzashop/pizzashop/services/delivery/internal/deliveryapi"
	"github.com/pizzashop/pizzashop/services/delivery/internal/deliverydb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// orderStream declares the ORDER stream the order service owns and starts
// the ready-orders consumer on it, as main does.
func (e *env) orderStream(t *testing.T) jetstream.Stream {
	t.Helper()
	ctx := testContext(t)
	if err := e.bus.EnsureStream(ctx, jetstream.StreamConfig{Name: "ORDER", Subjects: []string{"order.>"}}); err != nil {
		t.Fatalf("EnsureStream(ORDER): %v", err)
	}
	st, err := e.bus.JS.Stream(ctx, "ORDER")
	if err != nil {
		t.Fatalf("Stream(ORDER): %v", err)
	}
	e.wg.Go(func() {
		if err := e.bus.Consume(e.ctx, deliveryapi.ReadyConsumer, e.srv.HandleReady); err != nil {
			t.Errorf("Consume: %v", err)
		}
	})
	return st
}

func money(minor int64) *commonv1.Money {
	return &commonv1.Money{AmountMinor: minor, CurrencyCode: "EUR"}
}

// readyEvent is what the order service publishes when order id is ready.
func readyEvent(id string, f orderv1.Fulfillment) *orderv1.OrderStatusChanged {
	o := &orderv1.Order{
		Id: id, CustomerId: "cust-ada", CustomerName: "Ada Lovelace", CustomerPhone: "+44 20 7946 0000",
		Item:        &orderv1.OrderItem{PizzaId: "margherita", Size: commonv1.Size_SIZE_LARGE, ToppingIds: []string{"mushrooms", "olives"}},
		Fulfillment: f, PaymentMethod: orderv1.PaymentMethod_PAYMENT_METHOD_CASH, Status: orderv1.OrderStatus_ORDER_STATUS_READY,
		Price: &menuv1.PriceBreakdown{
			Pizza: &menuv1.PriceLine{ItemId: "margherita", Name: "Margherita", Price: money(1500)},
			Toppings: []*menuv1.PriceLine{
				{ItemId: "mushrooms", Name: "Mushrooms", Price: money(200)},
				{ItemId: "olives", Name: "Black olives", Price: money(200)},
			},
			Total: money(1900), Size: commonv1.Size_SIZE_LARGE,
		},
		Revision: 5,
	}
	if f == orderv1.Fulfillment_FULFILLMENT_DELIVERY {
		o.DeliveryAddress = &commonv1.Address{Line1: "12 Analytical Row", City: "London", PostalCode: "N1 7AA", Instructions: "blue door"}
	}
	return &orderv1.OrderStatusChanged{EventId: outbox.NewID(), OccurTime: timestamppb.New(readyAt),
		Status: orderv1.OrderStatus_ORDER_STATUS_READY, Order: o}
}

// publish puts data on subject with message id msgID, as the order
// service's relay would, and returns its stream sequence.
func (e *env) publish(t *testing.T, subject, msgID string, data []byte) uint64 {
	t.Helper()
	ack, err := e.bus.JS.Publish(testContext(t), subject, data, jetstream.WithMsgID(msgID))
	if err != nil {
		t.Fatalf("publish %s: %v", subject, err)
	}
	if ack.Duplicate {
		t.Fatalf("publish %s: JetStream took message id %s for a duplicate", subject, msgID)
	}
	return ack.Sequence
}

// waitConsumed waits until the ready-orders consumer has acknowledged (or
// dead-lettered) everything up to stream sequence seq.
func (e *env) waitConsumed(t *testing.T, seq uint64) {
	t.Helper()
	ctx := testContext(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		cons, err := e.bus.JS.Consumer(ctx, "ORDER", deliveryapi.ReadyConsumer.Durable)
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
			t.Fatalf("ready-orders consumer did not get past stream sequence %d within 10s", seq)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHandleReady(t *testing.T) {
	e := newEnv(t)
	e.orderStream(t)
	ctx := testContext(t)

	ev := readyEvent("ord1", orderv1.Fulfillment_FULFILLMENT_DELIVERY)
	data, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	seq := e.publish(t, "order.ready.ord1", ev.GetEventId(), data)
	e.waitConsumed(t, seq)

	want := &deliveryv1.Delivery{
		Id: "ord1", Status: deliveryv1.DeliveryStatus_DELIVERY_STATUS_WAITING, Fulfillment: orderv1.Fulfillment_FULFILLMENT_DELIVERY,
		CustomerName: "Ada Lovelace", CustomerPhone: "+44 20 7946 0000",
		Address: &commonv1.Address{Line1: "12 Analytical Row", City: "London", PostalCode: "N1 7AA", Instructions: "blue door"},
		Summary: "Large Margherita + mushrooms, black olives", AmountDue: money(1900),
		PaymentMethod: orderv1.PaymentMethod_PAYMENT_METHOD_CASH, ReadyTime: timestamppb.New(readyAt), Revision: 1,
	}
	got, err := e.client.GetDelivery(e.courier(t), &deliveryv1.GetDeliveryRequest{Id: "ord1"})
	if err != nil {
		t.Fatalf("GetDelivery after the ready event: %v", err)
	}
	if diff := cmp.Diff(want, got.GetDelivery(), protocmp.Transform()); diff != "" {
		t.Errorf("delivery made from the ready order (-want +got):\n%s", diff)
	}

	// The same event again, as a second publish by the order service's
	// relay after a crash would send it, under another message id so that
	// JetStream does not collapse it.
	seq = e.publish(t, "order.ready.ord1", "again-"+ev.GetEventId(), data)
	e.waitConsumed(t, seq)
	list, err := e.store.List(ctx, deliverydb.Filter{}, 10, nil)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(list) != 1 || list[0].Revision() != 1 {
		t.Errorf("after the repeated event: %d deliveries, first at revision %d; want 1 at revision 1", len(list), list[0].Revision())
	}

	// The relay announces the new delivery, once.
	e.waitPublished(t, "delivery.waiting.ord1")
	e.waitFlushed(t)
	evs := e.published(t)
	if len(evs) != 1 {
		t.Fatalf("DELIVERY stream has %d events, want 1 (delivery.waiting.ord1)", len(evs))
	}
	if evs[0].GetStatus() != deliveryv1.DeliveryStatus_DELIVERY_STATUS_WAITING || !evs[0].GetOccurTime().IsValid() {
		t.Errorf("event status %s occur time %v, want WAITING and a time", evs[0].GetStatus(), evs[0].GetOccurTime())
	}
	if diff := cmp.Diff(want, evs[0].GetDelivery(), protocmp.Transform()); diff != "" {
		t.Errorf("delivery in the waiting event (-want +got):\n%s", diff)
	}
}

func TestHandleReadyPickup(t *testing.T) {
	e := newEnv(t)
	e.orderStream(t)
	ev := readyEvent("ord2", orderv1.Fulfillment_FULFILLMENT_PICKUP)
	ev.Order.DeliveryAddress = &commonv1.Address{Line1: "left over from an earlier draft"}
	ev.Order.Price.Toppings = nil
	ev.Order.Item.ToppingIds = nil
	data, _ := proto.Marshal(ev)
	e.waitConsumed(t, e.publish(t, "order.ready.ord2", ev.GetEventId(), data))

	d, err := e.store.Get(testContext(t), "ord2")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	r := d.Record()
	if r.Status != delivery.StatusWaiting || r.Handover.Fulfillment != delivery.FulfillmentPickup ||
		r.Handover.Address != nil || r.Handover.Summary != "Large Margherita" {
		t.Errorf("pickup delivery = %+v, want WAITING PICKUP, no address, summary %q", r, "Large Margherita")
	}
}

// TestHandleReadyDeadLetters: an event no retry can turn into a delivery
// goes to the dead-letter stream at once, and the consumer carries on.
func TestHandleReadyDeadLetters(t *testing.T) {
	e := newEnv(t)
	e.orderStream(t)
	ctx := testContext(t)

	bad := readyEvent("BAD-ID", orderv1.Fulfillment_FULFILLMENT_DELIVERY)
	badData, _ := proto.Marshal(bad)
	noFulfillment := readyEvent("ord4", orderv1.Fulfillment_FULFILLMENT_UNSPECIFIED)
	nfData, _ := proto.Marshal(noFulfillment)
	e.publish(t, "order.ready.junk", "m1", []byte("\xff\xffnot a protobuf"))
	e.publish(t, "order.ready.bad", "m2", badData)
	e.publish(t, "order.ready.ord4", "m3", nfData)
	good := readyEvent("ord5", orderv1.Fulfillment_FULFILLMENT_PICKUP)
	goodData, _ := proto.Marshal(good)
	e.waitConsumed(t, e.publish(t, "order.ready.ord5", "m4", goodData))

	if _, err := e.store.Get(ctx, "ord5"); err != nil {
		t.Errorf("the good event after the bad ones made no delivery: %v", err)
	}
	if _, err := e.store.Get(ctx, "ord4"); !errors.Is(err, delivery.ErrNotFound) {
		t.Errorf("Get(ord4) error = %v, want ErrNotFound: an order without a fulfillment makes no delivery", err)
	}
	dl, err := e.bus.JS.Stream(ctx, natsx.DeadLetterStream.Name)
	if err != nil {
		t.Fatalf("dead-letter stream: %v", err)
	}
	var subjects []string
	for seq := uint64(1); ; seq++ {
		m, err := dl.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			t.Fatalf("GetMsg(%d): %v", seq, err)
		}
		if m.Subject != "deadletter."+deliveryapi.ReadyConsumer.Durable {
			t.Errorf("dead letter %d subject = %q", seq, m.Subject)
		}
		subjects = append(subjects, m.Header.Get(natsx.HeaderDLSubject))
	}
	// Different orders are handled on different workers: any order.
	slices.Sort(subjects)
	if diff := cmp.Diff([]string{"order.ready.bad", "order.ready.junk", "order.ready.ord4"}, subjects); diff != "" {
		t.Errorf("dead-lettered subjects (-want +got):\n%s", diff)
	}
}
