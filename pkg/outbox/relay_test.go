package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/logging"
	"github.com/pizzashop/pizzashop/pkg/mongox"
	"github.com/pizzashop/pizzashop/pkg/natsx"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.opentelemetry.io/otel"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// runRelay runs r until the returned stop is called (or t ends); stop
// waits for Run to return.
func runRelay(t *testing.T, r *outbox.Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run() = %v, want nil", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("Run did not return 15s after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// stopClean stops a relay that has nothing outstanding right after it
// stored its mark, which it does about once a second: then no store of
// the mark is on its way when it stops (see
// TestRelayCleanShutdownWithMarkStoreInFlight).
func stopClean(t *testing.T, c *mongo.Collection, r *outbox.Relay, stop func()) {
	t.Helper()
	m0, _ := readMark(t, c, r.Name())
	waitFor(t, "a fresh store of the mark", func() bool {
		m, ok := readMark(t, c, r.Name())
		return ok && m.Beat.After(m0.Beat)
	})
	stop()
}

// answerLost tells relay of a write of entries to document id of c, begun
// now, whose answer was lost; stored says whether it reached the store
// (the document is inserted first, stamped as the write). It returns what
// the relay was told.
func answerLost(t *testing.T, ctx context.Context, relay *outbox.Relay, c *mongo.Collection, id string, stored bool, entries ...outbox.Entry) outbox.Written {
	t.Helper()
	at, err := relay.Begin(ctx)
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	if stored {
		insertWith(t, c, id, at, entries...)
	}
	w := outbox.Written{At: at, Coll: c, ID: id, Revision: 1, Entries: entries, Outcome: outbox.Unknown}
	relay.Done(w)
	return w
}

// checkMarkGone fails t if relay name's mark is still stored, as it must
// not be after a clean shutdown with no write outstanding.
func checkMarkGone(t *testing.T, c *mongo.Collection, name string) {
	t.Helper()
	if m, ok := readMark(t, c, name); ok {
		t.Errorf("mark %+v still stored after a clean shutdown, want it deleted: no write is outstanding", m)
	}
}

// waitFor polls cond until it holds, failing the test after 15 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// markDoc is a relay's mark as stored.
type markDoc struct {
	Name string    `bson:"_id"`
	Upto time.Time `bson:"upto"`
	Beat time.Time `bson:"beat"`
}

func marksOf(c *mongo.Collection) *mongo.Collection {
	return c.Database().Collection(outbox.MarksCollection)
}

// readMark returns the mark stored under name in the database of c.
func readMark(t *testing.T, c *mongo.Collection, name string) (markDoc, bool) {
	t.Helper()
	var m markDoc
	err := marksOf(c).FindOne(testContext(t), bson.D{{Key: "_id", Value: name}}).Decode(&m)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return markDoc{}, false
	}
	if err != nil {
		t.Fatalf("read mark %s: %v", name, err)
	}
	return m, true
}

func storeMark(t *testing.T, c *mongo.Collection, m markDoc) {
	t.Helper()
	if _, err := marksOf(c).InsertOne(testContext(t), m); err != nil {
		t.Fatalf("store mark %s: %v", m.Name, err)
	}
}

// countingBus is the bus, counting every publish it is asked for, repeats
// that JetStream collapses included.
type countingBus struct {
	*natsx.Bus
	mu    sync.Mutex
	sends map[string]int
}

func (b *countingBus) count(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sends == nil {
		b.sends = map[string]int{}
	}
	b.sends[id]++
}

func (b *countingBus) PublishRaw(ctx context.Context, subject, eventID, eventType string, data []byte) (bool, error) {
	b.count(eventID)
	return b.Bus.PublishRaw(ctx, subject, eventID, eventType, data)
}

func (b *countingBus) PublishRawAsync(ctx context.Context, subject, eventID, eventType string, data []byte) (func(context.Context) (bool, error), error) {
	b.count(eventID)
	return b.Bus.PublishRawAsync(ctx, subject, eventID, eventType, data)
}

func (b *countingBus) sent() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]int{}
	for k, v := range b.sends {
		out[k] = v
	}
	return out
}

// commandLog counts the commands a client sends, by command and
// collection.
type commandLog struct {
	mu sync.Mutex
	n  map[[2]string]int
}

func (l *commandLog) started(_ context.Context, e *event.CommandStartedEvent) {
	coll, _ := e.Command.Lookup(e.CommandName).StringValueOK()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == nil {
		l.n = map[[2]string]int{}
	}
	l.n[[2]string{e.CommandName, coll}]++
}

func (l *commandLog) snapshot() map[[2]string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[[2]string]int{}
	for k, v := range l.n {
		out[k] = v
	}
	return out
}

// monitoredColls returns n collections in a fresh database, twice: through
// a client whose commands are counted, and through one for the test's own
// reads.
func monitoredColls(t *testing.T, n int) (counted, plain []*mongo.Collection, log *commandLog) {
	t.Helper()
	plain = newColls(t, n)
	log = &commandLog{}
	c, err := mongox.Connect(devstack.Mongo(t), 16, func(o *options.ClientOptions) {
		o.SetMonitor(&event.CommandMonitor{Started: log.started})
	})
	if err != nil {
		t.Fatalf("mongox.Connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	for _, p := range plain {
		counted = append(counted, c.Database(p.Database().Name()).Collection(p.Name()))
	}
	return counted, plain, log
}

// positions maps each id in the stream to its place.
func positions(got []string) map[string]int {
	pos := map[string]int{}
	for i, id := range got {
		pos[id] = i
	}
	return pos
}

// checkOnce fails unless the stream holds exactly want, each once, in any
// order.
func checkOnce(t *testing.T, got, want []string) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Errorf("stream holds %d events %v,\nwant each of %d once: %v", len(got), got, len(want), want)
	}
}

// checkOrder fails unless ids appear in the stream in this order.
func checkOrder(t *testing.T, got []string, order ...string) {
	t.Helper()
	pos := positions(got)
	for i := 1; i < len(order); i++ {
		a, okA := pos[order[i-1]]
		b, okB := pos[order[i]]
		if !okA || !okB || a >= b {
			t.Errorf("stream order %v: want %v in this order", got, order)
			return
		}
	}
}

