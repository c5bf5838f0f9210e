package deliverydb_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	"github.com/pizzashop/pizzashop/services/delivery/internal/delivery"
	"github.com/pizzashop/pizzashop/services/delivery/internal/deliverydb"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

var base = time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newStore(t *testing.T) (*deliverydb.Store, *mongo.Database) {
	t.Helper()
	_, db := devstack.MongoDatabase(t)
	s := deliverydb.New(db)
	if err := s.Init(testContext(t)); err != nil {
		t.Fatalf("Init: %v", err)
	}
	return s, db
}

// waiting returns a new waiting delivery that became ready at ready.
func waiting(t *testing.T, id string, f delivery.Fulfillment, ready time.Time) delivery.Delivery {
	t.Helper()
	h := delivery.Handover{
		Fulfillment: f, CustomerName: "Grace Hopper", CustomerPhone: "+1 555 0100",
		Summary: "Medium Diavola + jalapeños", AmountDue: delivery.Money{AmountMinor: 1575, Currency: "EUR"},
		Payment: delivery.PaymentCard,
	}
	if f == delivery.FulfillmentDelivery {
		h.Address = &delivery.Address{Line1: "1 Compiler Way", Line2: "Flat 2", City: "Arlington", PostalCode: "22201", Instructions: "ring twice"}
	}
	d, err := delivery.New(id, h, ready, ready)
	if err != nil {
		t.Fatalf("New(%s): %v", id, err)
	}
	return d
}

func insert(t *testing.T, s *deliverydb.Store, d delivery.Delivery, events ...outbox.Entry) {
	t.Helper()
	ok, err := s.Insert(testContext(t), d, events...)
	if err != nil || !ok {
		t.Fatalf("Insert(%s) = %v, %v; want true, nil", d.ID(), ok, err)
	}
}

// entry is an outbox entry; the store keeps it without reading it.
func entry(subject string) outbox.Entry {
	return outbox.Entry{ID: outbox.NewID(), Subject: subject, Type: "test", Data: []byte(subject), CreateTime: base}
}

func TestInsertGet(t *testing.T) {
	s, _ := newStore(t)
	ctx := testContext(t)
	for _, d := range []delivery.Delivery{
		waiting(t, "d1", delivery.FulfillmentDelivery, base),
		waiting(t, "p1", delivery.FulfillmentPickup, base),
	} {
		insert(t, s, d)
		got, err := s.Get(ctx, d.ID())
		if err != nil {
			t.Fatalf("Get(%s): %v", d.ID(), err)
		}
		if diff := cmp.Diff(d.Record(), got.Record()); diff != "" {
			t.Errorf("Get(%s) (-inserted +read):\n%s", d.ID(), diff)
		}
	}
	if _, err := s.Get(ctx, "missing"); !errors.Is(err, delivery.ErrNotFound) {
		t.Errorf("Get(missing) error = %v, want ErrNotFound", err)
	}
}

func TestInsertTwiceKeepsTheFirst(t *testing.T) {
	s, db := newStore(t)
	ctx := testContext(t)
	var written []string
	s.Tracker = outbox.OnWritten(func(_ *mongo.Collection, id any, rev int64, entries []outbox.Entry) {
		for _, e := range entries {
			written = append(written, e.Subject)
		}
	})

	first := waiting(t, "o1", delivery.FulfillmentDelivery, base)
	insert(t, s, first, entry("delivery.waiting.o1"))
	again := waiting(t, "o1", delivery.FulfillmentPickup, base.Add(time.Minute))
	ok, err := s.Insert(ctx, again, entry("delivery.waiting.o1"))
	if err != nil || ok {
		t.Fatalf("second Insert = %v, %v; want false, nil", ok, err)
	}
	// The second insert hands nothing to the relay: it stored nothing. The
	// first one's entries are its own writer's to publish (or, should that
	// writer have died, the relay that takes over its mark).
	if want := []string{"delivery.waiting.o1"}; !slices.Equal(written, want) {
		t.Errorf("entries handed to the relay = %v, want %v", written, want)
	}
	n, err := db.Collection("deliveries").CountDocuments(ctx, bson.D{})
	if err != nil || n != 1 {
		t.Fatalf("deliveries = %d, %v; want 1", n, err)
	}
	got, err := s.Get(ctx, "o1")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if diff := cmp.Diff(first.Record(), got.Record()); diff != "" {
		t.Errorf("stored delivery (-first +got):\n%s", diff)
	}
	var doc struct {
		Outbox []outbox.Entry `bson:"outbox"`
	}
	if err := db.Collection("deliveries").FindOne(ctx, bson.D{{Key: "_id", Value: "o1"}}).Decode(&doc); err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	if len(doc.Outbox) != 1 {
		t.Errorf("outbox has %d entries, want 1", len(doc.Outbox))
	}
}

