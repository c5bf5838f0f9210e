package orderdb_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	"github.com/pizzashop/pizzashop/services/order/internal/order"
	"github.com/pizzashop/pizzashop/services/order/internal/orderdb"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

var t0 = time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)

func newStore(t *testing.T) *orderdb.Store {
	t.Helper()
	_, db := devstack.MongoDatabase(t)
	s := orderdb.New(db)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Init(ctx); err != nil {
		t.Fatalf("Init: %v", err)
	}
	return s
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func newOrder(t *testing.T, id, customer, key string, at time.Time) *order.Order {
	t.Helper()
	o, err := order.New(id, order.Customer{ID: customer}, order.Request{
		Item:        order.Item{PizzaID: "margherita", Size: 1},
		Fulfillment: order.FulfillmentPickup,
		Payment:     order.PaymentCash,
	}, order.Price{Total: 900, Currency: "USD"}, key, at)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestInsertGet(t *testing.T) {
	s, c := newStore(t), ctx(t)
	var written []any
	s.Tracker = outbox.OnWritten(func(_ *mongo.Collection, id any, rev int64, entries []outbox.Entry) {
		written = append(written, fmt.Sprint(id, "@", rev, "+", len(entries)))
	})
	o := newOrder(t, "o1", "ann", "hash-1", t0)
	ev := outbox.Entry{ID: "e1", Subject: "order.placed.o1", CreateTime: t0}
	if err := s.Insert(c, o, ev); err != nil {
		t.Fatal(err)
	}
	if want := []any{"o1@1+1"}; fmt.Sprint(written) != fmt.Sprint(want) {
		t.Errorf("Written calls = %v, want %v (id@revision+entries)", written, want)
	}
	got, err := s.Get(c, "o1")
	if err != nil || got.Status != order.StatusPlaced || got.Customer.ID != "ann" || got.Price.Total != 900 || got.RequestHash != "hash-1" {
		t.Fatalf("Get(o1) = %+v, %v", got, err)
	}
	if _, err := s.Get(c, "missing"); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("Get(missing) = %v, want ErrNotFound", err)
	}
	// A second order with the same id, which a retried Idempotency-Key
	// derives, is refused by the store.
	if err := s.Insert(c, newOrder(t, "o1", "ann", "hash-1", t0), ev); !errors.Is(err, orderdb.ErrExists) {
		t.Errorf("Insert of an existing id = %v, want ErrExists", err)
	}
	// Orders without a key never collide.
	for _, id := range []string{"n1", "n2"} {
		if err := s.Insert(c, newOrder(t, id, "ann", "", t0), outbox.Entry{ID: "e-" + id}); err != nil {
			t.Errorf("Insert(%s) without a key = %v", id, err)
		}
	}
}

func TestUpdate(t *testing.T) {
	s, c := newStore(t), ctx(t)
	if err := s.Insert(c, newOrder(t, "o1", "ann", "", t0), outbox.Entry{ID: "e1"}); err != nil {
		t.Fatal(err)
	}
	advance := func(to order.Status) func(*order.Order) (bool, []outbox.Entry, error) {
		return func(o *order.Order) (bool, []outbox.Entry, error) {
			if !o.Advance(to, t0.Add(time.Minute), "") {
				return false, nil, nil
			}
			return true, []outbox.Entry{{ID: "ev-" + to.String()}}, nil
		}
	}
	o, changed, err := s.Update(c, "o1", advance(order.StatusAccepted))
	if err != nil || !changed || o.Status != order.StatusAccepted || o.Revision != 2 {
		t.Fatalf("Update to ACCEPTED = %v %v %v", o, changed, err)
	}
	// The same step again, and a step back, change nothing.
	for _, to := range []order.Status{order.StatusAccepted, order.StatusPlaced} {
		o, changed, err := s.Update(c, "o1", advance(to))
		if err != nil || changed || o.Revision != 2 {
			t.Errorf("Update to %s again = revision %d changed %v err %v; want no change", to, o.Revision, changed, err)
		}
	}
	if _, _, err := s.Update(c, "missing", advance(order.StatusAccepted)); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("Update(missing) = %v, want ErrNotFound", err)
	}
	got, _ := s.Get(c, "o1")
	if len(got.History) != 2 || got.History[1].Status != order.StatusAccepted {
		t.Errorf("history = %+v, want PLACED then ACCEPTED", got.History)
	}
}

