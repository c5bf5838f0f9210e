package menudb_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/logging"
	"github.com/pizzashop/pizzashop/pkg/natsx"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	"github.com/pizzashop/pizzashop/services/menu/internal/menu"
	"github.com/pizzashop/pizzashop/services/menu/internal/menuapi"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// newStream connects to NATS and declares the menu stream. It returns the
// bus, the stream, and the stream's last sequence before the test, so that
// the test reads only what it published even on a shared NATS_URL server.
func newStream(t *testing.T) (*natsx.Bus, jetstream.Stream, uint64) {
	t.Helper()
	ctx := testContext(t)
	bus, err := natsx.Connect(devstack.NATS(t), "menudb-test", logging.Discard())
	if err != nil {
		t.Fatalf("natsx.Connect: %v", err)
	}
	t.Cleanup(bus.Close)
	if err := bus.EnsureStream(ctx, menuapi.Stream); err != nil {
		t.Fatalf("EnsureStream: %v", err)
	}
	stream, err := bus.JS.Stream(ctx, menuapi.Stream.Name)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	return bus, stream, lastSeq(t, stream)
}

func lastSeq(t *testing.T, stream jetstream.Stream) uint64 {
	t.Helper()
	info, err := stream.Info(testContext(t))
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return info.State.LastSeq
}

// msgsAfter returns the stream's messages after sequence seq.
func msgsAfter(t *testing.T, stream jetstream.Stream, seq uint64) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := testContext(t)
	var out []*jetstream.RawStreamMsg
	for s := seq + 1; s <= lastSeq(t, stream); s++ {
		m, err := stream.GetMsg(ctx, s)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("GetMsg(%d): %v", s, err)
		}
		out = append(out, m)
	}
	return out
}