func TestList(t *testing.T) {
	s, _ := newStore(t)
	ctx := testContext(t)
	// Ready in this order: p1, d1, d2 (same time as d1), p2, d3. d3 is
	// delivered and p2 picked up, so neither is open.
	insert(t, s, waiting(t, "p1", delivery.FulfillmentPickup, base))
	insert(t, s, waiting(t, "d2", delivery.FulfillmentDelivery, base.Add(time.Minute)))
	insert(t, s, waiting(t, "d1", delivery.FulfillmentDelivery, base.Add(time.Minute)))
	insert(t, s, waiting(t, "p2", delivery.FulfillmentPickup, base.Add(2*time.Minute)))
	insert(t, s, waiting(t, "d3", delivery.FulfillmentDelivery, base.Add(3*time.Minute)))
	move := func(id string, m func(*delivery.Delivery) error) {
		t.Helper()
		if _, _, err := s.Update(ctx, id, func(d *delivery.Delivery) (bool, []outbox.Entry, error) { return true, nil, m(d) }); err != nil {
			t.Fatalf("Update(%s): %v", id, err)
		}
	}
	move("d1", func(d *delivery.Delivery) error { return d.Dispatch("c1", base.Add(4*time.Minute)) })
	move("d3", func(d *delivery.Delivery) error { return d.Dispatch("c1", base.Add(4*time.Minute)) })
	move("d3", func(d *delivery.Delivery) error { return d.Deliver("c1", base.Add(5*time.Minute)) })
	move("p2", func(d *delivery.Delivery) error { return d.Pickup(base.Add(5 * time.Minute)) })

	ids := func(ds []delivery.Delivery) []string {
		out := []string{}
		for _, d := range ds {
			out = append(out, d.ID())
		}
		return out
	}
	open := delivery.OpenStatuses
	for _, tc := range []struct {
		name  string
		f     deliverydb.Filter
		limit int
		after string
		want  []string
	}{
		{"open", deliverydb.Filter{Statuses: open}, 10, "", []string{"p1", "d1", "d2"}},
		{"open deliveries", deliverydb.Filter{Statuses: open, Fulfillment: delivery.FulfillmentDelivery}, 10, "", []string{"d1", "d2"}},
		{"open pickups", deliverydb.Filter{Statuses: open, Fulfillment: delivery.FulfillmentPickup}, 10, "", []string{"p1"}},
		{"all", deliverydb.Filter{}, 10, "", []string{"p1", "d1", "d2", "p2", "d3"}},
		{"out for delivery", deliverydb.Filter{Statuses: []delivery.Status{delivery.StatusOutForDelivery}}, 10, "", []string{"d1"}},
		{"picked up", deliverydb.Filter{Statuses: []delivery.Status{delivery.StatusPickedUp}}, 10, "", []string{"p2"}},
		{"first page", deliverydb.Filter{}, 2, "", []string{"p1", "d1"}},
		{"page after d1", deliverydb.Filter{}, 2, "d1", []string{"d2", "p2"}},
		{"page after d2", deliverydb.Filter{}, 2, "d2", []string{"p2", "d3"}},
		{"page after a closed one", deliverydb.Filter{Statuses: open}, 10, "p2", []string{}},
		{"page after p1, deliveries only", deliverydb.Filter{Fulfillment: delivery.FulfillmentDelivery}, 10, "p1", []string{"d1", "d2", "d3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var after *delivery.Delivery
			if tc.after != "" {
				d, err := s.Get(ctx, tc.after)
				if err != nil {
					t.Fatalf("Get(%s): %v", tc.after, err)
				}
				after = &d
			}
			got, err := s.List(ctx, tc.f, tc.limit, after)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			if diff := cmp.Diff(tc.want, ids(got)); diff != "" {
				t.Errorf("List(%+v, %d, after %q) ids (-want +got):\n%s", tc.f, tc.limit, tc.after, diff)
			}
		})
	}
}

