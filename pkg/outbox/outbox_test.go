package outbox_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/pizzashop/pizzashop/pkg/mongox/mongoxtest"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/logging"
	"github.com/pizzashop/pizzashop/pkg/mongox"
	"github.com/pizzashop/pizzashop/pkg/natsx"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

var eventStream = jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"evt.>"}}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// useTracing installs an SDK tracer provider and the W3C propagator for the
// duration of t.
func useTracing(t *testing.T) {
	t.Helper()
	tp := sdktrace.NewTracerProvider()
	oldTP, oldProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() {
		otel.SetTracerProvider(oldTP)
		otel.SetTextMapPropagator(oldProp)
		_ = tp.Shutdown(context.Background())
	})
}

// newColls returns n collections in a fresh database of t's own.
func newColls(t *testing.T, n int) []*mongo.Collection {
	t.Helper()
	_, db := devstack.MongoDatabase(t)
	var out []*mongo.Collection
	for i := range n {
		out = append(out, db.Collection(fmt.Sprintf("docs%d", i)))
	}
	return out
}

// closedColl returns a collection of db reached through a client that is
// already disconnected: every operation on it fails at once.
func closedColl(t *testing.T, db *mongo.Database, name string) *mongo.Collection {
	t.Helper()
	c, err := mongox.Connect(devstack.Mongo(t), 4)
	if err != nil {
		t.Fatalf("mongox.Connect: %v", err)
	}
	if err := c.Disconnect(testContext(t)); err != nil {
		t.Fatalf("Disconnect: %v", err)
	}
	return c.Database(db.Name()).Collection(name)
}

// newBus connects to a NATS server of t's own with the event stream.
func newBus(t *testing.T) (*natsx.Bus, jetstream.Stream) {
	t.Helper()
	ctx := testContext(t)
	bus, err := natsx.Connect(devstack.NATS(t), t.Name(), logging.Discard())
	if err != nil {
		t.Fatalf("natsx.Connect: %v", err)
	}
	t.Cleanup(bus.Close)
	if err := bus.EnsureStream(ctx, eventStream); err != nil {
		t.Fatalf("EnsureStream: %v", err)
	}
	s, err := bus.JS.Stream(ctx, eventStream.Name)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	return bus, s
}

// published returns the event ids in the stream, in stream order.
func published(t *testing.T, s jetstream.Stream) []string {
	t.Helper()
	ctx := testContext(t)
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	var ids []string
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("GetMsg(%d): %v", seq, err)
		}
		ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
	}
	return ids
}

func newEntry(t *testing.T, ctx context.Context, subject, id string) outbox.Entry {
	t.Helper()
	e, err := outbox.NewEntry(ctx, subject, id, wrapperspb.String("payload of "+id))
	if err != nil {
		t.Fatalf("NewEntry(%s): %v", id, err)
	}
	return e
}

// insert stores a document at revision 0 with an empty outbox.
func insert(t *testing.T, c *mongo.Collection, id string) {
	t.Helper()
	if _, err := c.InsertOne(testContext(t), bson.D{{Key: "_id", Value: id}, {Key: outbox.FieldRevision, Value: int64(0)}}); err != nil {
		t.Fatalf("insert %s: %v", id, err)
	}
}

// insertWith stores a document as a writer that crashed, or another
// replica, would have left it: entries stamped at.
func insertWith(t *testing.T, c *mongo.Collection, id string, at time.Time, entries ...outbox.Entry) {
	t.Helper()
	if _, err := c.InsertOne(testContext(t), bson.D{{Key: "_id", Value: id}, {Key: outbox.FieldRevision, Value: int64(1)},
		{Key: outbox.FieldEntries, Value: entries}, {Key: outbox.FieldAt, Value: at}}); err != nil {
		t.Fatalf("insert %s: %v", id, err)
	}
}

// write reads document id and does outbox.Write with tr on it, bumping the
// revision; it fails the test unless the write matched.
func write(t *testing.T, c *mongo.Collection, tr outbox.Tracker, id string, set bson.D, events ...outbox.Entry) {
	t.Helper()
	writeFrom(t, c, c, tr, id, set, events...)
}

// writeFrom is write reading the document's state through from.
func writeFrom(t *testing.T, from, c *mongo.Collection, tr outbox.Tracker, id string, set bson.D, events ...outbox.Entry) {
	t.Helper()
	st := stateOf(t, from, id)
	set = append(set, bson.E{Key: outbox.FieldRevision, Value: st.Revision + 1})
	ok, err := outbox.Write(testContext(t), c, tr, id, st, set, events...)
	if err != nil || !ok {
		t.Fatalf("Write(%s, rev %d) = %v, %v; want true, nil", id, st.Revision, ok, err)
	}
}

