package natsx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/logging"
	"github.com/pizzashop/pizzashop/pkg/natsx"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// testStream is the stream every test here publishes to; each test has a
// server of its own.
var testStream = jetstream.StreamConfig{Name: "TEST", Subjects: []string{"test.>"}}

// logBuffer collects JSON log records; it is safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns every record written so far.
func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// count returns how many records carry msg.
func (b *logBuffer) count(t *testing.T, msg string) int {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for line := range strings.Lines(b.buf.String()) {
		var r struct{ Msg string }
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if r.Msg == msg {
			n++
		}
	}
	return n
}

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newBus connects to a NATS server of t's own and declares testStream.
func newBus(t *testing.T) (*natsx.Bus, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	bus, err := natsx.Connect(devstack.NATS(t), t.Name(), newLogger(logs))
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(bus.Close)
	if err := bus.EnsureStream(testContext(t), testStream); err != nil {
		t.Fatalf("EnsureStream: %v", err)
	}
	return bus, logs
}

// streamMsgs returns every message in stream.
func streamMsgs(t *testing.T, bus *natsx.Bus, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := testContext(t)
	s, err := bus.JS.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("Stream(%s): %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("Stream(%s).Info: %v", stream, err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("GetMsg(%d): %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}

// eventually polls cond until it holds, failing the test after 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// useTracing installs an SDK tracer provider that records spans, and the
// W3C propagator, for the duration of t.
func useTracing(t *testing.T) *tracetest.SpanRecorder {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	oldTP, oldProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() {
		otel.SetTracerProvider(oldTP)
		otel.SetTextMapPropagator(oldProp)
		_ = tp.Shutdown(context.Background())
	})
	return rec
}

func TestEnsureStream(t *testing.T) {
	bus, _ := newBus(t) // declares testStream once
	ctx := testContext(t)
	for i := range 2 {
		if err := bus.EnsureStream(ctx, testStream); err != nil {
			t.Fatalf("EnsureStream #%d again: %v", i+2, err)
		}
	}
	s, err := bus.JS.Stream(ctx, testStream.Name)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Config.Storage != jetstream.FileStorage || info.Config.Duplicates != 10*time.Minute {
		t.Errorf("stream storage, duplicates = %v, %v; want file, 10m", info.Config.Storage, info.Config.Duplicates)
	}
	names := bus.JS.StreamNames(ctx)
	var all []string
	for n := range names.Name() {
		all = append(all, n)
	}
	if !slices.Equal(all, []string{"TEST"}) {
		t.Errorf("streams = %v, want [TEST]", all)
	}

	// A changed configuration updates the stream.
	changed := testStream
	changed.Subjects = []string{"test.>", "other.>"}
	changed.Duplicates = time.Minute
	if err := bus.EnsureStream(ctx, changed); err != nil {
		t.Fatalf("EnsureStream(changed): %v", err)
	}
	info, err = s.Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if !slices.Equal(info.Config.Subjects, changed.Subjects) || info.Config.Duplicates != time.Minute {
		t.Errorf("updated stream subjects, duplicates = %v, %v; want %v, 1m", info.Config.Subjects, info.Config.Duplicates, changed.Subjects)
	}
}

func TestEnsureStreamRefused(t *testing.T) {
	bus, _ := newBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The server refuses this one every time: its subjects overlap TEST's.
	// That is an answer, not an outage, so there is nothing to wait for.
	start := time.Now()
	err := bus.EnsureStream(ctx, jetstream.StreamConfig{Name: "OVERLAP", Subjects: []string{"test.x"}})
	if _, ok := errors.AsType[*jetstream.APIError](err); !ok || !strings.Contains(err.Error(), "OVERLAP") {
		t.Errorf("EnsureStream(refused config) = %v, want the server's API error naming the stream", err)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Errorf("EnsureStream(refused config) took %s, want an immediate answer", waited)
	}
}

func TestEnsureStreamGivesUpWithContext(t *testing.T) {
	// No server at all: EnsureStream keeps trying until its context ends.
	bus, err := natsx.Connect("nats://127.0.0.1:1", "test", logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = bus.EnsureStream(ctx, jetstream.StreamConfig{Name: "NOSERVER", Subjects: []string{"noserver.>"}})
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("EnsureStream(no server) with an ending context = %v, want an error wrapping DeadlineExceeded", err)
	}
}