// TestRelayPublishesWrites checks the fast path: the entries of writes the
// relay is told of are published at once from memory, each once, in order
// per document, in the trace of the request that caused them, and the
// store sees no command besides the writes themselves and the mark.
func TestRelayPublishesWrites(t *testing.T) {
	useTracing(t)
	counted, colls, cmds := monitoredColls(t, 2)
	bus, stream := newBus(t)
	cb := &countingBus{Bus: bus}
	relay := outbox.NewRelay(cb, logging.Discard(), counted)
	begin := time.Now()
	stop := runRelay(t, relay)

	// Phase one: each write waits for the one before it to be published,
	// so the next write on the document finds its entries acknowledged and
	// drops them.
	reqCtx, span := otel.Tracer("test").Start(testContext(t), "create a")
	a1 := newEntry(t, reqCtx, "evt.a", "a1")
	span.End()
	ctx := testContext(t)
	inserts, writes := 0, 0
	wantPublished := int64(0)
	step := func(name string, do func(), events int) {
		t.Helper()
		do()
		wantPublished += int64(events)
		waitFor(t, name+" published", func() bool { return relay.Published() >= wantPublished })
	}
	step("insert a", func() { insertEvents(t, counted[0], relay, "a", a1); inserts++ }, 1)
	step("insert b", func() { insertEvents(t, counted[1], relay, "b", newEntry(t, ctx, "evt.b", "b1")); inserts++ }, 1)
	step("write a", func() {
		writeFrom(t, colls[0], counted[0], relay, "a", bson.D{{Key: "n", Value: 2}}, newEntry(t, ctx, "evt.a", "a2"))
		writes++
	}, 1)
	step("write a twice", func() {
		writeFrom(t, colls[0], counted[0], relay, "a", bson.D{{Key: "n", Value: 3}}, newEntry(t, ctx, "evt.a", "a3"), newEntry(t, ctx, "evt.a", "a4"))
		writes++
	}, 2)
	step("write b", func() { writeFrom(t, colls[1], counted[1], relay, "b", nil, newEntry(t, ctx, "evt.b", "b2")); writes++ }, 1)
	insertEvents(t, counted[0], relay, "quiet")
	inserts++
	writeFrom(t, colls[0], counted[0], relay, "quiet", bson.D{{Key: "n", Value: 1}})
	writes++

	for _, tc := range []struct {
		c    *mongo.Collection
		id   string
		want []string
	}{{colls[0], "a", []string{"a3", "a4"}}, {colls[1], "b", []string{"b2"}}, {colls[0], "quiet", nil}} {
		if d, _ := read(t, tc.c, tc.id); !slices.Equal(ids(d.Outbox), tc.want) {
			t.Errorf("%s's outbox holds %v, want %v: entries published before a write are dropped by it", tc.id, ids(d.Outbox), tc.want)
		}
	}
	for id, n := range cb.sent() {
		if n != 1 {
			t.Errorf("%s sent %d times, want once", id, n)
		}
	}

	// Phase two: writes in a row on one document, none waiting: entries
	// are kept and may be sent again, but the stream holds each once and in
	// the order of the writes.
	insert(t, counted[0], "c")
	inserts++
	var cs []string
	for i := range 6 {
		id := fmt.Sprintf("c%d", i+1)
		writeFrom(t, colls[0], counted[0], relay, "c", nil, newEntry(t, ctx, "evt.c", id))
		writes++
		cs = append(cs, id)
	}
	all := append([]string{"a1", "b1", "a2", "a3", "a4", "b2"}, cs...)
	waitFor(t, "every event in the stream", func() bool { return len(published(t, stream)) >= len(all) })
	got := published(t, stream)
	checkOnce(t, got, all)
	checkOrder(t, got, "a1", "a2", "a3", "a4")
	checkOrder(t, got, "b1", "b2")
	checkOrder(t, got, cs...)
	waitFor(t, "Published() to count every event", func() bool { return relay.Published() == int64(len(all)) })

	// What JetStream holds is the event as written, in the request's trace.
	pos := positions(got)
	m, err := stream.GetMsg(ctx, uint64(pos["a1"]+1))
	if err != nil {
		t.Fatalf("GetMsg: %v", err)
	}
	var payload wrapperspb.StringValue
	if err := proto.Unmarshal(m.Data, &payload); err != nil || payload.GetValue() != "payload of a1" ||
		m.Subject != "evt.a" || m.Header.Get(natsx.HeaderEventType) != "google.protobuf.StringValue" {
		t.Errorf("a1 published as subject %q type %q payload %q, want evt.a, google.protobuf.StringValue, %q",
			m.Subject, m.Header.Get(natsx.HeaderEventType), payload.GetValue(), "payload of a1")
	}
	if tp := m.Header.Get("traceparent"); !strings.Contains(tp, span.SpanContext().TraceID().String()) {
		t.Errorf("a1 published with traceparent %q, want the request's trace %s", tp, span.SpanContext().TraceID())
	}

	// The mark moves past the writes while the relay runs.
	last := stateOf(t, colls[0], "c").At
	waitFor(t, "the mark to move past the last write", func() bool {
		m, ok := readMark(t, colls[0], relay.Name())
		return ok && m.Upto.After(last)
	})
	stopClean(t, colls[0], relay, stop)
	elapsed := time.Since(begin)
	checkMarkGone(t, colls[0], relay.Name())

	// The store saw the writes, and the mark: no read of a document, no
	// second write to clear an outbox.
	marks := outbox.MarksCollection
	for k, n := range cmds.snapshot() {
		cmd, coll := k[0], k[1]
		switch {
		case coll == colls[0].Name() || coll == colls[1].Name():
			// listIndexes: once at start, for documents from before marks.
			if cmd != "insert" && cmd != "update" && !(cmd == "listIndexes" && n == 1) { // those are counted below
				t.Errorf("%d %s commands on %s, want none", n, cmd, coll)
			}
		case coll == marks:
			if cmd != "find" && cmd != "update" && cmd != "delete" {
				t.Errorf("%d %s commands on %s, want none", n, cmd, coll)
			}
			// Stored at most once a second while it moves, plus the first
			// and the one that fails to move it.
			if cmd == "update" && n > int(elapsed/time.Second)+3 {
				t.Errorf("the mark was stored %d times in %v, want about once a second at most", n, elapsed)
			}
		case cmd == "insert" || cmd == "update" || cmd == "delete" || cmd == "findAndModify":
			t.Errorf("%d %s commands on %q, want none", n, cmd, coll)
		}
	}
	snap := cmds.snapshot()
	gotIns := snap[[2]string{"insert", colls[0].Name()}] + snap[[2]string{"insert", colls[1].Name()}]
	gotUpd := snap[[2]string{"update", colls[0].Name()}] + snap[[2]string{"update", colls[1].Name()}]
	if gotIns != inserts || gotUpd != writes {
		t.Errorf("documents: %d inserts and %d updates sent, want %d and %d (one per write)", gotIns, gotUpd, inserts, writes)
	}
}