// insertEvents does outbox.Insert with tr of a new document holding events.
func insertEvents(t *testing.T, c *mongo.Collection, tr outbox.Tracker, id string, events ...outbox.Entry) {
	t.Helper()
	err := outbox.Insert(testContext(t), c, tr, id, 1, events, func(at time.Time) any {
		return bson.D{{Key: "_id", Value: id}, {Key: outbox.FieldRevision, Value: int64(1)},
			{Key: outbox.FieldEntries, Value: events}, {Key: outbox.FieldAt, Value: at}}
	})
	if err != nil {
		t.Fatalf("Insert(%s): %v", id, err)
	}
}

type rawDoc struct {
	ID       string         `bson:"_id"`
	Revision int64          `bson:"revision"`
	Outbox   []outbox.Entry `bson:"outbox"`
	At       time.Time      `bson:"outbox_at"`
	N        int            `bson:"n"`
}

func read(t *testing.T, c *mongo.Collection, id string) (rawDoc, bson.M) {
	t.Helper()
	var m bson.M
	if err := c.FindOne(testContext(t), bson.D{{Key: "_id", Value: id}}).Decode(&m); err != nil {
		t.Fatalf("read %s: %v", id, err)
	}
	var d rawDoc
	raw, _ := bson.Marshal(m)
	if err := bson.Unmarshal(raw, &d); err != nil {
		t.Fatalf("decode %s: %v", id, err)
	}
	return d, m
}

// stateOf reads the outbox state of document id, as a store would.
func stateOf(t *testing.T, c *mongo.Collection, id string) outbox.State {
	t.Helper()
	d, _ := read(t, c, id)
	return outbox.State{Revision: d.Revision, Outbox: d.Outbox, At: d.At}
}

func ids(es []outbox.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

// stubTracker is a Tracker whose answers the test sets: the stamp Begin
// hands out (or its error) and what Acked says. It records what it is told.
type stubTracker struct {
	mu       sync.Mutex
	stamp    time.Time
	beginErr error
	acked    bool
	begins   int
	asked    []askedAcked
	done     []outbox.Written
}

type askedAcked struct {
	ids []string
	at  time.Time
}

func (s *stubTracker) Begin(context.Context) (time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.begins++
	return s.stamp, s.beginErr
}

func (s *stubTracker) Done(w outbox.Written) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = append(s.done, w)
}

func (s *stubTracker) Acked(_ context.Context, entries []outbox.Entry, at time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked = append(s.asked, askedAcked{ids(entries), at})
	return s.acked
}

// reset clears what s recorded and sets its answers.
func (s *stubTracker) reset(stamp time.Time, acked bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stamp, s.acked, s.beginErr = stamp, acked, nil
	s.begins, s.asked, s.done = 0, nil, nil
}

// checkDone fails unless tr was told exactly of one write, described by
// want (Coll compared by name).
func checkDone(t *testing.T, tr *stubTracker, want ...outbox.Written) {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.done) != len(want) {
		t.Errorf("Done called %d times, want %d", len(tr.done), len(want))
		return
	}
	for i, want := range want {
		checkWritten(t, tr.done[i], want)
	}
}

func checkWritten(t *testing.T, got, want outbox.Written) {
	t.Helper()
	if got.Outcome != want.Outcome || !got.At.Equal(want.At) || got.ID != want.ID || got.Revision != want.Revision ||
		!slices.Equal(ids(got.Entries), ids(want.Entries)) || got.Coll == nil || got.Coll.Name() != want.Coll.Name() {
		t.Errorf("Done(%s) got outcome %v at %v id %v revision %d entries %v;\nwant outcome %v at %v id %v revision %d entries %v",
			want.Coll.Name(), got.Outcome, got.At, got.ID, got.Revision, ids(got.Entries),
			want.Outcome, want.At, want.ID, want.Revision, ids(want.Entries))
	}
}

// fakePublisher records what it is asked to publish and fails while fail
// says so. It stands in for the bus where a test needs a publisher that
// breaks, or needs to count every publish, repeats included.
type fakePublisher struct {
	mu     sync.Mutex
	calls  map[string]int // publish attempts by event id
	ids    []string       // published successfully, in order
	traces []trace.TraceID
	fail   func(id string, call int) error // call counts every attempt
	n      int
}

func (p *fakePublisher) PublishRaw(ctx context.Context, subject, eventID, eventType string, data []byte) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	if p.calls == nil {
		p.calls = map[string]int{}
	}
	p.calls[eventID]++
	if p.fail != nil {
		if err := p.fail(eventID, p.n); err != nil {
			return false, err
		}
	}
	p.ids = append(p.ids, eventID)
	p.traces = append(p.traces, trace.SpanContextFromContext(ctx).TraceID())
	return false, nil
}

func (p *fakePublisher) published() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.ids)
}

func (p *fakePublisher) attempts(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[id]
}