func TestPing(t *testing.T) {
	bus, _ := newBus(t)
	if err := bus.Ping(testContext(t)); err != nil {
		t.Errorf("Ping() = %v, want nil", err)
	}
	bus.Conn.Close()
	if err := bus.Ping(testContext(t)); err == nil {
		t.Error("Ping() on a closed connection = nil, want an error")
	}
}

func TestPublish(t *testing.T) {
	rec := useTracing(t)
	bus, _ := newBus(t)
	ctx, span := otel.Tracer("test").Start(testContext(t), "place order")
	defer span.End()

	tests := []struct {
		name    string
		subject string
		id      string
		value   string
		dup     bool
		msgs    int // in the stream afterwards
	}{
		{"first", "test.created", "evt-1", "hello", false, 1},
		{"same id", "test.created", "evt-1", "hello again", true, 1},
		{"same id, other subject", "test.updated", "evt-1", "hello", true, 1},
		{"new id", "test.created", "evt-2", "bye", false, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dup, err := bus.Publish(ctx, tt.subject, tt.id, wrapperspb.String(tt.value))
			if err != nil {
				t.Fatalf("Publish(%s) err = %v", tt.id, err)
			}
			if dup != tt.dup {
				t.Errorf("Publish(%s) duplicate = %v, want %v", tt.id, dup, tt.dup)
			}
			if n := len(streamMsgs(t, bus, "TEST")); n != tt.msgs {
				t.Errorf("stream has %d messages, want %d", n, tt.msgs)
			}
		})
	}

	msgs := streamMsgs(t, bus, "TEST")
	if len(msgs) != 2 {
		t.Fatalf("stream has %d messages, want 2", len(msgs))
	}
	m := msgs[0]
	var got wrapperspb.StringValue
	if err := proto.Unmarshal(m.Data, &got); err != nil || got.GetValue() != "hello" {
		t.Errorf("first message data = %q (%v), want StringValue hello", m.Data, err)
	}
	wantHeaders := map[string]string{
		jetstream.MsgIDHeader: "evt-1",
		natsx.HeaderEventType: "google.protobuf.StringValue",
	}
	for k, want := range wantHeaders {
		if got := m.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	tp := m.Header.Get("traceparent")
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || parts[1] != span.SpanContext().TraceID().String() {
		t.Fatalf("traceparent = %q, want trace id %s", tp, span.SpanContext().TraceID())
	}

	// The header names the publish span, a producer span inside the caller's trace.
	var publish sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "publish test.created" && s.SpanContext().SpanID().String() == parts[2] {
			publish = s
		}
	}
	if publish == nil {
		t.Fatalf("no ended span %q with span id %s among %d spans", "publish test.created", parts[2], len(rec.Ended()))
	}
	if publish.SpanKind() != trace.SpanKindProducer || publish.Parent().SpanID() != span.SpanContext().SpanID() {
		t.Errorf("publish span kind %v parent %s, want producer, parent %s", publish.SpanKind(), publish.Parent().SpanID(), span.SpanContext().SpanID())
	}
}

func TestPublishWithoutStream(t *testing.T) {
	bus, _ := newBus(t)
	ctx, cancel := context.WithTimeout(testContext(t), 2*time.Second)
	defer cancel()
	if _, err := bus.PublishRaw(ctx, "nostream.x", "evt-1", "t", []byte("x")); err == nil {
		t.Error("PublishRaw to a subject no stream holds = nil error, want an error")
	}
}

