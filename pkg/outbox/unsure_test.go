package outbox_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/logging"
	"github.com/pizzashop/pizzashop/pkg/mongox"
	"github.com/pizzashop/pizzashop/pkg/mongox/mongoxtest"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// stalledColls returns n collections in a fresh database, twice: through a
// client that reaches the store through stall, and through one for the
// test's own reads and writes.
func stalledColls(t *testing.T, n int) (stalled, plain []*mongo.Collection, stall *mongoxtest.Stall) {
	t.Helper()
	plain = newColls(t, n)
	stall, uri := mongoxtest.StallIn(t, devstack.Mongo(t))
	c, err := mongox.Connect(uri, 16)
	if err != nil {
		t.Fatalf("mongox.Connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	for _, p := range plain {
		stalled = append(stalled, c.Database(p.Database().Name()).Collection(p.Name()))
	}
	return stalled, plain, stall
}

// unknownWrites is a relay as the writers' Tracker that keeps every write
// of unknown outcome it is told of.
type unknownWrites struct {
	*outbox.Relay
	mu     sync.Mutex
	writes []outbox.Written
}

func (u *unknownWrites) Done(w outbox.Written) {
	if w.Outcome == outbox.Unknown {
		u.mu.Lock()
		u.writes = append(u.writes, w)
		u.mu.Unlock()
	}
	u.Relay.Done(w)
}

// told is how many writes of unknown outcome u was told of.
func (u *unknownWrites) told() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.writes)
}

// waitReady returns once relay lets writes begin, its mark stored. A write
// that cannot begin fails before it reaches the store, and the relay is
// never told of it: stalling the store before then would leave a test of
// writes of unknown outcome with none.
func waitReady(t *testing.T, relay *outbox.Relay) {
	t.Helper()
	at, err := relay.Begin(testContext(t))
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	relay.Done(outbox.Written{At: at, Outcome: outbox.NotApplied})
}

// land makes every write of unknown outcome that the store did not get
// (the driver gave up before it sent it) land, as a write still on its way
// would: what the write would have set, guarded by the revision it read,
// so a write that landed by itself is not made twice.
func (u *unknownWrites) land(t *testing.T, c *mongo.Collection) {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, w := range u.writes {
		_, err := c.UpdateOne(testContext(t), bson.D{{Key: "_id", Value: w.ID}, {Key: outbox.FieldRevision, Value: w.Revision - 1}},
			bson.D{{Key: "$set", Value: bson.D{{Key: outbox.FieldRevision, Value: w.Revision},
				{Key: outbox.FieldEntries, Value: w.Entries}, {Key: outbox.FieldAt, Value: w.At}}}})
		if err != nil {
			t.Fatalf("land the write of %v: %v", w.ID, err)
		}
	}
}

// writeTimingOut does outbox.Write of event on document id from st, giving
// up after a short while: the store hangs, so the write's outcome is
// unknown (it is held on its way and lands once the store answers), and tr
// must be told so.
func writeTimingOut(t *testing.T, c *mongo.Collection, tr *unknownWrites, id string, st outbox.State, event outbox.Entry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(testContext(t), 100*time.Millisecond)
	defer cancel()
	set := bson.D{{Key: outbox.FieldRevision, Value: st.Revision + 1}}
	before := tr.told()
	ok, err := outbox.Write(ctx, c, tr, id, st, set, event)
	if err == nil {
		t.Fatalf("Write(%s) while the store hangs = %v, nil; want an error", id, ok)
	}
	if n := tr.told() - before; n != 1 {
		t.Fatalf("Write(%s) while the store hangs = %v, and told the relay of %d writes of unknown outcome, want 1", id, err, n)
	}
}

