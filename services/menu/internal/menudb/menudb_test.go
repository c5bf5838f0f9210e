package menudb_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/errs"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	"github.com/pizzashop/pizzashop/services/menu/internal/menu"
	"github.com/pizzashop/pizzashop/services/menu/internal/menudb"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// now has millisecond precision, as the store keeps times.
var now = time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newStore returns an initialised store over a fresh database, and the
// database for reading raw documents.
func newStore(t *testing.T) (*menudb.Store, *mongo.Database) {
	t.Helper()
	_, db := devstack.MongoDatabase(t)
	s := menudb.New(db, "EUR")
	if err := s.Init(testContext(t), now); err != nil {
		t.Fatalf("Init: %v", err)
	}
	return s, db
}

// rawDoc is the part of a stored document the outbox relay works on.
type rawDoc struct {
	Revision int64          `bson:"revision"`
	Outbox   []outbox.Entry `bson:"outbox"`
	OutboxAt time.Time      `bson:"outbox_at"`
}

func readRaw(t *testing.T, db *mongo.Database, coll, id string) rawDoc {
	t.Helper()
	var d rawDoc
	if err := db.Collection(coll).FindOne(testContext(t), bson.D{{Key: "_id", Value: id}}).Decode(&d); err != nil {
		t.Fatalf("read %s %q: %v", coll, id, err)
	}
	return d
}

func count(t *testing.T, db *mongo.Database, coll string) int64 {
	t.Helper()
	n, err := db.Collection(coll).CountDocuments(testContext(t), bson.D{})
	if err != nil {
		t.Fatalf("count %s: %v", coll, err)
	}
	return n
}

// testEntry is an outbox entry as the API would build it.
func testEntry(t *testing.T) outbox.Entry {
	return outbox.Entry{ID: outbox.NewID(), Subject: "menu.changed", Type: "test.Event",
		Data: []byte("event " + t.Name()), CreateTime: now}
}

func entryIDs(es []outbox.Entry) []string {
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.ID
	}
	return ids
}

func checkSeedCounts(t *testing.T, db *mongo.Database) {
	t.Helper()
	pizzas, toppings := menu.Seed(now)
	if got, want := count(t, db, "pizzas"), int64(len(pizzas)); got != want {
		t.Errorf("pizzas in store = %d, want %d", got, want)
	}
	if got, want := count(t, db, "toppings"), int64(len(toppings)); got != want {
		t.Errorf("toppings in store = %d, want %d", got, want)
	}
}

func TestInitSeedsOnce(t *testing.T) {
	ctx := testContext(t)
	s, db := newStore(t)
	checkSeedCounts(t, db)

	// A change survives a second Init: it seeds an empty store only.
	patch := menu.Patch{Name: new("Margherita DOP")}
	if _, err := s.Update(ctx, menu.KindPizza, "margherita", apply(menu.KindPizza, patch), noEvent(t)); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if err := s.Init(ctx, now.Add(time.Hour)); err != nil {
		t.Fatalf("second Init: %v", err)
	}
	checkSeedCounts(t, db)
	it, err := s.Get(ctx, menu.KindPizza, "margherita")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if it.Name != "Margherita DOP" || it.Revision != 2 {
		t.Errorf("after a second Init, margherita = %q revision %d, want %q revision 2", it.Name, it.Revision, "Margherita DOP")
	}
	for _, coll := range []string{"pizzas", "toppings"} {
		var d rawDoc
		err := db.Collection(coll).FindOne(ctx, bson.D{{Key: "outbox_at", Value: bson.D{{Key: "$exists", Value: true}}}, {Key: "revision", Value: 1}}).Decode(&d)
		if !errors.Is(err, mongo.ErrNoDocuments) {
			t.Errorf("seeded %s with a pending outbox: %+v, %v; want none: the seed is not an event", coll, d, err)
		}
	}
}

func TestInitConcurrent(t *testing.T) {
	_, db := devstack.MongoDatabase(t)
	ctx := testContext(t)
	// Two replicas starting at once on an empty store.
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	for range 2 {
		wg.Go(func() { errc <- menudb.New(db, "EUR").Init(ctx, now) })
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Errorf("concurrent Init: %v", err)
		}
	}
	checkSeedCounts(t, db)
}

