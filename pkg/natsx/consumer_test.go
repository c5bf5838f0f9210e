package natsx_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/errs"
	"github.com/pizzashop/pizzashop/pkg/natsx"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
)

const durable = "worker"

// shortBackoff keeps redeliveries quick in tests.
var shortBackoff = []time.Duration{10 * time.Millisecond}

// delivery is one call of a handler.
type delivery struct {
	data      string
	delivered uint64 // NumDelivered of the message at this call
	traceID   trace.TraceID
}

// recorder is a handler that records its calls and answers with
// result(data, call number of this message).
type recorder struct {
	mu     sync.Mutex
	calls  []delivery
	result func(data string, call int) error
}

func (r *recorder) handle(ctx context.Context, m jetstream.Msg) error {
	d := delivery{data: string(m.Data()), traceID: trace.SpanContextFromContext(ctx).TraceID()}
	if md, err := m.Metadata(); err == nil {
		d.delivered = md.NumDelivered
	}
	r.mu.Lock()
	r.calls = append(r.calls, d)
	n := 0
	for _, c := range r.calls {
		if c.data == d.data {
			n++
		}
	}
	r.mu.Unlock()
	if r.result == nil {
		return nil
	}
	return r.result(d.data, n)
}

// of returns the calls for messages with data.
func (r *recorder) of(data string) []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []delivery
	for _, c := range r.calls {
		if c.data == data {
			out = append(out, c)
		}
	}
	return out
}