func TestNewEntry(t *testing.T) {
	useTracing(t)
	ctx, span := otel.Tracer("test").Start(context.Background(), "create order")
	defer span.End()
	before := time.Now()

	tests := []struct {
		name      string
		ctx       context.Context
		wantTrace bool
	}{
		{"inside a span", ctx, true},
		{"without a span", context.Background(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := outbox.NewEntry(tt.ctx, "evt.order.created", "evt-1", wrapperspb.String("hi"))
			if err != nil {
				t.Fatalf("NewEntry() err = %v", err)
			}
			if e.ID != "evt-1" || e.Subject != "evt.order.created" || e.Type != "google.protobuf.StringValue" {
				t.Errorf("NewEntry() id, subject, type = %q, %q, %q; want evt-1, evt.order.created, google.protobuf.StringValue", e.ID, e.Subject, e.Type)
			}
			var got wrapperspb.StringValue
			if err := proto.Unmarshal(e.Data, &got); err != nil || got.GetValue() != "hi" {
				t.Errorf("NewEntry() data decodes to %q (%v), want hi", got.GetValue(), err)
			}
			if e.CreateTime.Location() != time.UTC || e.CreateTime.Before(before.Add(-time.Second)) || e.CreateTime.After(time.Now()) {
				t.Errorf("NewEntry() create time = %v, want now in UTC", e.CreateTime)
			}
			tp := e.Trace["traceparent"]
			hasTrace := strings.Contains(tp, span.SpanContext().TraceID().String())
			if hasTrace != tt.wantTrace || (!tt.wantTrace && tp != "") {
				t.Errorf("NewEntry() trace = %v, want the span's trace id %s: %v", e.Trace, span.SpanContext().TraceID(), tt.wantTrace)
			}
		})
	}

	if _, err := outbox.NewEntry(ctx, "evt.x", "evt-2", wrapperspb.String("\xff not utf-8")); err == nil {
		t.Error("NewEntry(message that does not encode) err = nil, want an error")
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := outbox.NewID()
		if b, err := hex.DecodeString(id); err != nil || len(b) != 16 {
			t.Fatalf("NewID() = %q, want 32 hex digits", id)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestWrite(t *testing.T) {
	ctx := testContext(t)
	c := newColls(t, 1)[0]
	insert(t, c, "d1")
	e := func(id string) outbox.Entry { return newEntry(t, ctx, "evt.a", id) }
	e1, e2, e3, e4 := e("e1"), e("e2"), e("e3"), e("e4")
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	tr := &stubTracker{}

	// The steps run in order on one document, each from what the one
	// before left.
	steps := []struct {
		name       string
		stale      bool // write with the revision before the document's
		n          int
		events     []outbox.Entry
		stamp      time.Time // what Begin hands out
		acked      bool      // what Acked answers
		wantOK     bool
		wantOutbox []string
		wantAt     time.Time
		wantAsked  *askedAcked     // nil: Acked is not asked
		wantDone   *outbox.Outcome // nil: Done is not called
		wantDoneIn []string        // the entries Done is told of
	}{
		{name: "first events are stored with the stamp", n: 1, events: []outbox.Entry{e1}, stamp: sec(0),
			wantOK: true, wantOutbox: []string{"e1"}, wantAt: sec(0), wantDone: ptr(outbox.Applied), wantDoneIn: []string{"e1"}},
		{name: "entries not known published are kept", n: 2, events: []outbox.Entry{e2}, stamp: sec(1),
			wantOK: true, wantOutbox: []string{"e1", "e2"}, wantAt: sec(1), wantAsked: &askedAcked{[]string{"e1"}, sec(0)},
			wantDone: ptr(outbox.Applied), wantDoneIn: []string{"e1", "e2"}},
		{name: "entries known published are dropped", n: 3, events: []outbox.Entry{e3}, stamp: sec(2), acked: true,
			wantOK: true, wantOutbox: []string{"e3"}, wantAt: sec(2), wantAsked: &askedAcked{[]string{"e1", "e2"}, sec(1)},
			wantDone: ptr(outbox.Applied), wantDoneIn: []string{"e3"}},
		// A writer whose clock is behind the one that left e3 must not move
		// outbox_at back over it: a relay scanning from e3's stamp would
		// miss the document.
		{name: "outbox_at does not move back over kept entries", n: 4, events: []outbox.Entry{e4}, stamp: sec(-60),
			wantOK: true, wantOutbox: []string{"e3", "e4"}, wantAt: sec(2), wantAsked: &askedAcked{[]string{"e3"}, sec(2)},
			wantDone: ptr(outbox.Applied), wantDoneIn: []string{"e3", "e4"}},
		{name: "a stale revision changes nothing", stale: true, n: 99, events: []outbox.Entry{e("lost")}, stamp: sec(3),
			wantOK: false, wantOutbox: []string{"e3", "e4"}, wantAt: sec(2), wantAsked: &askedAcked{[]string{"e3", "e4"}, sec(2)},
			wantDone: ptr(outbox.NotApplied), wantDoneIn: []string{"e3", "e4", "lost"}},
		{name: "a write without events leaves the outbox and tells no one", n: 6,
			wantOK: true, wantOutbox: []string{"e3", "e4"}, wantAt: sec(2)},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before, beforeM := read(t, c, "d1")
			state := outbox.State{Revision: before.Revision, Outbox: before.Outbox, At: before.At}
			if st.stale {
				state.Revision--
			}
			tr.reset(st.stamp, st.acked)
			set := bson.D{{Key: "n", Value: st.n}, {Key: outbox.FieldRevision, Value: state.Revision + 1}}
			ok, err := outbox.Write(ctx, c, tr, "d1", state, set, st.events...)
			if err != nil || ok != st.wantOK {
				t.Fatalf("Write() = %v, %v; want %v, nil", ok, err, st.wantOK)
			}
			d, afterM := read(t, c, "d1")
			wantRev, wantN := before.Revision+1, st.n
			if !st.wantOK {
				wantRev, wantN = before.Revision, before.N
				if !reflect.DeepEqual(beforeM, afterM) {
					t.Errorf("a write that did not match changed the document:\nbefore %v\nafter  %v", beforeM, afterM)
				}
			}
			if d.Revision != wantRev || d.N != wantN || !slices.Equal(ids(d.Outbox), st.wantOutbox) || !d.At.Equal(st.wantAt) {
				t.Errorf("after Write: revision %d n %d outbox %v outbox_at %v; want %d %d %v %v",
					d.Revision, d.N, ids(d.Outbox), d.At, wantRev, wantN, st.wantOutbox, st.wantAt)
			}
			wantBegins := 1
			if len(st.events) == 0 {
				wantBegins = 0
			}
			tr.mu.Lock()
			begins, asked := tr.begins, tr.asked
			tr.mu.Unlock()
			if begins != wantBegins {
				t.Errorf("Begin called %d times, want %d", begins, wantBegins)
			}
			switch {
			case st.wantAsked == nil && len(asked) != 0:
				t.Errorf("Acked asked %v, want not asked", asked)
			case st.wantAsked != nil && (len(asked) != 1 || !slices.Equal(asked[0].ids, st.wantAsked.ids) || !asked[0].at.Equal(st.wantAsked.at)):
				t.Errorf("Acked asked %v, want once about %v at %v", asked, st.wantAsked.ids, st.wantAsked.at)
			}
			if st.wantDone == nil {
				tr.mu.Lock()
				if len(tr.done) != 0 {
					t.Errorf("Done told of %v, want nothing", tr.done)
				}
				tr.mu.Unlock()
				return
			}
			checkDone(t, tr, outbox.Written{At: st.stamp, Coll: c, ID: "d1", Revision: state.Revision + 1,
				Entries: entriesNamed(st.wantDoneIn), Outcome: *st.wantDone})
		})
	}

	// The stored entry reads back as it was written.
	insert(t, c, "fresh")
	tr.reset(sec(0), false)
	write(t, c, tr, "fresh", nil, e1)
	d, _ := read(t, c, "fresh")
	if got := d.Outbox[0]; got.ID != e1.ID || got.Subject != e1.Subject || got.Type != e1.Type ||
		string(got.Data) != string(e1.Data) || !got.CreateTime.Equal(e1.CreateTime.Truncate(time.Millisecond)) ||
		!maps.Equal(got.Trace, e1.Trace) {
		t.Errorf("stored entry = %+v, want %+v", got, e1)
	}

	t.Run("missing document", func(t *testing.T) {
		tr.reset(sec(5), false)
		bump := bson.E{Key: outbox.FieldRevision, Value: int64(1)}
		if ok, err := outbox.Write(ctx, c, tr, "missing", outbox.State{}, bson.D{{Key: "n", Value: 1}, bump}, e1); ok || err != nil {
			t.Errorf("Write(missing document) = %v, %v; want false, nil", ok, err)
		}
		checkDone(t, tr, outbox.Written{At: sec(5), Coll: c, ID: "missing", Revision: 1, Entries: []outbox.Entry{e1}, Outcome: outbox.NotApplied})
	})

	// A write that does not move the revision could be mistaken for the one
	// before it; Write refuses it before it begins.
	t.Run("refuses a write that does not bump the revision", func(t *testing.T) {
		st := stateOf(t, c, "d1")
		for _, set := range []bson.D{
			{{Key: "n", Value: 1}},
			{{Key: outbox.FieldRevision, Value: st.Revision}},
			{{Key: outbox.FieldRevision, Value: st.Revision - 1}},
			{{Key: outbox.FieldRevision, Value: int(st.Revision + 1)}}, // not an int64
		} {
			for _, events := range [][]outbox.Entry{{e1}, nil} {
				_, before := read(t, c, "d1")
				tr.reset(sec(5), false)
				if ok, err := outbox.Write(ctx, c, tr, "d1", st, set, events...); ok || err == nil {
					t.Errorf("Write(%v, %d events) = %v, %v; want refused", set, len(events), ok, err)
				}
				if _, after := read(t, c, "d1"); !reflect.DeepEqual(before, after) {
					t.Errorf("refused Write(%v) changed the document", set)
				}
				tr.mu.Lock()
				if tr.begins != 0 || len(tr.done) != 0 {
					t.Errorf("refused Write(%v): Begin %d times, Done %d times; want neither", set, tr.begins, len(tr.done))
				}
				tr.mu.Unlock()
			}
		}
	})

	t.Run("Begin fails", func(t *testing.T) {
		st := stateOf(t, c, "d1")
		_, before := read(t, c, "d1")
		tr.reset(sec(5), false)
		tr.beginErr = errors.New("relay not ready")
		set := bson.D{{Key: "n", Value: 7}, {Key: outbox.FieldRevision, Value: st.Revision + 1}}
		if ok, err := outbox.Write(ctx, c, tr, "d1", st, set, e1); ok || err == nil || !strings.Contains(err.Error(), "relay not ready") {
			t.Errorf("Write() with a failing Begin = %v, %v; want false and Begin's error", ok, err)
		}
		if _, after := read(t, c, "d1"); !reflect.DeepEqual(before, after) {
			t.Error("Write() with a failing Begin changed the document")
		}
		if len(tr.done) != 0 {
			t.Errorf("Done told of %v, want nothing", tr.done)
		}
	})

	// The store's answer is lost: the write may or may not be stored, and
	// the tracker must read the document back.
	for _, tc := range []struct {
		name string
		ctx  func() context.Context
		c    *mongo.Collection
	}{
		{"cancelled context", func() context.Context {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			return cctx
		}, c},
		{"disconnected client", func() context.Context { return ctx }, closedColl(t, c.Database(), c.Name())},
	} {
		t.Run("outcome unknown: "+tc.name, func(t *testing.T) {
			st := stateOf(t, c, "d1")
			_, before := read(t, c, "d1")
			tr.reset(sec(9), false)
			set := bson.D{{Key: "n", Value: 8}, {Key: outbox.FieldRevision, Value: st.Revision + 1}}
			if ok, err := outbox.Write(tc.ctx(), tc.c, tr, "d1", st, set, e("u1")); ok || err == nil {
				t.Errorf("Write() = %v, %v; want false and an error", ok, err)
			}
			if _, after := read(t, c, "d1"); !reflect.DeepEqual(before, after) {
				t.Error("the failed Write changed the document")
			}
			checkDone(t, tr, outbox.Written{At: sec(9), Coll: c, ID: "d1", Revision: st.Revision + 1,
				Entries: entriesNamed(append(ids(st.Outbox), "u1")), Outcome: outbox.Unknown})
		})
	}
}

func ptr[T any](v T) *T { return &v }

// entriesNamed returns entries with the given ids, for comparing by id.
func entriesNamed(names []string) []outbox.Entry {
	var out []outbox.Entry
	for _, n := range names {
		out = append(out, outbox.Entry{ID: n})
	}
	return out
}

func TestInsert(t *testing.T) {
	ctx := testContext(t)
	c := newColls(t, 1)[0]
	e1, e2 := newEntry(t, ctx, "evt.a", "e1"), newEntry(t, ctx, "evt.a", "e2")
	stamp := time.Now().UTC().Truncate(time.Millisecond)
	tr := &stubTracker{}
	var gotAt []time.Time
	doc := func(id string, events []outbox.Entry) func(time.Time) any {
		return func(at time.Time) any {
			gotAt = append(gotAt, at)
			return bson.D{{Key: "_id", Value: id}, {Key: outbox.FieldRevision, Value: int64(1)}, {Key: "n", Value: 1},
				{Key: outbox.FieldEntries, Value: events}, {Key: outbox.FieldAt, Value: at}}
		}
	}

	t.Run("with events", func(t *testing.T) {
		tr.reset(stamp, false)
		gotAt = nil
		events := []outbox.Entry{e1, e2}
		if err := outbox.Insert(ctx, c, tr, "a", 1, events, doc("a", events)); err != nil {
			t.Fatalf("Insert() = %v", err)
		}
		if len(gotAt) != 1 || !gotAt[0].Equal(stamp) {
			t.Errorf("doc built with stamps %v, want [%v]", gotAt, stamp)
		}
		d, _ := read(t, c, "a")
		if !slices.Equal(ids(d.Outbox), []string{"e1", "e2"}) || !d.At.Equal(stamp) || d.N != 1 {
			t.Errorf("stored outbox %v at %v n %d; want [e1 e2] at %v n 1", ids(d.Outbox), d.At, d.N, stamp)
		}
		checkDone(t, tr, outbox.Written{At: stamp, Coll: c, ID: "a", Revision: 1, Entries: events, Outcome: outbox.Applied})
	})

	t.Run("duplicate", func(t *testing.T) {
		_, before := read(t, c, "a")
		tr.reset(stamp.Add(time.Second), false)
		events := []outbox.Entry{newEntry(t, ctx, "evt.a", "again")}
		err := outbox.Insert(ctx, c, tr, "a", 1, events, doc("a", events))
		if !mongox.IsDuplicate(err) {
			t.Errorf("Insert(existing id) = %v, want a duplicate key error", err)
		}
		if _, after := read(t, c, "a"); !reflect.DeepEqual(before, after) {
			t.Error("a duplicate Insert changed the document")
		}
		// The document there may be this write's twin whose answer was
		// lost: its entries are asked for at once, with no stamp.
		checkDone(t, tr, outbox.Written{At: stamp.Add(time.Second), Coll: c, ID: "a", Revision: 1, Entries: events, Outcome: outbox.NotApplied},
			outbox.Written{Coll: c, ID: "a", Outcome: outbox.Unknown})
	})

	t.Run("without events", func(t *testing.T) {
		tr.reset(stamp, false)
		gotAt = nil
		if err := outbox.Insert(ctx, c, tr, "quiet", 1, nil, doc("quiet", nil)); err != nil {
			t.Fatalf("Insert() = %v", err)
		}
		if len(gotAt) != 1 || !gotAt[0].IsZero() {
			t.Errorf("doc built with stamps %v, want the zero time", gotAt)
		}
		if tr.begins != 0 || len(tr.done) != 0 {
			t.Errorf("Insert without events: Begin %d times, Done %v; want neither", tr.begins, tr.done)
		}
		if d, _ := read(t, c, "quiet"); len(d.Outbox) != 0 {
			t.Errorf("outbox %v, want empty", ids(d.Outbox))
		}
	})

	t.Run("Begin fails", func(t *testing.T) {
		tr.reset(stamp, false)
		tr.beginErr = errors.New("relay not ready")
		events := []outbox.Entry{e1}
		if err := outbox.Insert(ctx, c, tr, "never", 1, events, doc("never", events)); err == nil || !strings.Contains(err.Error(), "relay not ready") {
			t.Errorf("Insert() with a failing Begin = %v, want Begin's error", err)
		}
		if n, err := c.CountDocuments(ctx, bson.D{{Key: "_id", Value: "never"}}); n != 0 || err != nil {
			t.Errorf("documents stored after a failed Begin: %d, %v; want 0", n, err)
		}
		if len(tr.done) != 0 {
			t.Errorf("Done told of %v, want nothing", tr.done)
		}
	})

	t.Run("outcome unknown", func(t *testing.T) {
		tr.reset(stamp, false)
		events := []outbox.Entry{e1}
		cc := closedColl(t, c.Database(), c.Name())
		if err := outbox.Insert(ctx, cc, tr, "b", 1, events, doc("b", events)); err == nil || mongox.IsDuplicate(err) {
			t.Errorf("Insert() on a disconnected client = %v, want an error", err)
		}
		checkDone(t, tr, outbox.Written{At: stamp, Coll: c, ID: "b", Revision: 1, Entries: events, Outcome: outbox.Unknown})
	})
}

// counter is a document as a store reads it for Update.
type counter struct {
	ID           string `bson:"_id"`
	N            int    `bson:"n"`
	outbox.State `bson:",inline"`
}

func readCounter(c *mongo.Collection, id string) func(context.Context) (counter, outbox.State, error) {
	return func(ctx context.Context) (counter, outbox.State, error) {
		var v counter
		err := c.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&v)
		return v, v.State, err
	}
}