func TestHeaderCarrier(t *testing.T) {
	h := nats.Header{}
	c := natsx.HeaderCarrier(h)
	tests := []struct {
		key, value string
	}{
		{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		{"tracestate", "vendor=x"},
		{"X-Mixed-Case", "1"},
		{"lower-only", "2"},
	}
	for _, tt := range tests {
		c.Set(tt.key, tt.value)
		if got := h[tt.key]; len(got) != 1 || got[0] != tt.value {
			t.Errorf("after Set(%q, %q) header[%q] = %q, want [%q]", tt.key, tt.value, tt.key, got, tt.value)
		}
		if got := c.Get(tt.key); got != tt.value {
			t.Errorf("Get(%q) = %q, want %q", tt.key, got, tt.value)
		}
	}
	if got := c.Get("Traceparent"); got != "" {
		t.Errorf("Get(%q) = %q, want \"\": keys keep their case", "Traceparent", got)
	}
	c.Set("tracestate", "vendor=y")
	if got := h["tracestate"]; len(got) != 1 || got[0] != "vendor=y" {
		t.Errorf("Set replaces: header[tracestate] = %q, want [vendor=y]", got)
	}
	keys := c.Keys()
	slices.Sort(keys)
	if want := []string{"X-Mixed-Case", "lower-only", "traceparent", "tracestate"}; !slices.Equal(keys, want) {
		t.Errorf("Keys() = %v, want %v", keys, want)
	}
	if got := natsx.HeaderCarrier(nats.Header{}).Get("missing"); got != "" {
		t.Errorf("Get(missing) = %q, want \"\"", got)
	}
}

func TestContextFrom(t *testing.T) {
	useTracing(t)
	ctx, span := otel.Tracer("test").Start(context.Background(), "parent")
	defer span.End()
	h := nats.Header{}
	otel.GetTextMapPropagator().Inject(ctx, natsx.HeaderCarrier(h))
	got := trace.SpanContextFromContext(natsx.ContextFrom(context.Background(), h))
	if !got.IsRemote() || got.TraceID() != span.SpanContext().TraceID() || got.SpanID() != span.SpanContext().SpanID() {
		t.Errorf("ContextFrom(injected header) span context = %v, want remote %v", got, span.SpanContext())
	}
	base := context.Background()
	if got := natsx.ContextFrom(base, nil); got != base {
		t.Errorf("ContextFrom(ctx, nil) = %v, want ctx unchanged", got)
	}
	if sc := trace.SpanContextFromContext(natsx.ContextFrom(base, nats.Header{})); sc.IsValid() {
		t.Errorf("ContextFrom(empty header) has span context %v, want none", sc)
	}
}

func TestOnMissedAfterReconnect(t *testing.T) {
	s, err := devstack.Start(context.Background(), devstack.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	bus, err := natsx.Connect(s.NATSURL(), t.Name(), logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	missed := make(chan struct{}, 4)
	bus.OnMissed(func() { missed <- struct{}{} })

	select {
	case <-missed:
		t.Fatal("OnMissed called while nothing was missed")
	case <-time.After(200 * time.Millisecond):
	}
	s.StopNATS()
	if err := s.StartNATS(); err != nil {
		t.Fatalf("StartNATS: %v", err)
	}
	select {
	case <-missed:
	case <-time.After(15 * time.Second):
		t.Fatal("OnMissed not called within 15s of NATS coming back")
	}
}

// TestEnsureStreams: only streams this bus declared and NATS lost are
// declared again, with their config; others are left alone.
func TestEnsureStreams(t *testing.T) {
	bus, _ := newBus(t) // declares testStream
	ctx := testContext(t)
	if declared, err := bus.EnsureStreams(ctx); declared || err != nil {
		t.Fatalf("EnsureStreams with every stream there = %v, %v; want false, nil", declared, err)
	}
	other := jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}}
	if _, err := bus.JS.CreateStream(ctx, other); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{testStream.Name, other.Name} {
		if err := bus.JS.DeleteStream(ctx, name); err != nil {
			t.Fatalf("DeleteStream(%s): %v", name, err)
		}
	}
	_, err := bus.PublishRaw(ctx, "test.x", "evt-x", "t", []byte("x"))
	if !bus.StreamMissing(err) {
		t.Errorf("StreamMissing(%v) = false after the stream was deleted, want true", err)
	}
	if declared, err := bus.EnsureStreams(ctx); !declared || err != nil {
		t.Fatalf("EnsureStreams after the stream was deleted = %v, %v; want true, nil", declared, err)
	}
	s, err := bus.JS.Stream(ctx, testStream.Name)
	if err != nil {
		t.Fatalf("Stream(%s) after EnsureStreams: %v", testStream.Name, err)
	}
	if c := s.CachedInfo().Config; c.Storage != jetstream.FileStorage || c.Duplicates != 10*time.Minute {
		t.Errorf("stream declared again with storage %v, duplicates %v; want file, 10m as first declared", c.Storage, c.Duplicates)
	}
	if _, err := bus.JS.Stream(ctx, other.Name); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("Stream(%s) = %v, want ErrStreamNotFound: not declared by this bus", other.Name, err)
	}
	if _, err := bus.PublishRaw(ctx, "test.x", "evt-x", "t", []byte("x")); err != nil || bus.StreamMissing(err) {
		t.Errorf("PublishRaw after EnsureStreams = %v, want nil", err)
	}
}