func TestInitFinishesPartialSeed(t *testing.T) {
	// A replica that stopped between seeding the pizzas and the toppings
	// leaves the next Init to seed the toppings.
	ctx := testContext(t)
	s, db := newStore(t)
	if _, err := db.Collection("toppings").DeleteMany(ctx, bson.D{}); err != nil {
		t.Fatalf("DeleteMany: %v", err)
	}
	if err := s.Init(ctx, now); err != nil {
		t.Fatalf("Init: %v", err)
	}
	checkSeedCounts(t, db)
}

func TestMenu(t *testing.T) {
	ctx := testContext(t)
	s, _ := newStore(t)
	m, err := s.Menu(ctx)
	if err != nil {
		t.Fatalf("Menu: %v", err)
	}
	pizzas, toppings := menu.Seed(now)
	byName := func(a, b menu.Item) int { return cmp.Compare(a.Name, b.Name) }
	slices.SortFunc(pizzas, byName)
	slices.SortFunc(toppings, byName)
	want := menu.Menu{Pizzas: pizzas, Toppings: toppings, Currency: "EUR"}
	if diff := gocmp.Diff(want, m); diff != "" {
		t.Errorf("Menu() (-want +got):\n%s", diff)
	}
	if got, want := m.Version(), int64(len(pizzas)+len(toppings)); got != want {
		t.Errorf("Menu().Version() = %d, want %d", got, want)
	}

	// A new item takes its place in name order.
	it := newItem(t, menu.KindPizza, "Bianca")
	if err := s.Create(ctx, menu.KindPizza, it, testEntry(t)); err != nil {
		t.Fatalf("Create: %v", err)
	}
	m, err = s.Menu(ctx)
	if err != nil {
		t.Fatalf("Menu: %v", err)
	}
	if !slices.IsSortedFunc(m.Pizzas, byName) {
		t.Errorf("Menu().Pizzas not sorted by name: %v", names(m.Pizzas))
	}
	if m.Pizzas[0].ID != "bianca" {
		t.Errorf("Menu().Pizzas = %v, want Bianca first", names(m.Pizzas))
	}
	if got, want := m.Version(), int64(len(pizzas)+len(toppings)+1); got != want {
		t.Errorf("Menu().Version() after Create = %d, want %d", got, want)
	}
}

func names(items []menu.Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.Name
	}
	return out
}

func newItem(t *testing.T, k menu.Kind, name string) menu.Item {
	t.Helper()
	d := menu.Draft{Name: name, Prices: []menu.SizePrice{{Size: menu.SizeSmall, Amount: 700}, {Size: menu.SizeMedium, Amount: 900}, {Size: menu.SizeLarge, Amount: 1100}}, Available: true}
	if k == menu.KindPizza {
		d.Description = "Test pizza"
	}
	it, err := menu.NewItem(k, string(k), d, now)
	if err != nil {
		t.Fatalf("NewItem(%q): %v", name, err)
	}
	return it
}

func apply(k menu.Kind, p menu.Patch) func(menu.Item) (menu.Item, error) {
	return func(old menu.Item) (menu.Item, error) { return old.Apply(k, string(k), p, now.Add(time.Minute)) }
}

func noEvent(t *testing.T) func(menu.Item) (outbox.Entry, error) {
	return func(menu.Item) (outbox.Entry, error) { return testEntry(t), nil }
}

func TestCreateGet(t *testing.T) {
	for _, k := range []menu.Kind{menu.KindPizza, menu.KindTopping} {
		t.Run(string(k), func(t *testing.T) {
			ctx := testContext(t)
			s, db := newStore(t)
			var written atomic.Int32
			s.Tracker = outbox.OnWritten(func(*mongo.Collection, any, int64, []outbox.Entry) { written.Add(1) })

			it := newItem(t, k, "Tartufo Nero")
			ev := testEntry(t)
			if err := s.Create(ctx, k, it, ev); err != nil {
				t.Fatalf("Create: %v", err)
			}
			got, err := s.Get(ctx, k, "tartufo-nero")
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if diff := gocmp.Diff(it, got); diff != "" {
				t.Errorf("Get after Create (-want +got):\n%s", diff)
			}
			if n := written.Load(); n != 1 {
				t.Errorf("Written called %d times, want 1", n)
			}
			raw := readRaw(t, db, string(k)+"s", it.ID)
			if diff := gocmp.Diff([]outbox.Entry{ev}, raw.Outbox); diff != "" {
				t.Errorf("outbox after Create (-want +got):\n%s", diff)
			}
			if raw.OutboxAt.IsZero() {
				t.Errorf("outbox_at after Create is not set, want the write's stamp")
			}

			other := menu.KindTopping
			if k == menu.KindTopping {
				other = menu.KindPizza
			}
			if _, err := s.Get(ctx, other, it.ID); !errors.Is(err, menu.ErrNotFound) {
				t.Errorf("Get(%s, %q) of a %s error = %v, want ErrNotFound", other, it.ID, k, err)
			}
		})
	}
}