// TestRelayUnknownWritesOfOneDocument: while the store hangs, callers retry
// one change of a document again and again, and every attempt times out;
// one lands once the store answers. The relay keeps one record of the
// document, not one per attempt; it reads it back only once the latest
// attempt cannot be on its way any more, and publishes the attempt that
// landed.
func TestRelayUnknownWritesOfOneDocument(t *testing.T) {
	colls, plain, stall := stalledColls(t, 1)
	c, p := colls[0], plain[0]
	ctx := testContext(t)
	bus, stream := newBus(t)
	// Longer than the store hangs: what is held on its way lands within it.
	const grace = 6 * time.Second
	relay := outbox.NewRelay(bus, logging.Discard(), colls, outbox.WithUnknownGrace(grace))
	stop := runRelay(t, relay)
	tr := &unknownWrites{Relay: relay}
	insertEvents(t, c, relay, "d", newEntry(t, ctx, "evt.d", "d0"))
	waitFor(t, "d0 in the stream", func() bool { return slices.Equal(published(t, stream), []string{"d0"}) })
	// JetStream holds d0 a moment before the relay has its answer; until
	// then the attempts below keep d0 in the outbox, as unknown.
	waitFor(t, "the relay to know d0 published", func() bool { return relay.Published() == 1 })

	st := stateOf(t, p, "d")
	stall.Stall()
	const attempts = 30
	var lastBegan time.Time
	for i := range attempts {
		lastBegan = time.Now()
		writeTimingOut(t, c, tr, "d", st, newEntry(t, ctx, "evt.d", fmt.Sprintf("d%d", i+1)))
	}
	if n := relay.Unsure(); n != 1 {
		t.Errorf("after %d writes of unknown outcome to one document the relay holds %d records, want 1", attempts, n)
	}
	if n := relay.Pending(); n != 1 {
		t.Errorf("Pending() = %d after %d writes of unknown outcome to one document, want 1", n, attempts)
	}
	stall.Resume()
	tr.land(t, p)

	// Read back at the grace of an earlier attempt (3 s earlier), the
	// document could miss a later one still on its way.
	for time.Since(lastBegan) < grace-300*time.Millisecond {
		if got := published(t, stream); len(got) != 1 {
			t.Fatalf("stream holds %v %v after the latest attempt began, want only [d0] until its grace has passed",
				got, time.Since(lastBegan).Round(time.Millisecond))
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitFor(t, "the document read back", func() bool { return relay.Unsure() == 0 })
	d, _ := read(t, p, "d")
	if d.Revision != st.Revision+1 || len(d.Outbox) != 1 {
		t.Fatalf("document after the store came back: revision %d, outbox %v; want one attempt landed, at revision %d", d.Revision, ids(d.Outbox), st.Revision+1)
	}
	want := []string{"d0", d.Outbox[0].ID}
	waitFor(t, "the attempt that landed in the stream", func() bool { return len(published(t, stream)) >= len(want) })
	time.Sleep(200 * time.Millisecond)
	checkOnce(t, published(t, stream), want)

	// Every attempt's hold on the mark is released, once.
	waitFor(t, "nothing pending", func() bool { return relay.Pending() == 0 })
	stopClean(t, p, relay, stop)
	checkMarkGone(t, p, relay.Name())
}

// TestRelayUnknownWritesPastTheBound: while the store hangs, writes of
// unknown outcome go to more documents than the relay may hold for a read
// back. It forgets them past the bound and scans the documents written
// since the earliest once the store answers: every event still reaches
// JetStream, once.
func TestRelayUnknownWritesPastTheBound(t *testing.T) {
	colls, plain, stall := stalledColls(t, 1)
	c, p := colls[0], plain[0]
	ctx := testContext(t)
	bus, stream := newBus(t)
	const bound, docs = 4, 14 // collapsed twice, and four left to read back
	relay := outbox.NewRelay(bus, logging.Discard(), colls, outbox.WithUnknownGrace(4*time.Second), outbox.WithMaxUnsure(bound))
	stop := runRelay(t, relay)
	tr := &unknownWrites{Relay: relay}
	var want []string
	for i := range docs {
		insert(t, p, fmt.Sprintf("d%02d", i))
		want = append(want, fmt.Sprintf("e%02d", i))
	}

	// The relay stores its mark through the store that is about to hang,
	// and on a busy machine may not have yet.
	waitReady(t, relay)
	stall.Stall()
	for i := range docs {
		writeTimingOut(t, c, tr, fmt.Sprintf("d%02d", i), outbox.State{}, newEntry(t, ctx, "evt.d", want[i]))
		if n := relay.Unsure(); n > bound {
			t.Fatalf("after %d writes of unknown outcome to as many documents the relay holds %d records, want at most %d", i+1, n, bound)
		}
	}
	stall.Resume()
	tr.land(t, p)

	waitFor(t, "every event in the stream", func() bool { return len(published(t, stream)) >= len(want) })
	time.Sleep(200 * time.Millisecond)
	checkOnce(t, published(t, stream), want)
	for i := range docs {
		if d, _ := read(t, p, fmt.Sprintf("d%02d", i)); !slices.Equal(ids(d.Outbox), want[i:i+1]) {
			t.Errorf("d%02d holds %v, want [%s]: the write landed once the store answered", i, ids(d.Outbox), want[i])
		}
	}
	waitFor(t, "nothing pending", func() bool { return relay.Pending() == 0 && relay.Unsure() == 0 })
	stopClean(t, p, relay, stop)
	checkMarkGone(t, p, relay.Name())
}

// TestRelayUnknownWriteLandsLatePastTheBound is TestRelayUnknownWriteLandsLate
// past the bound: the scan that stands for the read backs the relay forgot
// waits as they would, until no write of theirs can be on its way, and
// the mark stays at the earliest of them meanwhile.
func TestRelayUnknownWriteLandsLatePastTheBound(t *testing.T) {
	colls := newColls(t, 1)
	c := colls[0]
	ctx := testContext(t)
	pub := &fakePublisher{}
	// The writes land a while after they began, past a store of the mark,
	// and well within the grace however busy the machine.
	const grace, landAfter = 4 * time.Second, 1500 * time.Millisecond
	relay := outbox.NewRelay(pub, logging.Discard(), colls, outbox.WithUnknownGrace(grace), outbox.WithMaxUnsure(1))
	stop := runRelay(t, relay)

	var ws []outbox.Written
	for _, id := range []string{"a", "b"} {
		ws = append(ws, answerLost(t, ctx, relay, c, id, false, newEntry(t, ctx, "evt."+id, id+"1")))
	}
	if n := relay.Unsure(); n != 0 {
		t.Errorf("the relay holds %d records past a bound of 1, want 0: both documents are left to a scan", n)
	}
	time.Sleep(landAfter) // the relay stores its mark meanwhile, if it moved
	if m, ok := readMark(t, c, relay.Name()); !ok || m.Upto.After(ws[0].At) {
		t.Errorf("mark %+v (stored: %v) while the writes may land, want at or before the earliest, %v", m, ok, ws[0].At)
	}
	for _, w := range ws { // they were on their way
		insertWith(t, c, w.ID.(string), w.At, w.Entries...)
	}
	waitFor(t, "a1 and b1 published", func() bool { return len(pub.published()) >= 2 })
	checkOnce(t, pub.published(), []string{"a1", "b1"})
	waitFor(t, "nothing pending", func() bool { return relay.Pending() == 0 })
	stopClean(t, c, relay, stop)
	checkMarkGone(t, c, relay.Name())
}

// TestRelayRetriedInsertReadAtOnce: an insert whose answer was lost is
// retried through the same relay and finds its first attempt's document
// stored. The retry asks for the document to be read at once (see
// InsertWith): its entries are published then, not only once the first
// attempt's grace has passed, and that attempt's hold on the mark is
// released once its own read back is done.
func TestRelayRetriedInsertReadAtOnce(t *testing.T) {
	colls := newColls(t, 1)
	c := colls[0]
	ctx := testContext(t)
	pub := &fakePublisher{}
	const grace = 4 * time.Second
	relay := outbox.NewRelay(pub, logging.Discard(), colls, outbox.WithUnknownGrace(grace))
	stop := runRelay(t, relay)

	// The first attempt was stored, its answer lost.
	u1 := newEntry(t, ctx, "evt.u", "u1")
	answerLost(t, ctx, relay, c, "u", true, u1)

	// The caller tries again and finds the document there.
	retried := time.Now()
	err := outbox.Insert(ctx, c, relay, "u", 1, []outbox.Entry{u1}, func(at time.Time) any {
		return bson.D{{Key: "_id", Value: "u"}, {Key: outbox.FieldRevision, Value: int64(1)},
			{Key: outbox.FieldEntries, Value: []outbox.Entry{u1}}, {Key: outbox.FieldAt, Value: at}}
	})
	if !mongox.IsDuplicate(err) {
		t.Fatalf("Insert(existing id) = %v, want a duplicate key error", err)
	}
	waitFor(t, "u1 published", func() bool { return len(pub.published()) >= 1 })
	if took := time.Since(retried); took > grace/2 {
		t.Errorf("u1 published %v after the retry found the document, want at once, well within the %v grace", took.Round(time.Millisecond), grace)
	}
	// The first attempt still holds the mark until its own read back.
	if n := relay.Pending(); n != 1 {
		t.Errorf("Pending() = %d right after the early read, want 1: the first attempt's read back is still due", n)
	}
	waitFor(t, "nothing pending", func() bool { return relay.Pending() == 0 && relay.Unsure() == 0 })
	checkOnce(t, pub.published(), []string{"u1"})
	stopClean(t, c, relay, stop)
	checkMarkGone(t, c, relay.Name())
}

// TestRelayReadsBackTogether: after a store outage the relay holds many
// documents whose writes' outcome it does not know, and its publishing
// waits while it reads them back. They are read a batch at a time, not one
// query each, and every event they hold is published once.
func TestRelayReadsBackTogether(t *testing.T) {
	counted, colls, cmds := monitoredColls(t, 1)
	c := colls[0]
	ctx := testContext(t)
	pub := &fakePublisher{}
	const grace = time.Second
	relay := outbox.NewRelay(pub, logging.Discard(), counted, outbox.WithUnknownGrace(grace))
	runRelay(t, relay)
	time.Sleep(200 * time.Millisecond) // past the start's reads

	// The writes that landed are stored first (a read back looks at their
	// outbox, not their stamp), and the relay is then told of all of them
	// at once, so they fall due together: told one insert apart, on a busy
	// machine the first were due before the last were told, and were read
	// in a batch of their own.
	const n = 40
	var want []string
	events := make([]outbox.Entry, n)
	landedAt := time.Now().UTC().Truncate(time.Millisecond)
	for i := range n {
		id := fmt.Sprintf("d%02d", i)
		events[i] = newEntry(t, ctx, "evt."+id, id+"-1")
		if i%4 != 0 { // the others never landed
			insertWith(t, c, id, landedAt, events[i])
			want = append(want, events[i].ID)
		}
	}
	before := cmds.snapshot()[[2]string{"find", c.Name()}]
	for i := range n {
		at, err := relay.Begin(ctx)
		if err != nil {
			t.Fatalf("Begin: %v", err)
		}
		relay.Done(outbox.Written{At: at, Coll: counted[0], ID: fmt.Sprintf("d%02d", i), Revision: 1,
			Entries: events[i : i+1], Outcome: outbox.Unknown})
	}
	waitFor(t, "every landed write's event published", func() bool { return len(pub.published()) >= len(want) })
	waitFor(t, "nothing pending", func() bool { return relay.Pending() == 0 })
	checkOnce(t, pub.published(), want)
	finds := cmds.snapshot()[[2]string{"find", c.Name()}] - before
	// One query for the batch, and one each for the n/4 documents it
	// did not find, to make sure they are missing.
	if finds > 1+n/4 {
		t.Errorf("%d documents read back with %d finds, want at most %d: one for all, one for each missing", n, finds, 1+n/4)
	}
}
