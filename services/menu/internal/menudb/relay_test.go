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
	"github.com/pizzashop/pizzashop/services/menu/internal/menudb"
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

// runRelay runs a relay named name over s's collections until the test
// ends or the returned stop is called, with s telling it of every write.
func runRelay(t *testing.T, s *menudb.Store, bus *natsx.Bus, opts ...outbox.Option) (*outbox.Relay, func()) {
	t.Helper()
	relay := outbox.NewRelay(bus, logging.Discard(), s.Collections(), opts...)
	s.Tracker = relay
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := relay.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	stop := func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return relay, stop
}

// waitIdle waits until relay has published every write it was told of.
func waitIdle(t *testing.T, relay *outbox.Relay) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for relay.Pending() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes still unpublished after 10s", relay.Pending())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func streamIDs(t *testing.T, stream jetstream.Stream, after uint64) []string {
	t.Helper()
	var ids []string
	for _, m := range msgsAfter(t, stream, after) {
		ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
	}
	return ids
}

func TestRelayPublishesEachEntryOnce(t *testing.T) {
	ctx := testContext(t)
	s, db := newStore(t)
	bus, stream, start := newStream(t)
	relay, _ := runRelay(t, s, bus, outbox.WithInterval(time.Hour))

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
	waitIdle(t, relay)

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
	if got := relay.Published(); got != int64(len(want)) {
		t.Errorf("Published() = %d, want %d", got, len(want))
	}
	// A write keeps the entries it finds that the relay has not yet
	// acknowledged, and drops the rest: once the relay is idle, the next
	// write leaves only its own event.
	raw := readRaw(t, db, "pizzas", "bianca")
	if ids := entryIDs(raw.Outbox); len(ids) == 0 || ids[len(ids)-1] != want[3].ID || raw.Revision != 3 {
		t.Errorf("bianca: outbox %v revision %d, want ending in %s, and 3", ids, raw.Revision, want[3].ID)
	}
	update(menu.KindPizza, "bianca", menu.Patch{Available: new(true)})
	if ids := entryIDs(readRaw(t, db, "pizzas", "bianca").Outbox); len(ids) != 1 || ids[0] != want[5].ID {
		t.Errorf("bianca after a write with every earlier event acknowledged: outbox %v, want only [%s]", ids, want[5].ID)
	}
}

func TestRelayResumesUnderItsName(t *testing.T) {
	// A process whose events could not get out dies; the next one under
	// its name publishes them, once, and a third finds nothing to do.
	ctx := testContext(t)
	s, _ := newStore(t)
	bus, stream, start := newStream(t)

	paused, stop := runRelay(t, s, bus, outbox.WithName("menu@test"), outbox.WithPaused(true))
	ev := testEntry(t)
	if err := s.Create(ctx, menu.KindPizza, newItem(t, menu.KindPizza, "Bianca"), ev); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if paused.Pending() != 1 {
		t.Fatalf("paused relay has %d pending writes, want 1", paused.Pending())
	}
	stop()
	if ids := streamIDs(t, stream, start); len(ids) != 0 {
		t.Fatalf("a paused relay published %v", ids)
	}

	next, stop := runRelay(t, s, bus, outbox.WithName("menu@test"))
	deadline := time.Now().Add(10 * time.Second)
	for next.Published() < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stop() // clean: nothing outstanding, so its mark goes
	if diff := gocmp.Diff([]string{ev.ID}, streamIDs(t, stream, start)); diff != "" {
		t.Fatalf("stream after the restart (-want +got):\n%s", diff)
	}

	third, _ := runRelay(t, s, bus, outbox.WithName("menu@test"))
	time.Sleep(300 * time.Millisecond)
	if third.Published() != 0 {
		t.Errorf("a third run published %d events, want 0: the clean stop left nothing to look for", third.Published())
	}
}

func TestRelayRunWakesOnWrite(t *testing.T) {
	ctx := testContext(t)
	s, _ := newStore(t)
	bus, stream, start := newStream(t)
	// Looking for stale marks once an hour: only a write can make it publish.
	relay, _ := runRelay(t, s, bus, outbox.WithInterval(time.Hour))

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
	ev2 := testEntry(t)
	if _, err := s.Update(ctx, menu.KindTopping, "capers", apply(menu.KindTopping, menu.Patch{Available: new(false)}),
		func(menu.Item) (outbox.Entry, error) { return ev2, nil }); err != nil {
		t.Fatalf("Update: %v", err)
	}
	waitPublished(2)
	if diff := gocmp.Diff([]string{ev.ID, ev2.ID}, streamIDs(t, stream, start)); diff != "" {
		t.Errorf("stream events (-want +got):\n%s", diff)
	}
}

func TestRelayRacesUpdates(t *testing.T) {
	ctx := testContext(t)
	s, db := newStore(t)
	bus, stream, start := newStream(t)
	relay, stop := runRelay(t, s, bus, outbox.WithInterval(time.Millisecond))

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
	waitIdle(t, relay)
	stop()
	if diff := gocmp.Diff(want, streamIDs(t, stream, start)); diff != "" {
		t.Errorf("events published while the relay ran (-want +got):\n%s", diff)
	}
	raw := readRaw(t, db, "pizzas", "funghi")
	if raw.Revision != 1+n {
		t.Errorf("funghi revision = %d, want %d", raw.Revision, 1+n)
	}
}