func (r *recorder) all() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// consume runs bus.Consume until stop is called or the test ends; stop
// returns Consume's error.
func consume(t *testing.T, bus *natsx.Bus, cfg natsx.ConsumerConfig, h natsx.Handler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bus.Consume(ctx, cfg, h) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(15 * time.Second):
				t.Errorf("Consume did not return 15s after its context ended")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// config is a consumer with one worker, so that messages of different
// subjects are handled in the order they came; TestConsumeWorkers covers
// several.
func config(maxDeliver int) natsx.ConsumerConfig {
	return natsx.ConsumerConfig{Stream: testStream.Name, Durable: durable, MaxDeliver: maxDeliver, Backoff: shortBackoff, Workers: 1}
}

func publish(t *testing.T, ctx context.Context, bus *natsx.Bus, data ...string) {
	t.Helper()
	for _, d := range data {
		if _, err := bus.PublishRaw(ctx, "test."+d, "evt-"+d, "test.Event", []byte(d)); err != nil {
			t.Fatalf("PublishRaw(%s): %v", d, err)
		}
	}
}

func consumerInfo(t *testing.T, bus *natsx.Bus) *jetstream.ConsumerInfo {
	t.Helper()
	ctx := testContext(t)
	c, err := bus.JS.Consumer(ctx, testStream.Name, durable)
	if err != nil {
		t.Fatalf("Consumer(%s): %v", durable, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("consumer info: %v", err)
	}
	return info
}

// settled waits until the consumer has nothing pending or unacknowledged.
func settled(t *testing.T, bus *natsx.Bus) {
	t.Helper()
	eventually(t, "the consumer has no pending or unacknowledged message", func() bool {
		info := consumerInfo(t, bus)
		return info.NumPending == 0 && info.NumAckPending == 0
	})
}

// deadLetters returns the messages in the dead-letter stream, if it exists.
func deadLetters(t *testing.T, bus *natsx.Bus) []*jetstream.RawStreamMsg {
	t.Helper()
	if _, err := bus.JS.Stream(testContext(t), natsx.DeadLetterStream.Name); errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	return streamMsgs(t, bus, natsx.DeadLetterStream.Name)
}

func TestConsumeAcks(t *testing.T) {
	useTracing(t)
	bus, _ := newBus(t)
	ctx, span := otel.Tracer("test").Start(testContext(t), "place order")
	defer span.End()
	publish(t, ctx, bus, "a", "b", "c")

	rec := &recorder{}
	consume(t, bus, config(3), rec.handle)
	eventually(t, "three messages are handled", func() bool { return len(rec.all()) >= 3 })
	settled(t, bus)

	calls := rec.all()
	var order []string
	for _, c := range calls {
		order = append(order, c.data)
		if c.delivered != 1 {
			t.Errorf("message %s handled on delivery %d, want 1", c.data, c.delivered)
		}
		if c.traceID != span.SpanContext().TraceID() {
			t.Errorf("message %s handled in trace %s, want the publisher's %s", c.data, c.traceID, span.SpanContext().TraceID())
		}
	}
	if !slices.Equal(order, []string{"a", "b", "c"}) {
		t.Errorf("handled %v, want [a b c] once each, in order", order)
	}
	// The server never gives up on a message; the bound is counted by
	// Consume, so nothing held through an outage is dropped.
	if info := consumerInfo(t, bus); info.NumRedelivered != 0 || info.Config.MaxDeliver != -1 {
		t.Errorf("consumer redelivered %d, max deliver %d; want 0 and -1 (unbounded on the server)", info.NumRedelivered, info.Config.MaxDeliver)
	}
	if dl := deadLetters(t, bus); len(dl) != 0 {
		t.Errorf("dead letters = %d, want 0", len(dl))
	}
}

func TestConsumeRedelivers(t *testing.T) {
	const maxDeliver = 4
	bus, _ := newBus(t)
	publish(t, testContext(t), bus, "flaky")
	rec := &recorder{result: func(_ string, call int) error {
		if call < maxDeliver {
			return fmt.Errorf("attempt %d failed", call)
		}
		return nil
	}}
	consume(t, bus, config(maxDeliver), rec.handle)
	eventually(t, "the message is handled at its last delivery", func() bool { return len(rec.all()) >= maxDeliver })
	settled(t, bus)
	time.Sleep(50 * time.Millisecond) // room for a wrong extra delivery

	var got []uint64
	for _, c := range rec.of("flaky") {
		got = append(got, c.delivered)
	}
	if want := []uint64{1, 2, 3, 4}; !slices.Equal(got, want) {
		t.Errorf("flaky handled at deliveries %v, want %v", got, want)
	}
	if dl := deadLetters(t, bus); len(dl) != 0 {
		t.Errorf("dead letters = %d, want 0: the last delivery succeeded", len(dl))
	}
}

func TestConsumeDeadLetters(t *testing.T) {
	tests := []struct {
		name           string
		maxDeliver     int
		err            error
		wantDeliveries int
	}{
		{"keeps failing", 3, errors.New("boom"), 3},
		{"permanent", 5, fmt.Errorf("decode: %w", natsx.Permanent(errors.New("boom: not a protobuf"))), 1},
		{"permanent at once", 5, natsx.Permanent(errors.New("boom")), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus, logs := newBus(t)
			goods := []string{"good1", "good2", "good3", "good4", "good5"}
			publish(t, testContext(t), bus, append([]string{"bad"}, goods...)...)
			rec := &recorder{result: func(data string, _ int) error {
				if data == "bad" {
					return tt.err
				}
				return nil
			}}
			consume(t, bus, config(tt.maxDeliver), rec.handle)
			eventually(t, "the bad message is dead-lettered", func() bool { return len(deadLetters(t, bus)) > 0 })
			settled(t, bus)
			time.Sleep(50 * time.Millisecond) // room for a wrong extra delivery

			bad := rec.of("bad")
			if len(bad) != tt.wantDeliveries {
				t.Errorf("bad handled %d times, want %d", len(bad), tt.wantDeliveries)
			}
			// The others flowed past it, each handled once.
			calls := rec.all()
			lastBad := slices.IndexFunc(calls, func(d delivery) bool { return d.data == "bad" && int(d.delivered) == tt.wantDeliveries })
			for _, g := range goods {
				got := rec.of(g)
				if len(got) != 1 {
					t.Errorf("%s handled %d times, want 1", g, len(got))
				}
				if tt.wantDeliveries > 1 && slices.IndexFunc(calls, func(d delivery) bool { return d.data == g }) > lastBad {
					t.Errorf("%s was handled after the bad message's last delivery; it should not wait behind it", g)
				}
			}

			dl := deadLetters(t, bus)
			if len(dl) != 1 {
				t.Fatalf("dead letters = %d, want 1", len(dl))
			}
			m := dl[0]
			if m.Subject != "deadletter."+durable || string(m.Data) != "bad" {
				t.Errorf("dead letter subject %q data %q, want %q %q", m.Subject, m.Data, "deadletter."+durable, "bad")
			}
			wantHeaders := map[string]string{
				natsx.HeaderDLStream:     "TEST",
				natsx.HeaderDLSubject:    "test.bad",
				natsx.HeaderDLSequence:   "1",
				natsx.HeaderDLConsumer:   durable,
				natsx.HeaderDLDeliveries: strconv.Itoa(tt.wantDeliveries),
				natsx.HeaderDLMsgID:      "evt-bad",
				natsx.HeaderEventType:    "test.Event",
			}
			for k, want := range wantHeaders {
				if got := m.Header.Get(k); got != want {
					t.Errorf("dead letter header %s = %q, want %q", k, got, want)
				}
			}
			if got := m.Header.Get(natsx.HeaderDLError); !strings.Contains(got, "boom") {
				t.Errorf("dead letter header %s = %q, want the handler's error", natsx.HeaderDLError, got)
			}
			if n := logs.count(t, "message dead-lettered"); n != 1 {
				t.Errorf("logged %d dead-letter warnings, want 1", n)
			}
		})
	}
}

func TestConsumeHoldsWhileUnavailable(t *testing.T) {
	storeDown := errs.New(errs.KindUnavailable, "STORE_UNAVAILABLE", "the store is unavailable")
	tests := []struct {
		name string
		err  error
	}{
		{"unavailable kind", fmt.Errorf("save ticket: %w", fmt.Errorf("%w: %w", storeDown, errors.New("connection refused")))},
		{"deadline", fmt.Errorf("save ticket: %w", context.DeadlineExceeded)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const maxDeliver, failures = 2, 5 // fails more times than it may be delivered
			bus, logs := newBus(t)
			publish(t, testContext(t), bus, "held", "next")
			rec := &recorder{result: func(data string, call int) error {
				if data == "held" && call <= failures {
					return tt.err
				}
				return nil
			}}
			consume(t, bus, config(maxDeliver), rec.handle)
			eventually(t, "both messages are handled", func() bool { return len(rec.of("next")) == 1 })
			settled(t, bus)

			held := rec.of("held")
			if len(held) != failures+1 {
				t.Errorf("held handled %d times, want %d", len(held), failures+1)
			}
			for i, c := range held {
				if c.delivered != 1 {
					t.Errorf("held call %d was on delivery %d, want 1: it is retried in place", i+1, c.delivered)
				}
			}
			// The consumer pauses behind the held message: next comes after it.
			if calls := rec.all(); calls[len(calls)-1].data != "next" {
				t.Errorf("calls end with %q, want next handled after held succeeded", calls[len(calls)-1].data)
			}
			if dl := deadLetters(t, bus); len(dl) != 0 {
				t.Errorf("dead letters = %d, want 0", len(dl))
			}
			if n := logs.count(t, "dependency unavailable; holding the message until it is back"); n != 1 {
				t.Errorf("logged %d holding warnings, want 1", n)
			}
		})
	}
}