// TestRelayResumesUnderItsName is the crash drill: a relay that publishes
// nothing runs while writes go through it and stops with its mark stored;
// the next relay under its name publishes every entry since the mark, and
// nothing from before it.
func TestRelayResumesUnderItsName(t *testing.T) {
	colls := newColls(t, 2)
	bus, stream := newBus(t)
	ctx := testContext(t)
	e := func(id string) outbox.Entry { return newEntry(t, ctx, "evt."+id[:1], id) }

	// Written long before the relay ran, and published then.
	insertWith(t, colls[0], "old", time.Now().Add(-time.Hour).UTC(), e("old1"))

	first := outbox.NewRelay(bus, logging.Discard(), colls, outbox.WithName("x"), outbox.WithPaused(true))
	stopFirst := runRelay(t, first)
	insertEvents(t, colls[0], first, "a", e("a1"))
	firstStamp := stateOf(t, colls[0], "a").At
	insertEvents(t, colls[1], first, "b", e("b1"))
	if _, ok, err := outbox.Update(ctx, colls[0], "a", readCounter(colls[0], "a"), func(v *counter) (bool, []outbox.Entry, error) {
		v.N++
		return true, []outbox.Entry{e("a2")}, nil
	}, counterFields, first); err != nil || !ok {
		t.Fatalf("Update(a) = %v, %v", ok, err)
	}
	write(t, colls[1], first, "b", nil, e("b2"), e("b3"))
	if d, _ := read(t, colls[0], "a"); !slices.Equal(ids(d.Outbox), []string{"a1", "a2"}) {
		t.Errorf("a's outbox %v, want [a1 a2]: nothing is published, so nothing is dropped", ids(d.Outbox))
	}
	time.Sleep(200 * time.Millisecond)
	if got := published(t, stream); len(got) != 0 {
		t.Errorf("a paused relay published %v, want nothing", got)
	}
	stopFirst()
	m, ok := readMark(t, colls[0], "x")
	if !ok {
		t.Fatal("the paused relay's mark is gone after it stopped with writes unpublished")
	}
	if m.Upto.After(firstStamp) {
		t.Errorf("the paused relay's mark is at %v, after its first write at %v", m.Upto, firstStamp)
	}

	// A short grace: the run scans again from the last run's mark once
	// that run's writes cannot be on their way, and holds its mark there
	// until then (TestRelayRescansWhatTheLastRunLeft).
	second := outbox.NewRelay(bus, logging.Discard(), colls, outbox.WithName("x"), outbox.WithUnknownGrace(500*time.Millisecond))
	stopSecond := runRelay(t, second)
	insertEvents(t, colls[0], second, "c", e("c1")) // a new write while it catches up
	want := []string{"a1", "a2", "b1", "b2", "b3", "c1"}
	waitFor(t, "every entry published", func() bool { return len(published(t, stream)) >= len(want) })
	time.Sleep(100 * time.Millisecond) // room for a wrong extra publish
	got := published(t, stream)
	checkOnce(t, got, want)
	checkOrder(t, got, "a1", "a2")
	checkOrder(t, got, "b1", "b2", "b3")
	if n := second.Published(); n != int64(len(want)) {
		t.Errorf("second relay Published() = %d, want %d", n, len(want))
	}

	// Once it caught up, its mark moves past everything, and a clean
	// shutdown deletes it.
	last := stateOf(t, colls[0], "c").At
	waitFor(t, "the mark to move past the last write", func() bool {
		m, ok := readMark(t, colls[0], "x")
		return ok && m.Upto.After(last)
	})
	stopClean(t, colls[0], second, stopSecond)
	checkMarkGone(t, colls[0], "x")
}

// TestRelayKeepsItsMarkWhenEntriesAreLeft stops a relay whose publisher
// refuses some entries: its mark stays at the oldest unpublished write,
// and the next run under its name sends those entries only, not what was
// published before the mark.
func TestRelayKeepsItsMarkWhenEntriesAreLeft(t *testing.T) {
	colls := newColls(t, 1)
	c := colls[0]
	ctx := testContext(t)
	e := func(id string) outbox.Entry { return newEntry(t, ctx, "evt.x", id) }
	pub := &fakePublisher{fail: func(id string, _ int) error {
		if strings.HasPrefix(id, "late") {
			return errors.New("nats: no responders")
		}
		return nil
	}}
	first := outbox.NewRelay(pub, logging.Discard(), colls, outbox.WithName("y"))
	stopFirst := runRelay(t, first)
	insertEvents(t, c, first, "p", e("p1"))
	insertEvents(t, c, first, "q", e("q1"))
	waitFor(t, "p1 and q1 published", func() bool { return first.Published() == 2 })
	qStamp := stateOf(t, c, "q").At
	time.Sleep(5 * time.Millisecond) // later writes get a later stamp
	write(t, c, first, "p", nil, e("late-p2"))
	pStamp := stateOf(t, c, "p").At
	if d, _ := read(t, c, "p"); !slices.Equal(ids(d.Outbox), []string{"late-p2"}) {
		t.Errorf("p's outbox %v, want [late-p2]: p1 was published", ids(d.Outbox))
	}
	insertEvents(t, c, first, "r", e("late-r1"))
	// The failures are retried while the relay runs.
	waitFor(t, "late-p2 retried", func() bool { return pub.attempts("late-p2") >= 3 })
	stopFirst()
	if got := pub.published(); !slices.Equal(got, []string{"p1", "q1"}) {
		t.Errorf("first run published %v, want [p1 q1]", got)
	}
	m, ok := readMark(t, c, "y")
	if !ok {
		t.Fatal("mark deleted although entries were left unpublished")
	}
	if m.Upto.After(pStamp) || !m.Upto.After(qStamp) {
		t.Errorf("mark at %v; want after q's write (%v, published) and at or before p's second (%v, not published)", m.Upto, qStamp, pStamp)
	}

	pub2 := &fakePublisher{}
	left, _ := readMark(t, c, "y")
	second := outbox.NewRelay(pub2, logging.Discard(), colls, outbox.WithName("y"), outbox.WithUnknownGrace(500*time.Millisecond))
	stopSecond := runRelay(t, second)
	waitFor(t, "the entries left published", func() bool { return len(pub2.published()) >= 2 })
	time.Sleep(200 * time.Millisecond) // room for a wrong extra publish
	// The mark moves on once the second scan from the last run's mark,
	// after the grace, is done.
	waitFor(t, "the mark to move past the last run's", func() bool {
		m, ok := readMark(t, c, "y")
		return ok && m.Upto.After(left.Upto)
	})
	stopClean(t, c, second, stopSecond)
	got := pub2.published()
	slices.Sort(got)
	if !slices.Equal(got, []string{"late-p2", "late-r1"}) {
		t.Errorf("second run published %v, want [late-p2 late-r1] once each: q1 (still in q's outbox, stamped before the mark) must not be sent again", got)
	}
	checkMarkGone(t, c, "y")
}