func TestUpdate(t *testing.T) {
	s, db := newStore(t)
	ctx := testContext(t)
	written := 0
	s.Tracker = outbox.OnWritten(func(*mongo.Collection, any, int64, []outbox.Entry) { written++ })
	insert(t, s, waiting(t, "o1", delivery.FulfillmentDelivery, base))
	written = 0

	at := base.Add(10 * time.Minute)
	e := entry("delivery.out_for_delivery.o1")
	got, changed, err := s.Update(ctx, "o1", func(d *delivery.Delivery) (bool, []outbox.Entry, error) {
		return true, []outbox.Entry{e}, d.Dispatch("c9", at)
	})
	if err != nil || !changed {
		t.Fatalf("Update = %v, %v; want true, nil", changed, err)
	}
	read, err := s.Get(ctx, "o1")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if diff := cmp.Diff(got.Record(), read.Record()); diff != "" {
		t.Errorf("stored after Update (-returned +read):\n%s", diff)
	}
	if r := read.Record(); r.Status != delivery.StatusOutForDelivery || r.CourierID != "c9" || !r.DispatchTime.Equal(at) || r.Revision != 2 {
		t.Errorf("after Dispatch: status %s courier %q dispatch %v revision %d; want OUT_FOR_DELIVERY c9 %v 2",
			r.Status, r.CourierID, r.DispatchTime, r.Revision, at)
	}
	if written != 1 {
		t.Errorf("Written called %d times, want 1", written)
	}
	var doc struct {
		Outbox []outbox.Entry `bson:"outbox"`
		At     time.Time      `bson:"outbox_at"`
	}
	if err := db.Collection("deliveries").FindOne(ctx, bson.D{{Key: "_id", Value: "o1"}}).Decode(&doc); err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	if len(doc.Outbox) != 1 || doc.Outbox[0].ID != e.ID || doc.At.IsZero() {
		t.Errorf("outbox = %d entries (at %v), want just %s, stamped", len(doc.Outbox), doc.At, e.ID)
	}

	// A refused move and a no-change apply write nothing.
	_, changed, err = s.Update(ctx, "o1", func(d *delivery.Delivery) (bool, []outbox.Entry, error) {
		return true, nil, d.Pickup(at)
	})
	if !errors.Is(err, delivery.ErrInvalidTransition) || changed {
		t.Errorf("Update(Pickup of a delivery order) = %v, %v; want false, ErrInvalidTransition", changed, err)
	}
	_, changed, err = s.Update(ctx, "o1", func(*delivery.Delivery) (bool, []outbox.Entry, error) { return false, nil, nil })
	if err != nil || changed {
		t.Errorf("Update(no change) = %v, %v; want false, nil", changed, err)
	}
	if read, _ := s.Get(ctx, "o1"); read.Revision() != 2 {
		t.Errorf("revision after refused moves = %d, want 2", read.Revision())
	}
	if _, _, err := s.Update(ctx, "missing", func(*delivery.Delivery) (bool, []outbox.Entry, error) { return true, nil, nil }); !errors.Is(err, delivery.ErrNotFound) {
		t.Errorf("Update(missing) error = %v, want ErrNotFound", err)
	}
}