func TestConsumeDrainsOnCancel(t *testing.T) {
	bus, _ := newBus(t)
	publish(t, testContext(t), bus, "slow")
	started, release := make(chan struct{}), make(chan struct{})
	handled := make(chan error, 1)
	stop := consume(t, bus, config(3), func(ctx context.Context, m jetstream.Msg) error {
		close(started)
		<-release
		handled <- ctx.Err()
		return nil
	})
	<-started

	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("Consume returned %v while a message was being handled", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-handled; err != nil {
		t.Errorf("handler context at shutdown: %v, want it still live", err)
	}
	begin := time.Now()
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Consume() = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Consume did not return within 5s of its last message finishing")
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("Consume took %v to return after draining, want well under its 10s cut-off", took)
	}
	settled(t, bus)
}

// TestConsumeLongOutage stops a consumer in the middle of an outage that
// outlasted several AckWait periods (a redeploy while the store is down),
// then starts it again once the store is back: every message is handled,
// none dropped or dead-lettered, however often the server redelivered them
// meanwhile.
func TestConsumeLongOutage(t *testing.T) {
	bus, _ := newBus(t)
	publish(t, testContext(t), bus, "a", "b", "c", "d")
	storeDown := errs.New(errs.KindUnavailable, "STORE_UNAVAILABLE", "the store is unavailable")
	var up atomic.Bool
	var mu sync.Mutex
	done := map[string]bool{}
	rec := &recorder{result: func(data string, _ int) error {
		if !up.Load() {
			return storeDown
		}
		mu.Lock()
		done[data] = true
		mu.Unlock()
		return nil
	}}
	cfg := config(2)
	cfg.AckWait = 200 * time.Millisecond
	stop := consume(t, bus, cfg, rec.handle)
	time.Sleep(2 * time.Second) // ten AckWait periods: redelivered many times over
	if err := stop(); err != nil {
		t.Fatalf("stopping the consumer: %v", err)
	}
	up.Store(true)
	consume(t, bus, cfg, rec.handle)
	eventually(t, "every message is handled once the store is back", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return done["a"] && done["b"] && done["c"] && done["d"]
	})
	settled(t, bus)
	if dl := deadLetters(t, bus); len(dl) != 0 {
		t.Errorf("dead letters = %d, want 0: an outage is not a failure of the messages", len(dl))
	}
}