// scriptedJetStream starts a NATS server without JetStream whose stream API
// for PLACED answers as a cluster that cannot place the stream yet did ("no
// suitable peers for placement"), refusals times, then places it. It
// returns the server's URL and the count of create requests.
func scriptedJetStream(t *testing.T, refusals int32) (string, *atomic.Int32) {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	creates := &atomic.Int32{}
	respond := func(m *nats.Msg, body string) {
		if err := m.Respond([]byte(body)); err != nil {
			t.Error(err)
		}
	}
	if _, err := nc.Subscribe("$JS.API.STREAM.UPDATE.PLACED", func(m *nats.Msg) {
		respond(m, `{"error":{"code":404,"err_code":10059,"description":"stream not found"}}`)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe("$JS.API.STREAM.CREATE.PLACED", func(m *nats.Msg) {
		if creates.Add(1) <= refusals {
			respond(m, `{"error":{"code":400,"err_code":10005,"description":"no suitable peers for placement, peer offline"}}`)
			return
		}
		respond(m, `{"config":`+string(m.Data)+`,"created":"2026-01-01T00:00:00Z","state":{}}`)
	}); err != nil {
		t.Fatal(err)
	}
	return ns.ClientURL(), creates
}

var placedStream = jetstream.StreamConfig{Name: "PLACED", Subjects: []string{"placed.>"}, Replicas: 3}

// TestEnsureStreamWaitsForClusterPeers: a JetStream cluster whose nodes are
// still meeting each other refuses a stream of three replicas with "no
// suitable peers for placement" (CI saw it at cluster start, and the
// services exited). That is the cluster not being ready, not a wrong
// request: EnsureStream asks again until the stream is placed.
//
// Which peer the meta leader has not heard from yet is a race at a real
// cluster's start, so the JetStream API here is scripted.
func TestEnsureStreamWaitsForClusterPeers(t *testing.T) {
	const refusals = 3
	url, creates := scriptedJetStream(t, refusals)
	bus, err := natsx.Connect(url, t.Name(), logging.Discard())
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(bus.Close)
	if err := bus.EnsureStream(testContext(t), placedStream); err != nil {
		t.Fatalf("EnsureStream while the cluster cannot place it yet = %v, want it placed once the cluster can", err)
	}
	if got := creates.Load(); got != refusals+1 {
		t.Errorf("stream create requests = %d, want %d (%d refused, then placed)", got, refusals+1, refusals)
	}
}

// TestEnsureStreamKeepsSayingWhy: a wait that goes on (a cluster short of
// nodes for the stream's replicas never places it) shows in the log again
// and again with the cluster's reason, not once at the start.
func TestEnsureStreamKeepsSayingWhy(t *testing.T) {
	natsx.SetRetryNote(t, 300*time.Millisecond)
	url, _ := scriptedJetStream(t, 1<<30)
	logs := &logBuffer{}
	bus, err := natsx.Connect(url, t.Name(), newLogger(logs))
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(bus.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	if err := bus.EnsureStream(ctx, placedStream); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("EnsureStream with a cluster that never places it = %v, want it to wait until its context ends", err)
	}
	if n := logs.count(t, "still retrying"); n < 3 {
		t.Errorf("%d \"still retrying\" warnings over 4 s, noted every 300 ms, want at least 3", n)
	}
	if !strings.Contains(logs.String(), "no suitable peers") {
		t.Errorf("the warnings do not give the cluster's reason:\n%s", logs.String())
	}
}