func TestGetMissing(t *testing.T) {
	s, _ := newStore(t)
	_, err := s.Get(testContext(t), menu.KindPizza, "hawaii")
	if !errors.Is(err, menu.ErrNotFound) {
		t.Fatalf("Get(hawaii) error = %v, want ErrNotFound", err)
	}
	if k := errs.KindOf(err); k != errs.KindNotFound {
		t.Errorf("Get(hawaii) error kind = %v, want %v", k, errs.KindNotFound)
	}
}

func TestCreateDuplicate(t *testing.T) {
	ctx := testContext(t)
	s, db := newStore(t)
	var written atomic.Int32
	s.Tracker = outbox.OnWritten(func(*mongo.Collection, any, int64, []outbox.Entry) { written.Add(1) })

	seeded := newItem(t, menu.KindPizza, "Margherita")
	if err := s.Create(ctx, menu.KindPizza, seeded, testEntry(t)); !errors.Is(err, menu.ErrExists) {
		t.Errorf("Create(margherita) over the seed error = %v, want ErrExists", err)
	}
	it := newItem(t, menu.KindTopping, "Truffle")
	if err := s.Create(ctx, menu.KindTopping, it, testEntry(t)); err != nil {
		t.Fatalf("first Create: %v", err)
	}
	second := it
	second.Name = "Another truffle"
	err := s.Create(ctx, menu.KindTopping, second, testEntry(t))
	if !errors.Is(err, menu.ErrExists) {
		t.Fatalf("second Create error = %v, want ErrExists", err)
	}
	if k := errs.KindOf(err); k != errs.KindAlreadyExists {
		t.Errorf("second Create error kind = %v, want %v", k, errs.KindAlreadyExists)
	}
	if n := written.Load(); n != 1 {
		t.Errorf("Written called %d times, want 1: failed writes leave no event", n)
	}
	if raw := readRaw(t, db, "toppings", "truffle"); len(raw.Outbox) != 1 {
		t.Errorf("outbox after a refused Create has %d entries, want 1", len(raw.Outbox))
	}
	got, err := s.Get(ctx, menu.KindTopping, "truffle")
	if err != nil || got.Name != "Truffle" {
		t.Errorf("Get(truffle) = %q, %v; want the first write kept", got.Name, err)
	}
}