func TestList(t *testing.T) {
	s, c := newStore(t), ctx(t)
	// 7 orders of ann a minute apart, two of them at the same instant, and
	// one of bob.
	for i := range 7 {
		at := t0.Add(time.Duration(i) * time.Minute)
		if i == 6 {
			at = t0.Add(5 * time.Minute)
		}
		id := fmt.Sprintf("a%d", i)
		if err := s.Insert(c, newOrder(t, id, "ann", "", at), outbox.Entry{ID: "e" + id}); err != nil {
			t.Fatal(err)
		}
	}
	// Newest first; at the same instant, the greater id first.
	want := []string{"a6", "a5", "a4", "a3", "a2", "a1", "a0"}
	if err := s.Insert(c, newOrder(t, "b0", "bob", "", t0), outbox.Entry{ID: "eb0"}); err != nil {
		t.Fatal(err)
	}
	var got []string
	var after *orderdb.Cursor
	for page := 0; ; page++ {
		orders, next, err := s.List(c, "ann", 3, after)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range orders {
			got = append(got, o.ID)
		}
		if next == nil {
			break
		}
		// The cursor survives its trip through a page token.
		if after, err = orderdb.DecodeCursor(next.Encode()); err != nil {
			t.Fatal(err)
		}
		if page > 5 {
			t.Fatal("List never ends")
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ann's orders in pages of 3 = %v, want %v", got, want)
	}
	all, _, err := s.List(c, "", 100, nil)
	if err != nil || len(all) != 8 {
		t.Errorf("List of everyone = %d orders, %v; want 8", len(all), err)
	}
	for _, tok := range []string{"!!", "bm90LWEtY3Vyc29y"} {
		if _, err := orderdb.DecodeCursor(tok); !errors.Is(err, orderdb.ErrBadPageToken) {
			t.Errorf("DecodeCursor(%q) = %v, want ErrBadPageToken", tok, err)
		}
	}
}

func TestCustomers(t *testing.T) {
	s, c := newStore(t), ctx(t)
	p, err := order.NewProfile("c1", "Ann", "ann@example.com", "+1 555 0100", nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateCustomer(c, p); err != nil {
		t.Fatal(err)
	}
	p2, _ := order.NewProfile("c2", "Other Ann", "ANN@example.com", "+1 555 0101", nil, t0)
	if err := s.CreateCustomer(c, p2); !errors.Is(err, order.ErrEmailTaken) {
		t.Errorf("CreateCustomer with a taken email = %v, want ErrEmailTaken", err)
	}
	if got, err := s.GetCustomer(c, "c1"); err != nil || got.Email != "ann@example.com" {
		t.Errorf("GetCustomer = %+v, %v", got, err)
	}
	if _, err := s.GetCustomer(c, "nobody"); !errors.Is(err, order.ErrCustomerNotFound) {
		t.Errorf("GetCustomer(nobody) = %v, want ErrCustomerNotFound", err)
	}
}

// finds counts the find commands a client sends.
type finds struct{ n atomic.Int64 }

func (f *finds) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		if e.CommandName == "find" {
			f.n.Add(1)
		}
	}}
}

func TestUpdateStartsFromWhatItWrote(t *testing.T) {
	var reads finds
	client, err := mongo.Connect(options.Client().ApplyURI(devstack.Mongo(t)).SetMonitor(reads.monitor()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	_, db := devstack.MongoDatabase(t)
	s, c := orderdb.New(client.Database(db.Name())), ctx(t)
	if err := s.Init(c); err != nil {
		t.Fatal(err)
	}
	if err := s.Insert(c, newOrder(t, "o1", "ann", "", t0), outbox.Entry{ID: "e1"}); err != nil {
		t.Fatal(err)
	}
	step := func(to order.Status, at time.Time) (*order.Order, bool, error) {
		return s.Update(c, "o1", func(o *order.Order) (bool, []outbox.Entry, error) {
			if !o.Advance(to, at, "") {
				return false, nil, nil
			}
			return true, []outbox.Entry{{ID: "ev-" + to.String()}}, nil
		})
	}

	// The step right after the insert starts from the store's own copy.
	before := reads.n.Load()
	if o, changed, err := step(order.StatusAccepted, t0.Add(time.Minute)); err != nil || !changed || o.Revision != 2 {
		t.Fatalf("Update to ACCEPTED = %v %v %v", o, changed, err)
	}
	if n := reads.n.Load() - before; n != 0 {
		t.Errorf("Update after Insert made %d reads, want 0", n)
	}

	// Another replica moves the order on: this store's copy is stale. The
	// copy finds READY out of reach (it still says ACCEPTED), which does
	// not stand: the step is made from a fresh read.
	other := orderdb.New(db)
	if _, changed, err := other.Update(c, "o1", func(o *order.Order) (bool, []outbox.Entry, error) {
		return o.Advance(order.StatusBaking, t0.Add(2*time.Minute), ""), []outbox.Entry{{ID: "ev-other"}}, nil
	}); err != nil || !changed {
		t.Fatalf("the other replica's step = %v %v", changed, err)
	}
	before = reads.n.Load()
	o, changed, err := step(order.StatusReady, t0.Add(3*time.Minute))
	if err != nil || !changed || o.Revision != 4 {
		t.Fatalf("Update to READY over a stale copy = %v %v %v, want revision 4", o, changed, err)
	}
	if n := reads.n.Load() - before; n != 1 {
		t.Errorf("Update over a stale copy made %d reads, want 1", n)
	}
	got, err := s.Get(c, "o1")
	if err != nil {
		t.Fatal(err)
	}
	var steps []order.Status
	for _, h := range got.History {
		steps = append(steps, h.Status)
	}
	if want := []order.Status{order.StatusPlaced, order.StatusAccepted, order.StatusBaking, order.StatusReady}; fmt.Sprint(steps) != fmt.Sprint(want) {
		t.Errorf("history = %v, want %v: no step lost", steps, want)
	}

	// A step the other replica has already made: the stale copy would make
	// it again, the guarded write refuses, and the fresh read shows it done.
	if _, changed, err := other.Update(c, "o1", func(o *order.Order) (bool, []outbox.Entry, error) {
		return o.Advance(order.StatusPickedUp, t0.Add(4*time.Minute), ""), []outbox.Entry{{ID: "ev-picked"}}, nil
	}); err != nil || !changed {
		t.Fatalf("the other replica's pickup = %v %v", changed, err)
	}
	o, changed, err = step(order.StatusPickedUp, t0.Add(5*time.Minute))
	if err != nil || changed || o.Status != order.StatusPickedUp {
		t.Errorf("repeating the pickup over a stale copy = %v %v %v, want no change, PICKED_UP from the store", o.Status, changed, err)
	}
}