// TestRelayTakesOverStaleMarks leaves the mark of a relay that died and
// never came back: another relay finds it at its next look, publishes what
// the documents written since it hold, and deletes it. A mark that still
// beats is left alone.
func TestRelayTakesOverStaleMarks(t *testing.T) {
	colls := newColls(t, 2)
	ctx := testContext(t)
	e := func(id string) outbox.Entry { return newEntry(t, ctx, "evt.x", id) }
	pub := &fakePublisher{}
	relay := outbox.NewRelay(pub, logging.Discard(), colls, outbox.WithInterval(50*time.Millisecond), outbox.WithStaleAfter(3*time.Second))
	runRelay(t, relay)
	waitFor(t, "the relay's own mark", func() bool { _, ok := readMark(t, colls[0], relay.Name()); return ok })
	time.Sleep(100 * time.Millisecond) // let the first look go by: the next one is on the interval

	now := time.Now().UTC().Truncate(time.Millisecond)
	upto := now.Add(-30 * time.Second)
	insertWith(t, colls[0], "before", upto.Add(-time.Minute), e("before1"))
	insertWith(t, colls[0], "at", upto, e("at1"), e("at2"))
	insertWith(t, colls[1], "after", upto.Add(10*time.Second), e("after1"))
	insertWith(t, colls[0], "published", upto.Add(5*time.Second)) // nothing to send
	storeMark(t, colls[0], markDoc{Name: "alive", Upto: upto.Add(-2 * time.Minute), Beat: now})
	storeMark(t, colls[0], markDoc{Name: "gone", Upto: upto, Beat: now.Add(-time.Hour)})

	waitFor(t, "the stale mark taken over", func() bool { _, ok := readMark(t, colls[0], "gone"); return !ok })
	time.Sleep(200 * time.Millisecond) // a few more looks
	got := pub.published()
	checkOnce(t, got, []string{"at1", "at2", "after1"})
	checkOrder(t, got, "at1", "at2")
	if m, ok := readMark(t, colls[0], "alive"); !ok || !m.Beat.Equal(now) {
		t.Errorf("the live mark: %+v, %v; want it left as it was", m, ok)
	}
	if n := relay.Published(); n != 3 {
		t.Errorf("Published() = %d, want 3", n)
	}
}

// TestRelayRetries makes the publisher fail for a while: the relay keeps
// every entry until it is acknowledged, and loses none.
func TestRelayRetries(t *testing.T) {
	t.Run("sync publisher", func(t *testing.T) {
		colls := newColls(t, 1)
		ctx := testContext(t)
		pub := &fakePublisher{fail: func(_ string, call int) error {
			if call <= 3 || call%3 == 0 {
				return errors.New("nats: connection closed")
			}
			return nil
		}}
		relay := outbox.NewRelay(pub, logging.Discard(), colls)
		stop := runRelay(t, relay)
		var want []string
		for i := range 5 {
			id := fmt.Sprintf("d%d", i)
			insertEvents(t, colls[0], relay, id, newEntry(t, ctx, "evt.x", id+"-1"), newEntry(t, ctx, "evt.x", id+"-2"))
			want = append(want, id+"-1", id+"-2")
		}
		waitFor(t, "every entry published", func() bool { return len(pub.published()) >= len(want) })
		stopClean(t, colls[0], relay, stop)
		got := pub.published()
		checkOnce(t, got, want)
		if m, ok := readMark(t, colls[0], relay.Name()); ok {
			t.Errorf("mark %+v still stored after everything was published and the relay stopped", m)
		}
	})

	// The async path: sends refused outright, and sends that JetStream
	// stored but whose answer was lost.
	t.Run("async publisher", func(t *testing.T) {
		colls := newColls(t, 1)
		ctx := testContext(t)
		bus, stream := newBus(t)
		fb := &flakyBus{Bus: bus, mode: func(call int) string {
			switch {
			case call <= 2:
				return "refuse"
			case call <= 5:
				return "lose"
			case call%4 == 0:
				return "lose"
			}
			return ""
		}}
		relay := outbox.NewRelay(fb, logging.Discard(), colls)
		stop := runRelay(t, relay)
		var want []string
		for i := range 5 {
			id := fmt.Sprintf("d%d", i)
			insertEvents(t, colls[0], relay, id, newEntry(t, ctx, "evt.x", id+"-1"))
			write(t, colls[0], relay, id, nil, newEntry(t, ctx, "evt.x", id+"-2"))
			want = append(want, id+"-1", id+"-2")
		}
		waitFor(t, "every entry in the stream", func() bool { return len(published(t, stream)) >= len(want) })
		// Wait for the relay to hear of every ack: then nothing is left
		// open and a clean shutdown deletes the mark.
		waitFor(t, "the mark to move past the writes", func() bool {
			m, ok := readMark(t, colls[0], relay.Name())
			return ok && m.Upto.After(stateOf(t, colls[0], "d4").At)
		})
		stopClean(t, colls[0], relay, stop)
		got := published(t, stream)
		checkOnce(t, got, want)
		if _, ok := readMark(t, colls[0], relay.Name()); ok {
			t.Error("mark still stored after everything was published and the relay stopped")
		}
	})
}

// flakyBus is the bus with async publishes that fail as mode says for
// each call: "refuse" fails the send, "lose" sends it and reports an
// error as a lost answer would, "drop" reports the send made but never
// makes it, as a connection that breaks under it would.
type flakyBus struct {
	*natsx.Bus
	mu    sync.Mutex
	calls int
	mode  func(call int) string
}

func (b *flakyBus) PublishRawAsync(ctx context.Context, subject, eventID, eventType string, data []byte) (func(context.Context) (bool, error), error) {
	b.mu.Lock()
	b.calls++
	mode := b.mode(b.calls)
	b.mu.Unlock()
	switch mode {
	case "refuse":
		return nil, errors.New("nats: connection closed")
	case "drop":
		// Sent on a connection that broke before the bytes left: JetStream
		// never sees it, and the answer never comes.
		return func(context.Context) (bool, error) { return false, errors.New("nats: timeout") }, nil
	}
	wait, err := b.Bus.PublishRawAsync(ctx, subject, eventID, eventType, data)
	if err != nil || mode != "lose" {
		return wait, err
	}
	return func(ctx context.Context) (bool, error) {
		_, _ = wait(ctx)
		return false, errors.New("nats: timeout")
	}, nil
}