func TestUpdate(t *testing.T) {
	ctx := testContext(t)
	s, db := newStore(t)
	var written atomic.Int32
	s.Tracker = outbox.OnWritten(func(*mongo.Collection, any, int64, []outbox.Entry) { written.Add(1) })

	before, err := s.Get(ctx, menu.KindTopping, "ham")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	ev1 := testEntry(t)
	var seen menu.Item
	got, err := s.Update(ctx, menu.KindTopping, "ham",
		apply(menu.KindTopping, menu.Patch{Available: new(false)}),
		func(it menu.Item) (outbox.Entry, error) { seen = it; return ev1, nil })
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	want := before
	want.Available, want.Revision, want.UpdateTime = false, 2, now.Add(time.Minute)
	if diff := gocmp.Diff(want, got); diff != "" {
		t.Errorf("Update returned (-want +got):\n%s", diff)
	}
	if diff := gocmp.Diff(want, seen); diff != "" {
		t.Errorf("Update built its event for (-want +got):\n%s", diff)
	}
	stored, err := s.Get(ctx, menu.KindTopping, "ham")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if diff := gocmp.Diff(want, stored); diff != "" {
		t.Errorf("Get after Update (-want +got):\n%s", diff)
	}
	raw := readRaw(t, db, "toppings", "ham")
	if diff := gocmp.Diff([]string{ev1.ID}, entryIDs(raw.Outbox)); diff != "" {
		t.Errorf("outbox after Update (-want +got):\n%s", diff)
	}
	if raw.OutboxAt.IsZero() || raw.Revision != 2 {
		t.Errorf("after Update outbox_at = %v revision = %d, want set and 2", raw.OutboxAt, raw.Revision)
	}

	// A second change queues its event behind the first.
	ev2 := testEntry(t)
	got, err = s.Update(ctx, menu.KindTopping, "ham",
		apply(menu.KindTopping, menu.Patch{SetPrices: true, Prices: []menu.SizePrice{{Size: 1, Amount: 200}, {Size: 2, Amount: 250}, {Size: 3, Amount: 300}}}),
		func(menu.Item) (outbox.Entry, error) { return ev2, nil })
	if err != nil {
		t.Fatalf("second Update: %v", err)
	}
	if got.Prices != (menu.Prices{200, 250, 300}) || got.Available || got.Revision != 3 {
		t.Errorf("second Update = prices %v available %v revision %d, want [200 250 300] false 3", got.Prices, got.Available, got.Revision)
	}
	raw = readRaw(t, db, "toppings", "ham")
	if diff := gocmp.Diff([]string{ev1.ID, ev2.ID}, entryIDs(raw.Outbox)); diff != "" {
		t.Errorf("outbox after two Updates (-want +got):\n%s", diff)
	}
	if n := written.Load(); n != 2 {
		t.Errorf("Written called %d times, want 2", n)
	}
}

func TestUpdateRefused(t *testing.T) {
	ctx := testContext(t)
	s, db := newStore(t)
	var written atomic.Int32
	s.Tracker = outbox.OnWritten(func(*mongo.Collection, any, int64, []outbox.Entry) { written.Add(1) })
	boom := errors.New("boom")

	tests := []struct {
		name   string
		id     string
		change func(menu.Item) (menu.Item, error)
		event  func(menu.Item) (outbox.Entry, error)
		want   error
	}{
		{
			name: "missing item",
			id:   "hawaii",
			change: func(menu.Item) (menu.Item, error) {
				t.Error("change called for a missing item")
				return menu.Item{}, nil
			},
			event: noEvent(t),
			want:  menu.ErrNotFound,
		},
		{
			name:   "invalid change",
			id:     "funghi",
			change: apply(menu.KindPizza, menu.Patch{Name: new("")}),
			event:  noEvent(t),
			want:   errs.Invalid("pizza.name", "must not be empty"),
		},
		{
			name:   "event fails",
			id:     "funghi",
			change: apply(menu.KindPizza, menu.Patch{Name: new("Funghi 2")}),
			event:  func(menu.Item) (outbox.Entry, error) { return outbox.Entry{}, boom },
			want:   boom,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Update(ctx, menu.KindPizza, tt.id, tt.change, tt.event)
			if !errors.Is(err, tt.want) {
				t.Errorf("Update(%q) error = %v, want %v", tt.id, err, tt.want)
			}
		})
	}
	if n := written.Load(); n != 0 {
		t.Errorf("Written called %d times, want 0", n)
	}
	it, err := s.Get(ctx, menu.KindPizza, "funghi")
	if err != nil || it.Name != "Funghi" || it.Revision != 1 {
		t.Errorf("funghi after refused updates = %q revision %d (%v), want unchanged", it.Name, it.Revision, err)
	}
	if raw := readRaw(t, db, "pizzas", "funghi"); len(raw.Outbox) != 0 || !raw.OutboxAt.IsZero() {
		t.Errorf("refused updates left outbox %v at %v, want none", entryIDs(raw.Outbox), raw.OutboxAt)
	}
}