// TestConsumeFailureAfterLongOutage: messages that waited through an outage
// were redelivered by the server many times over without ever being
// handled. A failure once the store is back is their first, not their
// last: they are retried, not dead-lettered at once.
func TestConsumeFailureAfterLongOutage(t *testing.T) {
	bus, _ := newBus(t)
	publish(t, testContext(t), bus, "a", "b", "c", "d")
	storeDown := errs.New(errs.KindUnavailable, "STORE_UNAVAILABLE", "the store is unavailable")
	var up atomic.Bool
	var mu sync.Mutex
	failed, done := map[string]bool{}, map[string]bool{}
	rec := &recorder{result: func(data string, _ int) error {
		if !up.Load() {
			return storeDown
		}
		mu.Lock()
		defer mu.Unlock()
		if !failed[data] {
			failed[data] = true // one failure a retry fixes (a conflict, say)
			return errors.New("conflict")
		}
		done[data] = true
		return nil
	}}
	cfg := config(3)
	cfg.AckWait = 200 * time.Millisecond
	stop := consume(t, bus, cfg, rec.handle)
	time.Sleep(2 * time.Second) // ten AckWait periods: redelivered many times over
	if err := stop(); err != nil {
		t.Fatalf("stopping the consumer: %v", err)
	}
	up.Store(true)
	consume(t, bus, cfg, rec.handle)
	eventually(t, "every message is handled or dead-lettered once the store is back", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return done["a"] && done["b"] && done["c"] && done["d"] || len(deadLetters(t, bus)) > 0
	})
	settled(t, bus)
	if dl := deadLetters(t, bus); len(dl) != 0 {
		t.Errorf("dead letters = %d, want 0: each message failed once, and may fail %d times", len(dl), cfg.MaxDeliver)
	}
}

// TestConsumeWorkers: with several workers, one entity's messages are
// handled one at a time in the order they came, while another entity's
// go on beside them: a slow order holds up no other.
func TestConsumeWorkers(t *testing.T) {
	bus, _ := newBus(t)
	ctx := testContext(t)
	// Two entities that land on different workers.
	slow, fast := "s0", ""
	for i := range 100 {
		if name := fmt.Sprintf("f%d", i); natsx.WorkerOf("test."+name, 8) != natsx.WorkerOf("test."+slow, 8) {
			fast = name
			break
		}
	}
	for i := range 5 {
		for _, e := range []string{slow, fast} {
			if _, err := bus.PublishRaw(ctx, "test."+e, fmt.Sprintf("evt-%s-%d", e, i), "test.Event", []byte(fmt.Sprintf("%s-%d", e, i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	release := make(chan struct{})
	var mu sync.Mutex
	var got []string
	cfg := config(3)
	cfg.Workers = 8
	consume(t, bus, cfg, func(_ context.Context, m jetstream.Msg) error {
		if string(m.Data()) == slow+"-0" {
			<-release // the slow entity's first message waits for the fast one
		}
		mu.Lock()
		got = append(got, string(m.Data()))
		mu.Unlock()
		return nil
	})
	of := func(e string) []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, d := range got {
			if strings.HasPrefix(d, e+"-") {
				out = append(out, d)
			}
		}
		return out
	}
	eventually(t, "the fast entity is handled while the slow one waits", func() bool { return len(of(fast)) == 5 })
	if n := len(of(slow)); n != 0 {
		t.Errorf("slow entity handled %d messages before its first finished, want 0", n)
	}
	close(release)
	eventually(t, "the slow entity is handled", func() bool { return len(of(slow)) == 5 })
	for _, e := range []string{slow, fast} {
		want := []string{e + "-0", e + "-1", e + "-2", e + "-3", e + "-4"}
		if got := of(e); !slices.Equal(got, want) {
			t.Errorf("%s handled %v, want %v: one at a time, in order", e, got, want)
		}
	}
}

// TestConsumeDefaultWorkers: unless told otherwise, a consumer handles
// DefaultWorkers messages of different entities at once, so the stores get
// that many concurrent writes to send together.
func TestConsumeDefaultWorkers(t *testing.T) {
	bus, _ := newBus(t)
	ctx := testContext(t)
	// One entity for each worker.
	var entities []string
	taken := map[int]bool{}
	for i := 0; len(entities) < natsx.DefaultWorkers; i++ {
		name := fmt.Sprintf("e%d", i)
		if w := natsx.WorkerOf("test."+name, natsx.DefaultWorkers); !taken[w] {
			taken[w] = true
			entities = append(entities, name)
		}
	}
	for _, e := range entities {
		if _, err := bus.PublishRaw(ctx, "test."+e, "evt-"+e, "test.Event", []byte(e)); err != nil {
			t.Fatal(err)
		}
	}
	release := make(chan struct{})
	var inFlight, most atomic.Int32
	cfg := config(3)
	cfg.Workers = 0
	consume(t, bus, cfg, func(context.Context, jetstream.Msg) error {
		n := inFlight.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		<-release
		inFlight.Add(-1)
		return nil
	})
	defer close(release)
	eventually(t, "every worker holds a message", func() bool { return most.Load() == natsx.DefaultWorkers })
}