// TestRelayBeginWaitsForItsMark: no write may begin before the relay has
// stored its mark, or a crash could leave the write behind every mark.
func TestRelayBeginWaitsForItsMark(t *testing.T) {
	colls := newColls(t, 1)
	c := colls[0]
	ctx := testContext(t)

	t.Run("not running", func(t *testing.T) {
		relay := outbox.NewRelay(&fakePublisher{}, logging.Discard(), colls)
		bctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if at, err := relay.Begin(bctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Begin() before Run = %v, %v; want context.DeadlineExceeded", at, err)
		}
		insert(t, c, "a")
		_, before := read(t, c, "a")
		wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		st := stateOf(t, c, "a")
		set := bson.D{{Key: outbox.FieldRevision, Value: st.Revision + 1}}
		if ok, err := outbox.Write(wctx, c, relay, "a", st, set, newEntry(t, ctx, "evt.a", "a1")); ok || err == nil {
			t.Errorf("Write() through a relay not running = %v, %v; want an error", ok, err)
		}
		if _, after := read(t, c, "a"); !reflect.DeepEqual(before, after) {
			t.Errorf("Write() through a relay not running changed the document: %v -> %v", before, after)
		}
	})

	t.Run("store unreachable", func(t *testing.T) {
		relay := outbox.NewRelay(&fakePublisher{}, logging.Discard(), []*mongo.Collection{closedColl(t, c.Database(), c.Name())})
		stop := runRelay(t, relay)
		bctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		if at, err := relay.Begin(bctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Begin() while the mark cannot be stored = %v, %v; want context.DeadlineExceeded", at, err)
		}
		stop() // Run returns although it never stored its mark
	})

	t.Run("released once the mark is stored", func(t *testing.T) {
		relay := outbox.NewRelay(&fakePublisher{}, logging.Discard(), colls)
		type begun struct {
			at        time.Time
			err       error
			markFound bool
			mark      markDoc
		}
		got := make(chan begun, 1)
		go func() {
			at, err := relay.Begin(ctx)
			var m markDoc
			ferr := marksOf(c).FindOne(ctx, bson.D{{Key: "_id", Value: relay.Name()}}).Decode(&m)
			got <- begun{at, err, ferr == nil, m}
		}()
		time.Sleep(50 * time.Millisecond)
		select {
		case b := <-got:
			t.Fatalf("Begin() returned %v, %v before Run started", b.at, b.err)
		default:
		}
		stop := runRelay(t, relay)
		var b begun
		select {
		case b = <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("Begin() still waiting 10s after Run started")
		}
		if b.err != nil || !b.markFound || b.at.Before(b.mark.Upto) {
			t.Errorf("Begin() = %v, %v with mark %+v (found %v); want a stamp at or after the stored mark", b.at, b.err, b.mark, b.markFound)
		}
		// Stamps never go back, and each holds the mark until it is done.
		prev := b.at
		for range 20 {
			at, err := relay.Begin(ctx)
			if err != nil || at.Before(prev) {
				t.Fatalf("Begin() = %v, %v after %v; want a stamp not before it", at, err, prev)
			}
			relay.Done(outbox.Written{At: at, Coll: c, ID: "none", Outcome: outbox.NotApplied})
			prev = at
		}
		stop()
		m, ok := readMark(t, c, relay.Name())
		if !ok || m.Upto.After(b.at) {
			t.Errorf("mark after stopping with one write begun and never done: %+v, %v; want kept at or before %v", m, ok, b.at)
		}
	})
}

// TestRelayUnknownOutcome tells the relay of writes whose answer was lost:
// it reads their documents back and publishes what they hold.
func TestRelayUnknownOutcome(t *testing.T) {
	colls := newColls(t, 1)
	c := colls[0]
	ctx := testContext(t)
	pub := &fakePublisher{}
	const grace = 700 * time.Millisecond
	relay := outbox.NewRelay(pub, logging.Discard(), colls, outbox.WithUnknownGrace(grace))
	stop := runRelay(t, relay)

	// The write was stored, its answer lost.
	answerLost(t, ctx, relay, c, "u", true, newEntry(t, ctx, "evt.u", "u1"))
	// The write never reached the store: nothing to publish.
	answerLost(t, ctx, relay, c, "ghost", false, newEntry(t, ctx, "evt.u", "ghost1"))

	// Not read back at once: a write still on its way could land after.
	time.Sleep(grace / 2)
	if got := pub.published(); len(got) != 0 {
		t.Errorf("published %v within half the grace, want nothing yet", got)
	}
	waitFor(t, "u1 published", func() bool { return len(pub.published()) >= 1 })
	time.Sleep(100 * time.Millisecond)
	if got := pub.published(); !slices.Equal(got, []string{"u1"}) {
		t.Errorf("published %v, want [u1]: what the stored document holds, nothing of the write that was not stored", got)
	}
	// Both writes are settled: a clean shutdown deletes the mark.
	stopClean(t, c, relay, stop)
	checkMarkGone(t, c, relay.Name())
}