// settle waits until the relay has cleared the outbox of a document. On the
// embedded FerretDB a write to the document while the relay clears it can be
// lost (see requireAtomicUpdates), so tests that write one document twice
// with a relay running wait for it in between.
func settle(t *testing.T, db *mongo.Database, coll, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for readRaw(t, db, coll, id).OutboxPending {
		if time.Now().After(deadline) {
			t.Fatalf("%s %q still has a pending outbox after 10s", coll, id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRelayPublishesEachEntryOnce(t *testing.T) {
	ctx := testContext(t)
	s, db := newStore(t)
	bus, stream, start := newStream(t)

	// Five events over three documents in two collections.
	var want []outbox.Entry
	event := func() func(menu.Item) (outbox.Entry, error) {
		e := testEntry(t)
		want = append(want, e)
		return func(menu.Item) (outbox.Entry, error) { return e, nil }
	}
	create := func(k menu.Kind, name string) {
		ev, _ := event()(menu.Item{})
		if err := s.Create(ctx, k, newItem(t, k, name), ev); err != nil {
			t.Fatalf("Create(%s): %v", name, err)
		}
	}
	update := func(k menu.Kind, id string, p menu.Patch) {
		if _, err := s.Update(ctx, k, id, apply(k, p), event()); err != nil {
			t.Fatalf("Update(%s): %v", id, err)
		}
	}
	create(menu.KindPizza, "Bianca")
	create(menu.KindTopping, "Truffle")
	update(menu.KindPizza, "bianca", menu.Patch{Name: new("Bianca Neve")})
	update(menu.KindPizza, "bianca", menu.Patch{Available: new(false)})
	update(menu.KindTopping, "ham", menu.Patch{Available: new(false)})

	relay := outbox.NewRelay(bus, logging.Discard(), s.Collections())
	n, err := relay.Flush(ctx)
	if err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if n != len(want) {
		t.Errorf("Flush() = %d, want %d", n, len(want))
	}

	msgs := msgsAfter(t, stream, start)
	if len(msgs) != len(want) {
		t.Errorf("stream has %d new messages, want %d", len(msgs), len(want))
	}
	pos := map[string]int{}
	for i, m := range msgs {
		id := m.Header.Get(jetstream.MsgIDHeader)
		if _, dup := pos[id]; dup {
			t.Errorf("event %s published twice", id)
		}
		pos[id] = i
	}
	for _, e := range want {
		i, ok := pos[e.ID]
		if !ok {
			t.Errorf("event %s not published", e.ID)
			continue
		}
		m := msgs[i]
		if m.Subject != e.Subject || string(m.Data) != string(e.Data) || m.Header.Get(natsx.HeaderEventType) != e.Type {
			t.Errorf("event %s published as subject %q type %q data %q, want %q %q %q",
				e.ID, m.Subject, m.Header.Get(natsx.HeaderEventType), m.Data, e.Subject, e.Type, e.Data)
		}
	}
	// One document's events keep their order: create, rename, sold out.
	if !(pos[want[0].ID] < pos[want[2].ID] && pos[want[2].ID] < pos[want[3].ID]) {
		t.Errorf("bianca's events published in stream positions %d, %d, %d, want increasing",
			pos[want[0].ID], pos[want[2].ID], pos[want[3].ID])
	}

	for _, coll := range []string{"pizzas", "toppings"} {
		n, err := db.Collection(coll).CountDocuments(ctx, bson.D{{Key: outbox.FieldPending, Value: true}})
		if err != nil {
			t.Fatalf("count pending: %v", err)
		}
		if n != 0 {
			t.Errorf("%s with outbox_pending after Flush = %d, want 0", coll, n)
		}
	}
	raw := readRaw(t, db, "pizzas", "bianca")
	if len(raw.Outbox) != 0 || raw.Revision != 3 {
		t.Errorf("bianca after Flush: outbox %v revision %d, want empty and 3", entryIDs(raw.Outbox), raw.Revision)
	}

	// Nothing is pending, so a second Flush sends nothing.
	seq := lastSeq(t, stream)
	if n, err := relay.Flush(ctx); n != 0 || err != nil {
		t.Errorf("second Flush() = %d, %v; want 0, nil", n, err)
	}
	if got := lastSeq(t, stream); got != seq {
		t.Errorf("stream last sequence after second Flush = %d, want %d", got, seq)
	}
	if got := relay.Published(); got != int64(len(want)) {
		t.Errorf("Published() = %d, want %d", got, len(want))
	}
}

func TestRelayRepublishCollapses(t *testing.T) {
	// A relay that stopped after publishing but before clearing the outbox
	// publishes again on the next start; the event id makes JetStream keep
	// one copy.
	ctx := testContext(t)
	s, db := newStore(t)
	bus, stream, start := newStream(t)
	ev := testEntry(t)
	if err := s.Create(ctx, menu.KindPizza, newItem(t, menu.KindPizza, "Bianca"), ev); err != nil {
		t.Fatalf("Create: %v", err)
	}
	relay := outbox.NewRelay(bus, logging.Discard(), s.Collections())
	if _, err := relay.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	_, err := db.Collection("pizzas").UpdateOne(ctx, bson.D{{Key: "_id", Value: "bianca"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: outbox.FieldEntries, Value: bson.A{ev}}, {Key: outbox.FieldPending, Value: true}}}})
	if err != nil {
		t.Fatalf("restore outbox: %v", err)
	}
	// JetStream already has it: the publish collapses, so nothing is new.
	if n, err := relay.Flush(ctx); n != 0 || err != nil {
		t.Fatalf("Flush of the restored entry = %d, %v; want 0 new, nil", n, err)
	}
	msgs := msgsAfter(t, stream, start)
	if len(msgs) != 1 || msgs[0].Header.Get(jetstream.MsgIDHeader) != ev.ID {
		var ids []string
		for _, m := range msgs {
			ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
		}
		t.Errorf("stream holds events %v, want only [%s]", ids, ev.ID)
	}
	if raw := readRaw(t, db, "pizzas", "bianca"); len(raw.Outbox) != 0 || raw.OutboxPending {
		t.Errorf("bianca after Flush: outbox %v pending %v, want cleared", entryIDs(raw.Outbox), raw.OutboxPending)
	}
}

func TestRelayRunWakesOnWrite(t *testing.T) {
	ctx := testContext(t)
	s, db := newStore(t)
	bus, stream, start := newStream(t)
	// Polling once an hour: only Notify can make the publish prompt.
	relay := outbox.NewRelay(bus, logging.Discard(), s.Collections(), outbox.WithInterval(time.Hour))
	s.Written = relay.Written
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := relay.Run(runCtx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() { stop(); wg.Wait() })

	waitPublished := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for relay.Published() < want {
			if time.Now().After(deadline) {
				t.Fatalf("relay published %d events within 10s, want %d", relay.Published(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	ev := testEntry(t)
	if err := s.Create(ctx, menu.KindTopping, newItem(t, menu.KindTopping, "Capers"), ev); err != nil {
		t.Fatalf("Create: %v", err)
	}
	waitPublished(1)
	settle(t, db, "toppings", "capers")
	ev2 := testEntry(t)
	if _, err := s.Update(ctx, menu.KindTopping, "capers", apply(menu.KindTopping, menu.Patch{Available: new(false)}),
		func(menu.Item) (outbox.Entry, error) { return ev2, nil }); err != nil {
		t.Fatalf("Update: %v", err)
	}
	waitPublished(2)
	var ids []string
	for _, m := range msgsAfter(t, stream, start) {
		ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
	}
	if diff := gocmp.Diff([]string{ev.ID, ev2.ID}, ids); diff != "" {
		t.Errorf("stream events (-want +got):\n%s", diff)
	}
}

func TestRelayRacesUpdates(t *testing.T) {
	ctx := testContext(t)
	s, db := newStore(t)
	bus, stream, start := newStream(t)
	relay := outbox.NewRelay(bus, logging.Discard(), s.Collections(), outbox.WithInterval(time.Millisecond))
	s.Written = relay.Written
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = relay.Run(runCtx) })
	t.Cleanup(func() { stop(); wg.Wait() })

	const n = 30
	var want []string
	for i := range n {
		ev := testEntry(t)
		want = append(want, ev.ID)
		_, err := s.Update(ctx, menu.KindPizza, "funghi", apply(menu.KindPizza, menu.Patch{Name: new(fmt.Sprint("Funghi ", i))}),
			func(menu.Item) (outbox.Entry, error) { return ev, nil })
		if err != nil {
			t.Fatalf("Update %d: %v", i, err)
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	wg.Wait()
	if _, err := relay.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	var got []string
	for _, m := range msgsAfter(t, stream, start) {
		got = append(got, m.Header.Get(jetstream.MsgIDHeader))
	}
	if diff := gocmp.Diff(want, got); diff != "" {
		t.Errorf("events published while the relay ran (-want +got):\n%s", diff)
	}
	raw := readRaw(t, db, "pizzas", "funghi")
	if raw.Revision != 1+n {
		t.Errorf("funghi revision = %d, want %d", raw.Revision, 1+n)
	}
}
