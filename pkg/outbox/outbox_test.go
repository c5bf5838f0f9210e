package outbox_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/logging"
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

func insert(t *testing.T, c *mongo.Collection, id string) {
	t.Helper()
	if _, err := c.InsertOne(testContext(t), bson.D{{Key: "_id", Value: id}, {Key: outbox.FieldRevision, Value: int64(0)}}); err != nil {
		t.Fatalf("insert %s: %v", id, err)
	}
}

// write does outbox.Write and fails the test unless it matched.
func write(t *testing.T, c *mongo.Collection, id string, rev int64, set bson.D, events ...outbox.Entry) {
	t.Helper()
	set = append(set, bson.E{Key: outbox.FieldRevision, Value: rev + 1})
	ok, err := outbox.Write(testContext(t), c, id, rev, set, events...)
	if err != nil || !ok {
		t.Fatalf("Write(%s, rev %d) = %v, %v; want true, nil", id, rev, ok, err)
	}
}

type rawDoc struct {
	ID       string         `bson:"_id"`
	Revision int64          `bson:"revision"`
	Outbox   []outbox.Entry `bson:"outbox"`
	Pending  bool           `bson:"outbox_pending"`
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

func ids(es []outbox.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

// fakePublisher records what it is asked to publish and fails while fail
// says so. It stands in for the bus where a test needs a publisher that
// breaks.
type fakePublisher struct {
	mu     sync.Mutex
	calls  int
	ids    []string // published successfully
	traces []trace.TraceID
	fail   func(call int) error
}

func (p *fakePublisher) PublishRaw(ctx context.Context, subject, eventID, eventType string, data []byte) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.fail != nil {
		if err := p.fail(p.calls); err != nil {
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
	e1, e2, e3 := newEntry(t, ctx, "evt.a", "e1"), newEntry(t, ctx, "evt.a", "e2"), newEntry(t, ctx, "evt.a", "e3")

	tests := []struct {
		name        string
		rev         int64
		set         bson.D
		events      []outbox.Entry
		wantOK      bool
		wantRev     int64
		wantOutbox  []string
		wantPending bool
		wantField   any // value of "n" afterwards
	}{
		{"change with an event", 0, bson.D{{Key: "n", Value: 1}}, []outbox.Entry{e1}, true, 1, []string{"e1"}, true, int32(1)},
		{"events are appended", 1, bson.D{{Key: "n", Value: 2}}, []outbox.Entry{e2, e3}, true, 2, []string{"e1", "e2", "e3"}, true, int32(2)},
		{"stale revision changes nothing", 1, bson.D{{Key: "n", Value: 99}}, []outbox.Entry{newEntry(t, ctx, "evt.a", "lost")}, false, 2, []string{"e1", "e2", "e3"}, true, int32(2)},
		{"change without events keeps the outbox", 2, bson.D{{Key: "n", Value: 3}}, nil, true, 3, []string{"e1", "e2", "e3"}, true, int32(3)},
		{"future revision changes nothing", 7, bson.D{{Key: "n", Value: 98}}, nil, false, 3, []string{"e1", "e2", "e3"}, true, int32(3)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, before := read(t, c, "d1")
			set := append(tt.set, bson.E{Key: outbox.FieldRevision, Value: tt.rev + 1})
			ok, err := outbox.Write(ctx, c, "d1", tt.rev, set, tt.events...)
			if err != nil || ok != tt.wantOK {
				t.Fatalf("Write(rev %d) = %v, %v; want %v, nil", tt.rev, ok, err, tt.wantOK)
			}
			d, after := read(t, c, "d1")
			if d.Revision != tt.wantRev || !slices.Equal(ids(d.Outbox), tt.wantOutbox) || d.Pending != tt.wantPending || after["n"] != tt.wantField {
				t.Errorf("after Write: revision %d outbox %v pending %v n %v; want %d %v %v %v",
					d.Revision, ids(d.Outbox), d.Pending, after["n"], tt.wantRev, tt.wantOutbox, tt.wantPending, tt.wantField)
			}
			if !tt.wantOK && !reflect.DeepEqual(before, after) {
				t.Errorf("a Write that did not match changed the document:\nbefore %v\nafter  %v", before, after)
			}
		})
	}

	// The stored entry reads back as it was written.
	d, _ := read(t, c, "d1")
	if got := d.Outbox[0]; got.ID != e1.ID || got.Subject != e1.Subject || got.Type != e1.Type ||
		string(got.Data) != string(e1.Data) || !got.CreateTime.Equal(e1.CreateTime.Truncate(time.Millisecond)) {
		t.Errorf("stored entry = %+v, want %+v", got, e1)
	}

	bump := bson.E{Key: outbox.FieldRevision, Value: int64(1)}
	if ok, err := outbox.Write(ctx, c, "missing", 0, bson.D{{Key: "n", Value: 1}, bump}, e1); ok || err != nil {
		t.Errorf("Write(missing document) = %v, %v; want false, nil", ok, err)
	}
	// A write that does not move the revision could have its entries
	// cleared unpublished by a relay that read the document before it.
	for _, set := range []bson.D{{{Key: "n", Value: 1}}, {{Key: outbox.FieldRevision, Value: int64(0)}}} {
		if ok, err := outbox.Write(ctx, c, "a", 0, set, e1); ok || err == nil {
			t.Errorf("Write(%v) without a revision bump = %v, %v; want refused", set, ok, err)
		}
	}
}

func TestFlush(t *testing.T) {
	ctx := testContext(t)
	colls := newColls(t, 2)
	bus, stream := newBus(t)

	// Five events over three documents in two collections, and one document
	// with nothing to send.
	insert(t, colls[0], "a")
	insert(t, colls[0], "b")
	insert(t, colls[0], "quiet")
	insert(t, colls[1], "c")
	write(t, colls[0], "a", 0, bson.D{{Key: "step", Value: 1}}, newEntry(t, ctx, "evt.a", "a1"))
	write(t, colls[0], "b", 0, nil, newEntry(t, ctx, "evt.b", "b1"))
	write(t, colls[0], "a", 1, bson.D{{Key: "step", Value: 2}}, newEntry(t, ctx, "evt.a", "a2"), newEntry(t, ctx, "evt.a", "a3"))
	write(t, colls[0], "quiet", 0, bson.D{{Key: "step", Value: 1}})
	write(t, colls[1], "c", 0, nil, newEntry(t, ctx, "evt.c", "c1"))

	relay := outbox.NewRelay(bus, logging.Discard(), colls)
	n, err := relay.Flush(ctx)
	if err != nil || n != 5 {
		t.Fatalf("Flush() = %d, %v; want 5, nil", n, err)
	}
	got := published(t, stream)
	if len(got) != 5 {
		t.Fatalf("stream holds %v, want 5 events", got)
	}
	pos := map[string]int{}
	for i, id := range got {
		pos[id] = i
	}
	for _, id := range []string{"a1", "a2", "a3", "b1", "c1"} {
		if _, ok := pos[id]; !ok {
			t.Errorf("event %s not published; stream holds %v", id, got)
		}
	}
	if !(pos["a1"] < pos["a2"] && pos["a2"] < pos["a3"]) {
		t.Errorf("a's events at stream positions %d, %d, %d, want increasing", pos["a1"], pos["a2"], pos["a3"])
	}
	m, err := stream.GetMsg(ctx, uint64(pos["a2"]+1))
	if err != nil {
		t.Fatalf("GetMsg: %v", err)
	}
	var payload wrapperspb.StringValue
	if err := proto.Unmarshal(m.Data, &payload); err != nil || payload.GetValue() != "payload of a2" ||
		m.Subject != "evt.a" || m.Header.Get(natsx.HeaderEventType) != "google.protobuf.StringValue" {
		t.Errorf("a2 published as subject %q type %q payload %q, want evt.a, google.protobuf.StringValue, %q",
			m.Subject, m.Header.Get(natsx.HeaderEventType), payload.GetValue(), "payload of a2")
	}

	for _, tc := range []struct {
		c   *mongo.Collection
		id  string
		rev int64
	}{{colls[0], "a", 2}, {colls[0], "b", 1}, {colls[0], "quiet", 1}, {colls[1], "c", 1}} {
		d, _ := read(t, tc.c, tc.id)
		if len(d.Outbox) != 0 || d.Pending || d.Revision != tc.rev {
			t.Errorf("%s after Flush: outbox %v pending %v revision %d; want empty, false, %d", tc.id, ids(d.Outbox), d.Pending, d.Revision, tc.rev)
		}
	}
	if relay.Published() != 5 {
		t.Errorf("Published() = %d, want 5", relay.Published())
	}

	// Nothing is pending, so a second Flush sends nothing.
	if n, err := relay.Flush(ctx); n != 0 || err != nil {
		t.Errorf("second Flush() = %d, %v; want 0, nil", n, err)
	}
	if again := published(t, stream); len(again) != 5 {
		t.Errorf("stream after second Flush holds %d events, want 5", len(again))
	}
	if relay.Published() != 5 {
		t.Errorf("Published() after second Flush = %d, want 5", relay.Published())
	}
}

func TestFlushManyDocuments(t *testing.T) {
	// More pending documents than one batch holds.
	const docs = 130
	ctx := testContext(t)
	c := newColls(t, 1)[0]
	var batch []any
	var want []string
	for i := range docs {
		id := fmt.Sprintf("d%03d", i)
		batch = append(batch, bson.D{{Key: "_id", Value: id}, {Key: outbox.FieldRevision, Value: int64(1)},
			{Key: outbox.FieldEntries, Value: bson.A{newEntry(t, ctx, "evt.x", "e-"+id)}}, {Key: outbox.FieldPending, Value: true}})
		want = append(want, "e-"+id)
	}
	if _, err := c.InsertMany(ctx, batch); err != nil {
		t.Fatalf("InsertMany: %v", err)
	}
	pub := &fakePublisher{}
	n, err := outbox.NewRelay(pub, logging.Discard(), []*mongo.Collection{c}).Flush(ctx)
	if err != nil || n != docs {
		t.Fatalf("Flush() = %d, %v; want %d, nil", n, err, docs)
	}
	got := pub.published()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("published %d events, want each of the %d once", len(got), docs)
	}
	if left, err := c.CountDocuments(ctx, bson.D{{Key: outbox.FieldPending, Value: true}}); err != nil || left != 0 {
		t.Errorf("pending documents after Flush = %d, %v; want 0", left, err)
	}
}

func TestFlushJoinsEntryTrace(t *testing.T) {
	useTracing(t)
	c := newColls(t, 1)[0]
	insert(t, c, "a")
	ctx, span := otel.Tracer("test").Start(testContext(t), "request")
	write(t, c, "a", 0, nil, newEntry(t, ctx, "evt.a", "a1"))
	span.End()

	pub := &fakePublisher{}
	if _, err := outbox.NewRelay(pub, logging.Discard(), []*mongo.Collection{c}).Flush(testContext(t)); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if len(pub.traces) != 1 || pub.traces[0] != span.SpanContext().TraceID() {
		t.Errorf("published in traces %v, want the request's %s", pub.traces, span.SpanContext().TraceID())
	}
}

func TestFlushPublisherFails(t *testing.T) {
	ctx := testContext(t)
	c := newColls(t, 1)[0]
	insert(t, c, "a")
	write(t, c, "a", 0, nil, newEntry(t, ctx, "evt.a", "a1"), newEntry(t, ctx, "evt.a", "a2"))

	// The first entry goes out, the second fails: nothing is cleared.
	pub := &fakePublisher{fail: func(call int) error {
		if call >= 2 {
			return errors.New("nats: no responders")
		}
		return nil
	}}
	relay := outbox.NewRelay(pub, logging.Discard(), []*mongo.Collection{c})
	n, err := relay.Flush(ctx)
	if err == nil || !strings.Contains(err.Error(), "no responders") || n != 1 {
		t.Errorf("Flush() with a failing publisher = %d, %v; want 1 and the publisher's error", n, err)
	}
	d, _ := read(t, c, "a")
	if !slices.Equal(ids(d.Outbox), []string{"a1", "a2"}) || !d.Pending {
		t.Errorf("after a failed Flush: outbox %v pending %v; want [a1 a2], true", ids(d.Outbox), d.Pending)
	}

	// Once the publisher is back, everything goes out again, in order.
	pub.mu.Lock()
	pub.fail, pub.ids = nil, nil
	pub.mu.Unlock()
	if n, err := relay.Flush(ctx); n != 2 || err != nil {
		t.Errorf("Flush() after recovery = %d, %v; want 2, nil", n, err)
	}
	if got := pub.published(); !slices.Equal(got, []string{"a1", "a2"}) {
		t.Errorf("published after recovery %v, want [a1 a2]", got)
	}
}

func TestRunRetries(t *testing.T) {
	c := newColls(t, 1)[0]
	insert(t, c, "a")
	write(t, c, "a", 0, nil, newEntry(t, testContext(t), "evt.a", "a1"))
	pub := &fakePublisher{fail: func(call int) error {
		if call <= 3 {
			return errors.New("nats: connection closed")
		}
		return nil
	}}
	relay := outbox.NewRelay(pub, logging.Discard(), []*mongo.Collection{c}, outbox.WithInterval(10*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	}()

	deadline := time.Now().Add(10 * time.Second)
	for d, _ := read(t, c, "a"); d.Pending; d, _ = read(t, c, "a") {
		if time.Now().After(deadline) {
			t.Fatalf("entry still pending 10s into Run; publisher called %d times", pub.calls)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := pub.published(); !slices.Equal(got, []string{"a1"}) {
		t.Errorf("published %v, want [a1] once after the failures", got)
	}
}

func TestRunNotifyAndFinalFlush(t *testing.T) {
	c := newColls(t, 1)[0]
	insert(t, c, "a")
	pub := &fakePublisher{}
	// Scans rarely: only Notify and the end of Run make it publish.
	relay := outbox.NewRelay(pub, logging.Discard(), []*mongo.Collection{c}, outbox.WithInterval(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	t.Cleanup(cancel)

	waitFor := func(want []string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !slices.Equal(pub.published(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("published %v, want %v", pub.published(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	time.Sleep(50 * time.Millisecond) // let the first, empty pass go by
	write(t, c, "a", 0, nil, newEntry(t, testContext(t), "evt.a", "a1"))
	relay.Notify()
	relay.Notify() // never blocks
	waitFor([]string{"a1"})

	// Stored but never reported: the scan at shutdown sends it, so a
	// redeploy leaves nothing behind.
	write(t, c, "a", 1, nil, newEntry(t, testContext(t), "evt.a", "a2"))
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if got := pub.published(); !slices.Equal(got, []string{"a1", "a2"}) {
		t.Errorf("published %v, want [a1 a2]: the final scan sends what is left", got)
	}
}

// TestRunShutdownDuringPublish stops the relay while it is publishing: the
// publish fails with the ended context, and the final attempt, which has a
// context of its own, must still send the entry.
func TestRunShutdownDuringPublish(t *testing.T) {
	c := newColls(t, 1)[0]
	insert(t, c, "a")
	write(t, c, "a", 0, nil, newEntry(t, testContext(t), "evt.a", "a1"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishing := make(chan struct{})
	pub := &fakePublisher{}
	var once sync.Once
	blocking := publisherFunc(func(pctx context.Context, subject, id, typ string, data []byte) (bool, error) {
		first := false
		once.Do(func() { first = true })
		if first {
			close(publishing)
			<-pctx.Done() // shutdown begins while this publish waits for its ack
			return false, pctx.Err()
		}
		return pub.PublishRaw(pctx, subject, id, typ, data)
	})
	relay := outbox.NewRelay(blocking, logging.Discard(), []*mongo.Collection{c}, outbox.WithInterval(time.Hour))
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	relay.Notify()
	<-publishing
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if got := pub.published(); !slices.Equal(got, []string{"a1"}) {
		t.Errorf("published %v, want [a1]: the final attempt sends what the interrupted pass did not", got)
	}
}

type publisherFunc func(ctx context.Context, subject, eventID, eventType string, data []byte) (bool, error)

func (f publisherFunc) PublishRaw(ctx context.Context, subject, eventID, eventType string, data []byte) (bool, error) {
	return f(ctx, subject, eventID, eventType, data)
}

// TestRunWritten checks the fast path: the entries a writer hands over are
// published at once, from memory, without waiting for a scan; kept for a
// retry when publishing fails; not sent again when a later write hands them
// over with its own; and cleared from the documents once published.
func TestRunWritten(t *testing.T) {
	colls := newColls(t, 2)
	insert(t, colls[0], "a")
	insert(t, colls[1], "b")
	pub := &fakePublisher{fail: func(call int) error {
		if call == 2 {
			return errors.New("nats: timeout")
		}
		return nil
	}}
	relay := outbox.NewRelay(pub, logging.Discard(), colls, outbox.WithInterval(time.Hour), outbox.WithSettle(10*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	}()
	time.Sleep(50 * time.Millisecond) // let the first, empty scan go by

	a1, b1, a2 := newEntry(t, ctx, "evt.a", "a1"), newEntry(t, ctx, "evt.b", "b1"), newEntry(t, ctx, "evt.a", "a2")
	steps := []struct {
		name  string
		do    func()
		wantN int
		want  []string
	}{
		{"handed over", func() {
			write(t, colls[0], "a", 0, nil, a1)
			relay.Written(colls[0], "a", 1, []outbox.Entry{a1})
		}, 1, []string{"a1"}},
		{"failed publish is retried", func() {
			write(t, colls[1], "b", 0, nil, b1)
			relay.Written(colls[1], "b", 1, []outbox.Entry{b1})
		}, 3, []string{"a1", "b1"}},
		{"published entries are not sent again", func() {
			write(t, colls[0], "a", 1, nil, a2)
			relay.Written(colls[0], "a", 2, []outbox.Entry{a1, a2})
			relay.Written(colls[0], "a", 2, nil) // nothing to hand over
		}, 4, []string{"a1", "b1", "a2"}},
	}
	for _, st := range steps {
		st.do()
		deadline := time.Now().Add(10 * time.Second)
		for !slices.Equal(pub.published(), st.want) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: published %v, want %v", st.name, pub.published(), st.want)
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(30 * time.Millisecond) // room for a wrong extra publish
		pub.mu.Lock()
		calls := pub.calls
		pub.mu.Unlock()
		if calls != st.wantN || !slices.Equal(pub.published(), st.want) {
			t.Errorf("%s: %d publish calls, published %v; want %d, %v", st.name, calls, pub.published(), st.wantN, st.want)
		}
	}
	for _, tc := range []struct {
		c  *mongo.Collection
		id string
	}{{colls[0], "a"}, {colls[1], "b"}} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			d, _ := read(t, tc.c, tc.id)
			if !d.Pending && len(d.Outbox) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: pending %v outbox %v, want cleared", tc.id, d.Pending, ids(d.Outbox))
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// TestConcurrentWrite writes a change while the relay publishes, many
// times over: a relay clearing the outbox must never lose a change, nor the
// event it carries. It relies on the dev stack making each conditional
// update atomic, as MongoDB does.
func TestConcurrentWrite(t *testing.T) {
	const rounds = 50
	tests := []struct {
		name string
		// run drives the relay while write(i) stores change i; wait waits
		// until every event is in the stream.
		run func(t *testing.T, relay *outbox.Relay, c *mongo.Collection, write func(i int), wait func())
	}{
		{"Flush while writing", func(t *testing.T, relay *outbox.Relay, _ *mongo.Collection, write func(int), _ func()) {
			ctx := testContext(t)
			for i := range rounds {
				flushed := make(chan error, 1)
				go func() {
					_, err := relay.Flush(ctx)
					flushed <- err
				}()
				write(i)
				if err := <-flushed; err != nil {
					t.Fatalf("Flush in round %d: %v", i, err)
				}
			}
			if _, err := relay.Flush(ctx); err != nil {
				t.Fatalf("last Flush: %v", err)
			}
		}},
		{"Run told by Update", func(t *testing.T, relay *outbox.Relay, c *mongo.Collection, write func(int), wait func()) {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- relay.Run(ctx) }()
			for i := range rounds {
				write(i)
			}
			wait()
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run() = %v, want nil", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			c := newColls(t, 1)[0]
			bus, stream := newBus(t)
			// Clears race the writes: a clear must never take an entry
			// that was not published.
			relay := outbox.NewRelay(bus, logging.Discard(), []*mongo.Collection{c}, outbox.WithInterval(time.Hour), outbox.WithSettle(time.Millisecond))
			insert(t, c, "doc")
			var want []string
			// Each round is the read, change, guarded write every store
			// makes, telling the relay of what it left in the outbox.
			writeRound := func(i int) {
				id := fmt.Sprintf("e%02d", i)
				read := func(ctx context.Context) (bson.M, outbox.State, error) {
					var st outbox.State
					err := c.FindOne(ctx, bson.D{{Key: "_id", Value: "doc"}}).Decode(&st)
					return bson.M{}, st, err
				}
				apply := func(*bson.M) (bool, []outbox.Entry, error) {
					return true, []outbox.Entry{newEntry(t, ctx, "evt.doc", id)}, nil
				}
				fields := func(bson.M) bson.D {
					return bson.D{{Key: fmt.Sprintf("f_%02d", i), Value: i}, {Key: outbox.FieldRevision, Value: int64(i + 1)}}
				}
				if _, ok, err := outbox.Update(ctx, c, "doc", read, apply, fields, relay.Written); err != nil || !ok {
					t.Fatalf("Update round %d = %v, %v", i, ok, err)
				}
				want = append(want, id)
			}
			wait := func() {
				deadline := time.Now().Add(10 * time.Second)
				for len(published(t, stream)) < rounds && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
			}
			tt.run(t, relay, c, writeRound, wait)

			if got := published(t, stream); !slices.Equal(got, want) {
				t.Errorf("stream holds %d events %v,\nwant %d %v", len(got), got, len(want), want)
			}
			d, m := read(t, c, "doc")
			if d.Revision != rounds || len(d.Outbox) != 0 || d.Pending {
				t.Errorf("document at the end: revision %d outbox %v pending %v; want %d, empty, false", d.Revision, ids(d.Outbox), d.Pending, rounds)
			}
			for i := range rounds {
				if k := fmt.Sprintf("f_%02d", i); m[k] != int32(i) {
					t.Errorf("document field %s = %v, want %d: a change was lost", k, m[k], i)
				}
			}
		})
	}
}