func counterFields(v counter) bson.D {
	return bson.D{{Key: "n", Value: v.N}, {Key: outbox.FieldRevision, Value: v.Revision + 1}}
}

func TestUpdate(t *testing.T) {
	ctx := testContext(t)
	c := newColls(t, 1)[0]
	insert(t, c, "a")
	stamp := time.Now().UTC().Truncate(time.Millisecond)
	tr := &stubTracker{}
	outcomes := func() []outbox.Outcome {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		var out []outbox.Outcome
		for _, w := range tr.done {
			out = append(out, w.Outcome)
		}
		return out
	}

	t.Run("applies and writes", func(t *testing.T) {
		tr.reset(stamp, false)
		v, ok, err := outbox.Update(ctx, c, "a", readCounter(c, "a"), func(v *counter) (bool, []outbox.Entry, error) {
			v.N++
			return true, []outbox.Entry{newEntry(t, ctx, "evt.a", "u1")}, nil
		}, counterFields, tr)
		if err != nil || !ok || v.N != 1 {
			t.Fatalf("Update() = n %d, %v, %v; want 1, true, nil", v.N, ok, err)
		}
		d, _ := read(t, c, "a")
		if d.N != 1 || d.Revision != 1 || !slices.Equal(ids(d.Outbox), []string{"u1"}) || !d.At.Equal(stamp) {
			t.Errorf("document n %d revision %d outbox %v at %v; want 1, 1, [u1], %v", d.N, d.Revision, ids(d.Outbox), d.At, stamp)
		}
		if got := outcomes(); !slices.Equal(got, []outbox.Outcome{outbox.Applied}) {
			t.Errorf("Done outcomes %v, want [Applied]", got)
		}
	})

	// Another writer changes the document between Update's read and its
	// write: the write fails its guard and Update starts over from a fresh
	// read, so neither change is lost.
	t.Run("retries on conflict", func(t *testing.T) {
		tr.reset(stamp, false)
		applies := 0
		v, ok, err := outbox.Update(ctx, c, "a", readCounter(c, "a"), func(v *counter) (bool, []outbox.Entry, error) {
			applies++
			if applies == 1 {
				if _, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: "a"}},
					bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 10}, {Key: outbox.FieldRevision, Value: int64(1)}}}}); err != nil {
					t.Errorf("concurrent write: %v", err)
				}
			}
			v.N++
			return true, []outbox.Entry{newEntry(t, ctx, "evt.a", fmt.Sprintf("u2-%d", applies))}, nil
		}, counterFields, tr)
		if err != nil || !ok || applies != 2 || v.N != 12 {
			t.Fatalf("Update() = n %d, %v, %v after %d applies; want 12, true, nil after 2", v.N, ok, err, applies)
		}
		d, _ := read(t, c, "a")
		if d.N != 12 || d.Revision != 3 || !slices.Equal(ids(d.Outbox), []string{"u1", "u2-2"}) {
			t.Errorf("document n %d revision %d outbox %v; want 12, 3, [u1 u2-2]", d.N, d.Revision, ids(d.Outbox))
		}
		if got := outcomes(); !slices.Equal(got, []outbox.Outcome{outbox.NotApplied, outbox.Applied}) {
			t.Errorf("Done outcomes %v, want [NotApplied Applied]", got)
		}
	})

	t.Run("gives up after repeated conflicts", func(t *testing.T) {
		tr.reset(stamp, false)
		_, before := read(t, c, "a")
		reads := 0
		stale := func(ctx context.Context) (counter, outbox.State, error) {
			reads++
			v, st, err := readCounter(c, "a")(ctx)
			v.Revision-- // always one behind: every write fails its guard
			st.Revision--
			return v, st, err
		}
		_, ok, err := outbox.Update(ctx, c, "a", stale, func(v *counter) (bool, []outbox.Entry, error) {
			v.N++
			return true, []outbox.Entry{newEntry(t, ctx, "evt.a", "never")}, nil
		}, counterFields, tr)
		if ok || !errors.Is(err, outbox.ErrConflict) || reads != 10 {
			t.Errorf("Update() = %v, %v after %d reads; want false, ErrConflict after 10", ok, err, reads)
		}
		if _, after := read(t, c, "a"); !reflect.DeepEqual(before, after) {
			t.Error("a conflicting Update changed the document")
		}
		got := outcomes()
		if len(got) != 10 || slices.ContainsFunc(got, func(o outbox.Outcome) bool { return o != outbox.NotApplied }) {
			t.Errorf("Done outcomes %v, want 10 NotApplied", got)
		}
	})

	for _, tc := range []struct {
		name    string
		apply   func(*counter) (bool, []outbox.Entry, error)
		wantErr string
	}{
		{"apply fails", func(v *counter) (bool, []outbox.Entry, error) {
			v.N = 100
			return true, []outbox.Entry{newEntry(t, ctx, "evt.a", "x")}, errors.New("not allowed")
		}, "not allowed"},
		{"no change", func(v *counter) (bool, []outbox.Entry, error) {
			v.N = 100
			return false, []outbox.Entry{newEntry(t, ctx, "evt.a", "x")}, nil
		}, ""},
	} {
		t.Run(tc.name+" writes nothing", func(t *testing.T) {
			tr.reset(stamp, false)
			_, before := read(t, c, "a")
			_, ok, err := outbox.Update(ctx, c, "a", readCounter(c, "a"), tc.apply, counterFields, tr)
			if ok || (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Update() = %v, %v; want false, %q", ok, err, tc.wantErr)
			}
			if _, after := read(t, c, "a"); !reflect.DeepEqual(before, after) {
				t.Error("the Update changed the document")
			}
			if tr.begins != 0 || len(tr.done) != 0 {
				t.Errorf("Begin %d times, Done %d times; want neither", tr.begins, len(tr.done))
			}
		})
	}

	t.Run("read fails", func(t *testing.T) {
		tr.reset(stamp, false)
		_, ok, err := outbox.Update(ctx, c, "missing", readCounter(c, "missing"), func(v *counter) (bool, []outbox.Entry, error) {
			t.Error("apply called after a failed read")
			return true, nil, nil
		}, counterFields, tr)
		if ok || !errors.Is(err, mongo.ErrNoDocuments) {
			t.Errorf("Update(missing) = %v, %v; want false, ErrNoDocuments", ok, err)
		}
	})

	t.Run("store unavailable", func(t *testing.T) {
		tr.reset(stamp, false)
		cc := closedColl(t, c.Database(), c.Name())
		_, ok, err := outbox.Update(ctx, cc, "a", readCounter(c, "a"), func(v *counter) (bool, []outbox.Entry, error) {
			v.N++
			return true, []outbox.Entry{newEntry(t, ctx, "evt.a", "x")}, nil
		}, counterFields, tr)
		if ok || !errors.Is(err, mongox.ErrUnavailable) {
			t.Errorf("Update() on a disconnected client = %v, %v; want false, ErrUnavailable", ok, err)
		}
		if got := outcomes(); !slices.Equal(got, []outbox.Outcome{outbox.Unknown}) {
			t.Errorf("Done outcomes %v, want [Unknown]", got)
		}
	})
}