// TestUpdateRetriesAfterConflict races two couriers on two replicas: while
// the first is deciding, the second dispatches the order. The first's write
// must not overwrite the second's; it reads again and finds the order taken.
func TestUpdateRetriesAfterConflict(t *testing.T) {
	s, db := newStore(t)
	replica := deliverydb.New(db)
	ctx := testContext(t)
	insert(t, s, waiting(t, "o1", delivery.FulfillmentDelivery, base))

	calls := 0
	_, changed, err := s.Update(ctx, "o1", func(d *delivery.Delivery) (bool, []outbox.Entry, error) {
		calls++
		if calls == 1 {
			if _, _, err := replica.Update(ctx, "o1", func(d *delivery.Delivery) (bool, []outbox.Entry, error) {
				return true, nil, d.Dispatch("second", base.Add(time.Minute))
			}); err != nil {
				t.Fatalf("inner Update: %v", err)
			}
		}
		return true, nil, d.Dispatch("first", base.Add(2*time.Minute))
	})
	if !errors.Is(err, delivery.ErrInvalidTransition) || changed {
		t.Errorf("outer Update = %v, %v; want false, ErrInvalidTransition", changed, err)
	}
	if calls != 2 {
		t.Errorf("apply ran %d times, want 2 (once more after the conflict)", calls)
	}
	got, err := s.Get(ctx, "o1")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.CourierID() != "second" || got.Revision() != 2 {
		t.Errorf("stored courier %q revision %d, want second 2", got.CourierID(), got.Revision())
	}
}

// TestConcurrentDispatch has five couriers dispatch one order at once
// through one store: exactly one gets it.
func TestConcurrentDispatch(t *testing.T) {
	s, _ := newStore(t)
	concurrentDispatch(t, []*deliverydb.Store{s, s, s, s, s})
}

// TestConcurrentDispatchAcrossReplicas is TestConcurrentDispatch with each
// courier on a replica of its own, where only the store's revision guard
// keeps them apart.
func TestConcurrentDispatchAcrossReplicas(t *testing.T) {
	_, db := newStore(t)
	var stores []*deliverydb.Store
	for range 5 {
		stores = append(stores, deliverydb.New(db))
	}
	concurrentDispatch(t, stores)
}

func concurrentDispatch(t *testing.T, stores []*deliverydb.Store) {
	ctx := testContext(t)
	insert(t, stores[0], waiting(t, "o1", delivery.FulfillmentDelivery, base))

	errc := make([]error, len(stores))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, s := range stores {
		wg.Go(func() {
			<-start
			_, _, errc[i] = s.Update(ctx, "o1", func(d *delivery.Delivery) (bool, []outbox.Entry, error) {
				return true, []outbox.Entry{entry("delivery.out_for_delivery.o1")}, d.Dispatch(fmt.Sprintf("courier%d", i), base.Add(time.Minute))
			})
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, err := range errc {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("couriers %d and %d both dispatched the order", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, delivery.ErrInvalidTransition):
			t.Errorf("courier %d: error = %v, want nil or ErrInvalidTransition", i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("no courier dispatched the order; errors %v", errc)
	}
	got, err := stores[0].Get(ctx, "o1")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if want := fmt.Sprintf("courier%d", winner); got.CourierID() != want || got.Revision() != 2 {
		t.Errorf("stored courier %q revision %d, want %s 2", got.CourierID(), got.Revision(), want)
	}
	var doc struct {
		Outbox []outbox.Entry `bson:"outbox"`
	}
	if err := stores[0].Collections()[0].FindOne(ctx, bson.D{{Key: "_id", Value: "o1"}}).Decode(&doc); err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	if len(doc.Outbox) != 1 {
		t.Errorf("outbox has %d entries, want 1: one event for the one dispatch", len(doc.Outbox))
	}
}