// TestRelayAcked checks when the relay lets a write drop the entries it
// finds: when it acknowledged them itself, or, for a document holding many,
// when they were stamped before every relay's mark.
func TestRelayAcked(t *testing.T) {
	colls := newColls(t, 1)
	c := colls[0]
	ctx := testContext(t)
	pub := &fakePublisher{}
	relay := outbox.NewRelay(pub, logging.Discard(), colls)
	runRelay(t, relay)
	now := time.Now().UTC().Truncate(time.Millisecond)
	// Another relay, alive, whose mark is two hours behind.
	storeMark(t, c, markDoc{Name: "behind", Upto: now.Add(-2 * time.Hour), Beat: now})

	many := func(prefix string, n int) []outbox.Entry {
		var out []outbox.Entry
		for i := range n {
			out = append(out, newEntry(t, ctx, "evt.x", fmt.Sprintf("%s%d", prefix, i)))
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		entries []outbox.Entry
		at      time.Time
		want    bool
	}{
		{"few entries of unknown fate", many("few", 3), now.Add(-3 * time.Hour), false},
		{"many entries before every mark", many("old", 8), now.Add(-3 * time.Hour), true},
		{"many entries after a mark", many("mid", 8), now.Add(-time.Hour), false},
		{"many entries after every mark", many("new", 8), now.Add(time.Hour), false},
	} {
		if got := relay.Acked(ctx, tc.entries, tc.at); got != tc.want {
			t.Errorf("%s: Acked() = %v, want %v", tc.name, got, tc.want)
		}
	}

	// Entries the relay published itself are known, whatever their stamp.
	insertEvents(t, c, relay, "a", newEntry(t, ctx, "evt.x", "a1"))
	waitFor(t, "a1 published", func() bool { return relay.Published() == 1 })
	a := stateOf(t, c, "a")
	if !relay.Acked(ctx, a.Outbox, a.At) {
		t.Error("Acked(entries the relay published) = false, want true")
	}
	if relay.Acked(ctx, append(a.Outbox, newEntry(t, ctx, "evt.x", "a2")), a.At) {
		t.Error("Acked(one published entry and one not) = true, want false")
	}

	// Through writes: a document with many entries from before every mark
	// drops them unsent; one with a few keeps them and they go out again.
	insertWith(t, c, "old", now.Add(-3*time.Hour), many("old", 8)...)
	insertWith(t, c, "few", now.Add(-3*time.Hour), many("few", 3)...)
	write(t, c, relay, "old", nil, newEntry(t, ctx, "evt.x", "old-new"))
	write(t, c, relay, "few", nil, newEntry(t, ctx, "evt.x", "few-new"))
	if d, _ := read(t, c, "old"); !slices.Equal(ids(d.Outbox), []string{"old-new"}) {
		t.Errorf("old's outbox %v, want [old-new]", ids(d.Outbox))
	}
	if d, _ := read(t, c, "few"); len(d.Outbox) != 4 {
		t.Errorf("few's outbox %v, want its 3 entries and few-new", ids(d.Outbox))
	}
	waitFor(t, "the writes published", func() bool { return relay.Published() == 6 })
	time.Sleep(100 * time.Millisecond)
	got := pub.published()
	checkOnce(t, got, []string{"a1", "old-new", "few0", "few1", "few2", "few-new"})
	checkOrder(t, got, "few0", "few1", "few2", "few-new")
}

// TestRelayConcurrentUpdates runs many writers on the same and on
// different documents through Update, with the relay as their tracker:
// no change is lost, and every event of a stored change is in the stream
// once, in the order of its document's changes.
func TestRelayConcurrentUpdates(t *testing.T) {
	const (
		shared  = 3  // documents every writer changes
		writers = 8  // each also has a document of its own
		rounds  = 12 // changes per writer
	)
	colls := newColls(t, 2)
	bus, stream := newBus(t)
	ctx := testContext(t)
	relay := outbox.NewRelay(bus, logging.Discard(), colls)
	stop := runRelay(t, relay)

	type docRef struct {
		c  *mongo.Collection
		id string
	}
	var docs []docRef
	for i := range shared {
		docs = append(docs, docRef{colls[i%2], fmt.Sprintf("shared%d", i)})
	}
	for w := range writers {
		docs = append(docs, docRef{colls[w%2], fmt.Sprintf("own%d", w)})
	}
	for _, d := range docs {
		insert(t, d.c, d.id)
	}

	// history[doc][n-1] is the event of the doc's change that set n.
	var mu sync.Mutex
	history := map[string]map[int]string{}
	for _, d := range docs {
		history[d.id] = map[int]string{}
	}
	change := func(d docRef, eventID string) error {
		for {
			v, ok, err := outbox.Update(ctx, d.c, d.id, readCounter(d.c, d.id), func(v *counter) (bool, []outbox.Entry, error) {
				v.N++
				return true, []outbox.Entry{newEntry(t, ctx, "evt.x", eventID)}, nil
			}, counterFields, relay)
			if errors.Is(err, outbox.ErrConflict) {
				continue // none of its attempts was stored: try again
			}
			if err != nil || !ok {
				return fmt.Errorf("Update(%s) = %v, %v", d.id, ok, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if prev, dup := history[d.id][v.N]; dup {
				return fmt.Errorf("%s: changes %s and %s both set n to %d", d.id, prev, eventID, v.N)
			}
			history[d.id][v.N] = eventID
			return nil
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds)
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range rounds {
				d := docs[shared+w]
				if i%3 != 0 {
					d = docs[rng.IntN(shared)]
				}
				if err := change(d, fmt.Sprintf("w%d-%d", w, i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	var want []string
	for _, h := range history {
		for _, id := range h {
			want = append(want, id)
		}
	}
	if len(want) != writers*rounds {
		t.Fatalf("%d changes recorded, want %d", len(want), writers*rounds)
	}
	waitFor(t, "every event in the stream", func() bool { return len(published(t, stream)) >= len(want) })
	time.Sleep(100 * time.Millisecond)
	got := published(t, stream)
	checkOnce(t, got, want)

	for _, d := range docs {
		h := history[d.id]
		var order []string
		for n := 1; n <= len(h); n++ {
			id, ok := h[n]
			if !ok {
				t.Fatalf("%s: no change set n to %d of %d", d.id, n, len(h))
			}
			order = append(order, id)
		}
		checkOrder(t, got, order...)
		doc, _ := read(t, d.c, d.id)
		if doc.N != len(h) || doc.Revision != int64(len(h)) {
			t.Errorf("%s: n %d revision %d, want %d changes: one was lost", d.id, doc.N, doc.Revision, len(h))
		}
		// A write keeps all the entries it found or none, so the outbox is
		// the latest changes of the document, ending with the last one.
		out := ids(doc.Outbox)
		if len(out) == 0 || len(out) > len(order) || !slices.Equal(out, order[len(order)-len(out):]) {
			t.Errorf("%s: outbox %v, want the latest of its changes %v", d.id, out, order)
		}
	}

	// Everything is published: the next change of each document drops
	// what its outbox held.
	for i, d := range docs {
		if err := change(d, fmt.Sprintf("final%d", i)); err != nil {
			t.Fatal(err)
		}
		if doc, _ := read(t, d.c, d.id); !slices.Equal(ids(doc.Outbox), []string{fmt.Sprintf("final%d", i)}) {
			t.Errorf("%s: outbox after a change once all was published %v, want only final%d", d.id, ids(doc.Outbox), i)
		}
	}
	waitFor(t, "the final events", func() bool { return len(published(t, stream)) >= len(want)+len(docs) })
	waitFor(t, "the mark to move past the writes", func() bool {
		m, ok := readMark(t, colls[0], relay.Name())
		return ok && m.Upto.After(stateOf(t, docs[len(docs)-1].c, docs[len(docs)-1].id).At)
	})
	stopClean(t, colls[0], relay, stop)
	checkMarkGone(t, colls[0], relay.Name())
}

// TestRelayKeepsDocumentOrderAcrossFailures: when the publish of one of a
// document's entries fails, the entries after it must wait for its retry,
// or the stream holds the document's events out of order.
func TestRelayKeepsDocumentOrderAcrossFailures(t *testing.T) {
	t.Run("sync publisher", func(t *testing.T) {
		colls := newColls(t, 1)
		ctx := testContext(t)
		pub := &fakePublisher{fail: func(id string, call int) error {
			if id == "o1" && call == 1 {
				return errors.New("nats: timeout")
			}
			return nil
		}}
		relay := outbox.NewRelay(pub, logging.Discard(), colls)
		runRelay(t, relay)
		insertEvents(t, colls[0], relay, "o", newEntry(t, ctx, "evt.o", "o1"), newEntry(t, ctx, "evt.o", "o2"))
		waitFor(t, "both published", func() bool { return len(pub.published()) >= 2 })
		if got := pub.published(); !slices.Equal(got, []string{"o1", "o2"}) {
			t.Errorf("published %v, want [o1 o2]", got)
		}
	})
	t.Run("async publisher", func(t *testing.T) {
		colls := newColls(t, 1)
		ctx := testContext(t)
		bus, stream := newBus(t)
		fb := &flakyBus{Bus: bus, mode: func(call int) string {
			if call == 1 {
				return "refuse"
			}
			return ""
		}}
		relay := outbox.NewRelay(fb, logging.Discard(), colls)
		runRelay(t, relay)
		insertEvents(t, colls[0], relay, "o", newEntry(t, ctx, "evt.o", "o1"), newEntry(t, ctx, "evt.o", "o2"))
		waitFor(t, "both in the stream", func() bool { return len(published(t, stream)) >= 2 })
		if got := published(t, stream); !slices.Equal(got, []string{"o1", "o2"}) {
			t.Errorf("stream holds %v, want [o1 o2]", got)
		}
	})
	// The first send fails only when its answer is awaited, after the
	// second was sent: the second must not have gone before the first is
	// known stored.
	t.Run("async publisher, a send lost on its way", func(t *testing.T) {
		colls := newColls(t, 1)
		ctx := testContext(t)
		bus, stream := newBus(t)
		fb := &flakyBus{Bus: bus, mode: func(call int) string {
			if call == 1 {
				return "drop"
			}
			return ""
		}}
		relay := outbox.NewRelay(fb, logging.Discard(), colls)
		runRelay(t, relay)
		insertEvents(t, colls[0], relay, "o", newEntry(t, ctx, "evt.o", "o1"), newEntry(t, ctx, "evt.o", "o2"))
		waitFor(t, "both in the stream", func() bool { return len(published(t, stream)) >= 2 })
		if got := published(t, stream); !slices.Equal(got, []string{"o1", "o2"}) {
			t.Errorf("stream holds %v, want [o1 o2]", got)
		}
	})
}

// holdingProxy forwards TCP connections to the store; once armed, the next
// bytes a client sends are held back for a while before they go on, as a
// slow network would.
type holdingProxy struct {
	ln     net.Listener
	target string
	hold   time.Duration
	armed  atomic.Bool
}

func newHoldingProxy(t *testing.T, target string, hold time.Duration) *holdingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	p := &holdingProxy{ln: ln, target: target, hold: hold}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *holdingProxy) serve(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer s.Close()
	go func() {
		_, _ = io.Copy(c, s)
		_ = c.Close()
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if p.armed.CompareAndSwap(true, false) {
				time.Sleep(p.hold)
			}
			if _, werr := s.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			time.Sleep(p.hold) // the store still carries out what it got
			return
		}
	}
}

// TestRelayCleanShutdownWithMarkStoreInFlight stops a relay, with nothing
// outstanding, while a routine store of its mark is on its way to the
// store: the clean shutdown must still leave no mark behind.
func TestRelayCleanShutdownWithMarkStoreInFlight(t *testing.T) {
	plain := newColls(t, 1)
	ctx := testContext(t)
	u, err := url.Parse(devstack.Mongo(t))
	if err != nil {
		t.Fatalf("store URI: %v", err)
	}
	proxy := newHoldingProxy(t, u.Host, 300*time.Millisecond)
	u.Host = proxy.ln.Addr().String()
	var onMarkStore atomic.Pointer[func()]
	client, err := mongox.Connect(u.String(), 16, func(o *options.ClientOptions) {
		o.SetMonitor(&event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
			coll, _ := e.Command.Lookup(e.CommandName).StringValueOK()
			if e.CommandName == "update" && coll == outbox.MarksCollection {
				if f := onMarkStore.Swap(nil); f != nil {
					(*f)()
				}
			}
		}})
	})
	if err != nil {
		t.Fatalf("mongox.Connect: %v", err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	colls := []*mongo.Collection{client.Database(plain[0].Database().Name()).Collection(plain[0].Name())}
	relay := outbox.NewRelay(&fakePublisher{}, logging.Discard(), colls)
	stop := runRelay(t, relay)
	insertEvents(t, plain[0], relay, "d", newEntry(t, ctx, "evt.x", "e1"))
	waitFor(t, "e1 published", func() bool { return relay.Published() == 1 })

	// The next store of the mark (about a second after the first) is held
	// on the way; the relay is stopped meanwhile.
	stopped := make(chan struct{})
	arm := func() {
		proxy.armed.Store(true)
		time.AfterFunc(30*time.Millisecond, func() {
			stop()
			close(stopped)
		})
	}
	onMarkStore.Store(&arm)
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the relay did not store its mark again within 10s")
	}
	time.Sleep(time.Second) // the held store reaches the store
	checkMarkGone(t, plain[0], relay.Name())
}

// TestRelayForgetsWhatOverflowsAndScansForIt fills the relay's memory while
// JetStream does not answer: the writes past the bound are forgotten, and
// found again by a scan of the store once JetStream is back.
func TestRelayForgetsWhatOverflowsAndScansForIt(t *testing.T) {
	colls := newColls(t, 1)
	c := colls[0]
	ctx := testContext(t)
	blocked, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	pub := &fakePublisher{}
	blocking := publisherFunc(func(pctx context.Context, subject, id, typ string, data []byte) (bool, error) {
		once.Do(func() {
			close(blocked)
			<-release // the first publish hangs until the test lets it go
		})
		return pub.PublishRaw(pctx, subject, id, typ, data)
	})
	relay := outbox.NewRelay(blocking, logging.Discard(), colls)
	stop := runRelay(t, relay)

	bulk := []outbox.Entry{newEntry(t, ctx, "evt.x", "bulk")}
	tell := func(id string, entries []outbox.Entry) time.Time {
		at, err := relay.Begin(ctx)
		if err != nil {
			t.Fatalf("Begin: %v", err)
		}
		relay.Done(outbox.Written{At: at, Coll: c, ID: id, Revision: 1, Entries: entries, Outcome: outbox.Applied})
		return at
	}
	tell("first", bulk)
	<-blocked
	// 100,000 writes wait in memory behind the hanging publish; the bound
	// is reached.
	for i := range 100_000 {
		tell(fmt.Sprint(i), bulk)
	}
	// This write is told with no entries, so only a scan of the store can
	// find what its document holds.
	at, err := relay.Begin(ctx)
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	insertWith(t, c, "over", at, newEntry(t, ctx, "evt.x", "over1"))
	relay.Done(outbox.Written{At: at, Coll: c, ID: "over", Revision: 1, Outcome: outbox.Applied})
	close(release)

	waitFor(t, "over1 published", func() bool { return slices.Contains(pub.published(), "over1") })
	checkOnce(t, pub.published(), []string{"bulk", "over1"})
	waitFor(t, "the mark to move past the writes", func() bool {
		m, ok := readMark(t, c, relay.Name())
		return ok && m.Upto.After(at)
	})
	stopClean(t, c, relay, stop)
	checkMarkGone(t, c, relay.Name())
}

type publisherFunc func(ctx context.Context, subject, eventID, eventType string, data []byte) (bool, error)

func (f publisherFunc) PublishRaw(ctx context.Context, subject, eventID, eventType string, data []byte) (bool, error) {
	return f(ctx, subject, eventID, eventType, data)
}

// TestRelayWriteAfterRunEnded writes through a relay whose Run has
// returned after a clean shutdown (its mark deleted): the write must either
// be refused, or its entry be published by the next run under the name.
func TestRelayWriteAfterRunEnded(t *testing.T) {
	colls := newColls(t, 1)
	c := colls[0]
	ctx := testContext(t)
	relay := outbox.NewRelay(&fakePublisher{}, logging.Discard(), colls, outbox.WithName("z"))
	stop := runRelay(t, relay)
	insert(t, c, "a")
	stopClean(t, c, relay, stop)

	st := stateOf(t, c, "a")
	set := bson.D{{Key: outbox.FieldRevision, Value: st.Revision + 1}}
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := outbox.Write(wctx, c, relay, "a", st, set, newEntry(t, ctx, "evt.a", "a1")); err != nil {
		return // refused: nothing was written
	}
	pub := &fakePublisher{}
	next := outbox.NewRelay(pub, logging.Discard(), colls, outbox.WithName("z"))
	runRelay(t, next)
	deadline := time.Now().Add(3 * time.Second)
	for !slices.Equal(pub.published(), []string{"a1"}) {
		if time.Now().After(deadline) {
			t.Fatalf("a write accepted after Run returned is stored with a1, and the next run under the name published %v, want [a1]", pub.published())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRelayUnknownWriteLandsLate: a write whose answer was lost lands in the
// store only after the relay was told of it (it was still on its way). Its
// entries must still be published: the relay reads the document back only
// once the write cannot be on its way any more.
func TestRelayUnknownWriteLandsLate(t *testing.T) {
	colls := newColls(t, 1)
	c := colls[0]
	ctx := testContext(t)
	pub := &fakePublisher{}
	// The write lands well within the grace however busy the machine.
	relay := outbox.NewRelay(pub, logging.Discard(), colls, outbox.WithUnknownGrace(3*time.Second))
	runRelay(t, relay)

	w := answerLost(t, ctx, relay, c, "l", false, newEntry(t, ctx, "evt.l", "late1"))
	time.Sleep(300 * time.Millisecond) // the relay has been woken meanwhile
	insertWith(t, c, "l", w.At, w.Entries...)
	waitFor(t, "late1 published", func() bool { return slices.Contains(pub.published(), "late1") })
}

// TestRelayDrainsDocumentsFromBeforeMarks: documents stored before relays
// kept marks flag an outbox not yet cleared with outbox_pending, under an
// index on it. A relay publishes what they hold once, then drops the index.
func TestRelayDrainsDocumentsFromBeforeMarks(t *testing.T) {
	colls := newColls(t, 1)
	c := colls[0]
	ctx := testContext(t)
	if _, err := c.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "outbox_pending", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	old := newEntry(t, ctx, "evt.old", "old1")
	done := newEntry(t, ctx, "evt.old", "done1")
	for _, d := range []bson.D{
		{{Key: "_id", Value: "pending"}, {Key: "revision", Value: int64(1)}, {Key: "outbox", Value: []outbox.Entry{old}}, {Key: "outbox_pending", Value: true}},
		{{Key: "_id", Value: "cleared"}, {Key: "revision", Value: int64(2)}, {Key: "outbox", Value: []outbox.Entry{done}}, {Key: "outbox_pending", Value: false}},
	} {
		if _, err := c.InsertOne(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	pub := &fakePublisher{}
	runRelay(t, outbox.NewRelay(pub, logging.Discard(), colls))
	waitFor(t, "old1 published", func() bool { return slices.Contains(pub.published(), "old1") })
	waitFor(t, "the old index dropped", func() bool {
		specs, err := c.Indexes().ListSpecifications(ctx)
		return err == nil && !slices.ContainsFunc(specs, func(s mongo.IndexSpecification) bool { return s.Name == "outbox_pending_1" })
	})
	if got := pub.published(); !slices.Equal(got, []string{"old1"}) {
		t.Errorf("published %v, want [old1]: only the outbox not yet cleared", got)
	}
}

// TestRelayScanSkipsWhatJetStreamHolds: after a crash, the relay under the
// same name scans from its mark and finds entries it had published in the
// last moments before. JetStream would drop the repeats, but plain
// subscribers (live views) would see them: the relay does not send what
// JetStream holds as the last message on its subject.
func TestRelayScanSkipsWhatJetStreamHolds(t *testing.T) {
	colls := newColls(t, 1)
	c := colls[0]
	ctx := testContext(t)
	bus, _ := newBus(t)
	sent := newEntry(t, ctx, "evt.s.sent", "sent1")
	if _, err := bus.PublishRaw(ctx, sent.Subject, sent.ID, sent.Type, sent.Data); err != nil {
		t.Fatal(err)
	}
	unsent := newEntry(t, ctx, "evt.s.unsent", "unsent1")
	at := time.Now().UTC().Truncate(time.Millisecond)
	insertWith(t, c, "sent", at, sent)
	insertWith(t, c, "unsent", at, unsent)
	// The mark the crashed run left: before both writes.
	if _, err := marksOf(c).InsertOne(ctx, bson.D{{Key: "_id", Value: "x"}, {Key: "upto", Value: at.Add(-time.Second)}, {Key: "beat", Value: at}}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	sub, err := bus.Conn.Subscribe("evt.s.>", func(m *nats.Msg) {
		mu.Lock()
		seen = append(seen, m.Header.Get(jetstream.MsgIDHeader))
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := bus.Conn.Flush(); err != nil {
		t.Fatal(err)
	}

	relay := outbox.NewRelay(bus, logging.Discard(), colls, outbox.WithName("x"))
	runRelay(t, relay)
	waitFor(t, "unsent1 seen", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(seen, "unsent1")
	})
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(seen, []string{"unsent1"}) {
		t.Errorf("subscribers saw %v, want only [unsent1]: sent1 was in JetStream already", seen)
	}
}

// TestRelayRescansWhatTheLastRunLeft: a write the last run under a name
// sent just before it died can land in the store after the next run's
// first scan (a slow primary finishes what a dead client sent). Its stamp
// is at or after the last run's mark, so a second scan from that mark,
// once such a write cannot be on its way any more, publishes it; the mark
// stays there until then.
func TestRelayRescansWhatTheLastRunLeft(t *testing.T) {
	colls := newColls(t, 1)
	c := colls[0]
	ctx := testContext(t)
	upto := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	storeMark(t, c, markDoc{Name: "crashed", Upto: upto, Beat: upto})
	insertWith(t, c, "early", upto.Add(time.Millisecond), newEntry(t, ctx, "evt.e", "early1"))

	pub := &fakePublisher{}
	// The late write lands once the relay has started and made its first
	// scan, well within the grace however busy the machine.
	const grace = 4 * time.Second
	relay := outbox.NewRelay(pub, logging.Discard(), colls, outbox.WithName("crashed"), outbox.WithUnknownGrace(grace))
	started := time.Now()
	runRelay(t, relay)
	waitFor(t, "early1 published by the first scan", func() bool { return slices.Contains(pub.published(), "early1") })

	// The dead run's last write lands now, stamped before its mark moved.
	insertWith(t, c, "late", upto.Add(2*time.Millisecond), newEntry(t, ctx, "evt.l", "late1"))
	if m, ok := readMark(t, c, "crashed"); !ok || m.Upto.After(upto) {
		t.Errorf("mark %+v (stored %v) before the second scan, want it held at %v", m, ok, upto)
	}
	waitFor(t, "late1 published by the second scan", func() bool { return slices.Contains(pub.published(), "late1") })
	if took := time.Since(started); took < grace {
		t.Errorf("late1 published %v after the start, before the %v grace: not by the second scan?", took, grace)
	}
	if n := countOf(pub.published(), "early1"); n != 1 {
		t.Errorf("early1 published %d times, want once (JetStream already had it when the second scan ran)", n)
	}
	waitFor(t, "the mark to move past the last run's", func() bool {
		m, ok := readMark(t, c, "crashed")
		return ok && m.Upto.After(upto)
	})
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}