func TestOnWritten(t *testing.T) {
	c := newColls(t, 1)[0]
	var got []string
	tr := outbox.OnWritten(func(c *mongo.Collection, id any, rev int64, entries []outbox.Entry) {
		got = append(got, fmt.Sprintf("%s/%v@%d:%v", c.Name(), id, rev, ids(entries)))
	})
	before := time.Now().UTC()
	at, err := tr.Begin(context.Background())
	if err != nil || at.Location() != time.UTC || at.Before(before.Truncate(time.Millisecond)) || at.After(time.Now()) || !at.Equal(at.Truncate(time.Millisecond)) {
		t.Errorf("Begin() = %v, %v; want now, in UTC, to the millisecond", at, err)
	}
	es := entriesNamed([]string{"e1"})
	for _, o := range []outbox.Outcome{outbox.Applied, outbox.NotApplied, outbox.Unknown} {
		tr.Done(outbox.Written{At: at, Coll: c, ID: "a", Revision: int64(o) + 1, Entries: es, Outcome: o})
	}
	tr.Done(outbox.Written{At: at, Coll: c, ID: "b", Revision: 1, Outcome: outbox.Applied}) // no entries
	if want := []string{c.Name() + "/a@1:[e1]"}; !slices.Equal(got, want) {
		t.Errorf("OnWritten called with %v, want %v", got, want)
	}
	if tr.Acked(context.Background(), es, time.Time{}) {
		t.Error("Acked() = true, want false")
	}
	var none outbox.OnWritten
	none.Done(outbox.Written{Coll: c, ID: "a", Entries: es}) // must not panic
	if _, err := none.Begin(context.Background()); err != nil {
		t.Errorf("nil OnWritten Begin() = %v", err)
	}
}