func TestUpdateRetriesAfterConcurrentWrite(t *testing.T) {
	ctx := testContext(t)
	s, db := newStore(t)
	other := testEntry(t)
	calls := 0
	change := func(old menu.Item) (menu.Item, error) {
		calls++
		if calls == 1 {
			// Another writer gets in between this read and this write.
			_, err := s.Update(ctx, menu.KindPizza, "diavola",
				apply(menu.KindPizza, menu.Patch{Description: new("Extra hot")}),
				func(menu.Item) (outbox.Entry, error) { return other, nil })
			if err != nil {
				t.Errorf("interfering Update: %v", err)
			}
		}
		return apply(menu.KindPizza, menu.Patch{Available: new(false)})(old)
	}
	mine := testEntry(t)
	got, err := s.Update(ctx, menu.KindPizza, "diavola", change, func(menu.Item) (outbox.Entry, error) { return mine, nil })
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if calls != 2 {
		t.Errorf("change called %d times, want 2: once, then again on the fresh item", calls)
	}
	if got.Revision != 3 || got.Available || got.Description != "Extra hot" {
		t.Errorf("Update = revision %d available %v description %q, want 3 false %q: both changes kept",
			got.Revision, got.Available, got.Description, "Extra hot")
	}
	raw := readRaw(t, db, "pizzas", "diavola")
	if diff := gocmp.Diff([]string{other.ID, mine.ID}, entryIDs(raw.Outbox)); diff != "" {
		t.Errorf("outbox (-want +got):\n%s", diff)
	}
}

func TestUpdateGivesUp(t *testing.T) {
	ctx := testContext(t)
	s, _ := newStore(t)
	calls := 0
	change := func(old menu.Item) (menu.Item, error) {
		calls++
		// Someone else writes the item every time.
		if _, err := s.Update(ctx, menu.KindTopping, "basil", apply(menu.KindTopping, menu.Patch{Name: new(fmt.Sprint("Basil ", calls))}), noEvent(t)); err != nil {
			t.Errorf("interfering Update: %v", err)
		}
		return apply(menu.KindTopping, menu.Patch{Available: new(false)})(old)
	}
	_, err := s.Update(ctx, menu.KindTopping, "basil", change, noEvent(t))
	if !errors.Is(err, menudb.ErrConflict) {
		t.Fatalf("Update under constant interference error = %v, want ErrConflict", err)
	}
	if k := errs.KindOf(err); k != errs.KindConflict {
		t.Errorf("Update error kind = %v, want %v, so callers see Aborted and retry", k, errs.KindConflict)
	}
	it, err := s.Get(ctx, menu.KindTopping, "basil")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if !it.Available || it.Revision != int64(1+calls) {
		t.Errorf("basil = available %v revision %d, want true %d: only the other writer's changes", it.Available, it.Revision, 1+calls)
	}
}

func TestUpdateConcurrent(t *testing.T) {
	ctx := testContext(t)
	s, db := newStore(t)
	const n = 8
	var (
		wg        sync.WaitGroup
		successes atomic.Int64
		mu        sync.Mutex
		events    []string
	)
	for i := range n {
		wg.Go(func() {
			ev := testEntry(t)
			_, err := s.Update(ctx, menu.KindPizza, "pepperoni",
				apply(menu.KindPizza, menu.Patch{Name: new(fmt.Sprintf("Pepperoni %d", i))}),
				func(menu.Item) (outbox.Entry, error) { return ev, nil })
			switch {
			case err == nil:
				successes.Add(1)
				mu.Lock()
				events = append(events, ev.ID)
				mu.Unlock()
			case errors.Is(err, menudb.ErrConflict):
			default:
				t.Errorf("concurrent Update %d: %v, want nil or ErrConflict", i, err)
			}
		})
	}
	wg.Wait()
	ok := successes.Load()
	t.Logf("%d of %d concurrent updates succeeded", ok, n)
	if ok == 0 {
		t.Fatalf("no concurrent Update succeeded")
	}
	it, err := s.Get(ctx, menu.KindPizza, "pepperoni")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if it.Revision != 1+ok {
		t.Errorf("revision after %d successful updates = %d, want %d", ok, it.Revision, 1+ok)
	}
	raw := readRaw(t, db, "pizzas", "pepperoni")
	got := entryIDs(raw.Outbox)
	slices.Sort(got)
	slices.Sort(events)
	if diff := gocmp.Diff(events, got); diff != "" {
		t.Errorf("outbox after concurrent updates: want one entry per success (-want +got):\n%s", diff)
	}
}