// A copy made stale by another replica, sent in a group where another
// update matched, is read again and retried, as it is when sent alone: the
// group cannot tell it from an update overtaken after it landed, but a fresh
// read settles it either way.
func TestUpdateRecentRetriesAStaleCopyInAGroup(t *testing.T) {
	ctx := testContext(t)
	stall, db := mongoxtest.StalledDatabase(t, 8)
	c := db.Collection("stale")
	for _, id := range []string{"a", "b", "z"} {
		if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "n", Value: 0}, {Key: outbox.FieldRevision, Value: int64(1)}}); err != nil {
			t.Fatal(err)
		}
	}
	// Another replica moved a on twice since this store wrote it.
	if _, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 10}, {Key: outbox.FieldRevision, Value: int64(3)}}}}); err != nil {
		t.Fatal(err)
	}
	recent := outbox.NewRecent(16, func(v counter) counter { return v })
	for _, id := range []string{"a", "b"} {
		st := outbox.State{Revision: 1}
		recent.Put(id, counter{ID: id, State: st}, st)
	}
	up := mongox.NewUpdater(c, 32, outbox.FieldRevision)
	inc := func(v *counter) (bool, []outbox.Entry, error) {
		v.N++
		return true, nil, nil
	}

	// A write to z holds the updater while a and b queue: they go together.
	stall.Stall()
	first := make(chan error, 1)
	go func() {
		_, err := up.UpdateOne(ctx, "z", 1, bson.D{{Key: "n", Value: 1}, {Key: outbox.FieldRevision, Value: int64(2)}})
		first <- err
	}()
	time.Sleep(100 * time.Millisecond)
	type result struct {
		v   counter
		ok  bool
		err error
	}
	results := map[string]chan result{"a": make(chan result, 1), "b": make(chan result, 1)}
	for id, ch := range results {
		go func() {
			v, ok, err := outbox.UpdateRecent(ctx, up, id, recent, readCounter(c, id), inc, counterFields, outbox.OnWritten(nil))
			ch <- result{v, ok, err}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	stall.Resume()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]counter{"a": {N: 11, State: outbox.State{Revision: 4}}, "b": {N: 1, State: outbox.State{Revision: 2}}} {
		r := <-results[id]
		if r.err != nil || !r.ok {
			t.Errorf("UpdateRecent(%s) = %v, %v; want it made", id, r.ok, r.err)
		}
		got, _, err := readCounter(c, id)(ctx)
		if err != nil || got.N != want.N || got.Revision != want.Revision {
			t.Errorf("%s = n %d at revision %d, %v; want n %d at %d", id, got.N, got.Revision, err, want.N, want.Revision)
		}
	}
}
