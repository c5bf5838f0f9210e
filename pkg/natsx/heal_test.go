package natsx_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/natsx"
)

// publishEventually publishes data, retrying while JetStream refuses it
// (no stream holds the subject yet), and fails the test after 10 s.
func publishEventually(t *testing.T, bus *natsx.Bus, data string) {
	t.Helper()
	var err error
	eventually(t, "message "+data+" is stored", func() bool {
		ctx, cancel := context.WithTimeout(testContext(t), time.Second)
		defer cancel()
		_, err = bus.PublishRaw(ctx, "test."+data, "evt-"+data, "test.Event", []byte(data))
		if err != nil {
			time.Sleep(50 * time.Millisecond)
		}
		return err == nil
	})
}

// TestConsumeRecreatesDeletedConsumer: an operator deletes the durable
// consumer while it runs. Consume declares it again and goes on; messages
// published afterwards are handled without a restart.
func TestConsumeRecreatesDeletedConsumer(t *testing.T) {
	bus, logs := newBus(t)
	ctx := testContext(t)
	rec := &recorder{}
	consume(t, bus, config(3), rec.handle)
	publish(t, ctx, bus, "a")
	eventually(t, "a is handled", func() bool { return len(rec.of("a")) > 0 })

	if err := bus.JS.DeleteConsumer(ctx, testStream.Name, durable); err != nil {
		t.Fatalf("DeleteConsumer: %v", err)
	}
	publish(t, ctx, bus, "b")
	eventually(t, "b, published after the consumer was deleted, is handled", func() bool { return len(rec.of("b")) > 0 })
	settled(t, bus)
	if n := logs.count(t, "consumer lost; declaring it again"); n == 0 {
		t.Error(`no "consumer lost; declaring it again" warning logged`)
	}
}

// TestConsumeRecreatesDeletedStream: an operator deletes the stream, and
// with it the consumer. Consume declares both again, as this process
// declared the stream; messages published afterwards are stored and
// handled.
func TestConsumeRecreatesDeletedStream(t *testing.T) {
	bus, _ := newBus(t)
	ctx := testContext(t)
	rec := &recorder{}
	consume(t, bus, config(3), rec.handle)
	publish(t, ctx, bus, "a")
	eventually(t, "a is handled", func() bool { return len(rec.of("a")) > 0 })

	if err := bus.JS.DeleteStream(ctx, testStream.Name); err != nil {
		t.Fatalf("DeleteStream: %v", err)
	}
	publishEventually(t, bus, "b")
	eventually(t, "b, published after the stream was deleted, is handled", func() bool { return len(rec.of("b")) > 0 })
	settled(t, bus)
}

// TestConsumeAfterFreshServer: NATS comes back without its storage (a pod
// restarted on an emptyDir): no stream, no consumer. The consumer notices,
// declares its stream and itself again, and handles what is published
// next, with nothing restarted. The stream numbers its messages from 1
// again, so the consumer starts at its first message, not after the last
// one it handled before: more messages than that are published to the new
// stream before the consumer is likely back, and none is skipped.
func TestConsumeAfterFreshServer(t *testing.T) {
	s, err := devstack.Start(context.Background(), devstack.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	logs := &logBuffer{}
	bus, err := natsx.Connect(s.NATSURL(), t.Name(), newLogger(logs))
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	ctx := testContext(t)
	if err := bus.EnsureStream(ctx, testStream); err != nil {
		t.Fatalf("EnsureStream: %v", err)
	}
	rec := &recorder{}
	stop := consume(t, bus, config(3), rec.handle)
	defer func() { _ = stop() }()
	publish(t, ctx, bus, "a1", "a2", "a3")
	eventually(t, "the first messages are handled", func() bool { return len(rec.of("a3")) > 0 })

	s.StopNATS()
	if err := os.RemoveAll(s.NATSDir()); err != nil {
		t.Fatal(err)
	}
	if err := s.StartNATS(); err != nil {
		t.Fatalf("StartNATS: %v", err)
	}
	if err := bus.EnsureStream(ctx, testStream); err != nil {
		t.Fatalf("EnsureStream: %v", err)
	}
	after := []string{"b1", "b2", "b3", "b4", "b5"}
	for _, d := range after {
		publishEventually(t, bus, d)
	}
	eventually(t, "the messages published after NATS came back empty are handled", func() bool {
		for _, d := range after {
			if len(rec.of(d)) == 0 {
				return false
			}
		}
		return true
	})
	settled(t, bus)
	if n := logs.count(t, "consumer lost; declaring it again"); n == 0 {
		t.Error(`no "consumer lost; declaring it again" warning logged`)
	}
}

// handledOnce fails the test unless each of data was handled exactly once.
func handledOnce(t *testing.T, rec *recorder, data ...string) {
	t.Helper()
	for _, d := range data {
		if n := len(rec.of(d)); n != 1 {
			t.Errorf("%s handled %d times, want 1", d, n)
		}
	}
}

// TestConsumeResumesAfterDeletedConsumer: an operator deletes the durable
// consumer while its stream keeps its messages. Consume declares it again
// after the last message it finished, not from the start of the stream:
// what it handled is not handled again, and what was published meanwhile
// is handled once. A process that starts later takes the consumer as it is.
func TestConsumeResumesAfterDeletedConsumer(t *testing.T) {
	bus, logs := newBus(t)
	ctx := testContext(t)
	rec := &recorder{}
	stop := consume(t, bus, config(3), rec.handle)
	before := []string{"a1", "a2", "a3", "a4", "a5"}
	publish(t, ctx, bus, before...)
	eventually(t, "the first messages are handled", func() bool { return len(rec.of("a5")) > 0 })
	settled(t, bus)

	if err := bus.JS.DeleteConsumer(ctx, testStream.Name, durable); err != nil {
		t.Fatalf("DeleteConsumer: %v", err)
	}
	after := []string{"b1", "b2", "b3"}
	publish(t, ctx, bus, after...)
	eventually(t, "the messages published after the consumer was deleted are handled", func() bool { return len(rec.of("b3")) > 0 })
	settled(t, bus)
	time.Sleep(50 * time.Millisecond) // room for a wrong extra delivery
	handledOnce(t, rec, append(before, after...)...)
	if info := consumerInfo(t, bus); info.Config.DeliverPolicy != jetstream.DeliverByStartSequencePolicy || info.Config.OptStartSeq != 6 {
		t.Errorf("consumer declared again with deliver policy %v from %d, want by start sequence from 6", info.Config.DeliverPolicy, info.Config.OptStartSeq)
	}
	if n := logs.count(t, "consumer declared again after the last message it finished"); n != 1 {
		t.Errorf("logged %d resumes, want 1", n)
	}

	// The next process declares the consumer as it stands: NATS refuses
	// to change its start.
	if err := stop(); err != nil {
		t.Fatalf("stopping the consumer: %v", err)
	}
	publish(t, ctx, bus, "c1")
	consume(t, bus, config(3), rec.handle)
	eventually(t, "c1 is handled by the next process", func() bool { return len(rec.of("c1")) > 0 })
	settled(t, bus)
	handledOnce(t, rec, append(append(before, after...), "c1")...)
}

// TestConsumeRedeliversUnfinishedAfterDeletedConsumer: a message that kept
// failing was not acknowledged when the consumer was deleted. The consumer
// declared again starts at it, not after the messages that came after it
// and were handled, so it is handled once it can be.
func TestConsumeRedeliversUnfinishedAfterDeletedConsumer(t *testing.T) {
	bus, _ := newBus(t)
	ctx := testContext(t)
	// stuck fails at every delivery of the consumer that first had it,
	// and succeeds at the first of the consumer declared again.
	var done atomic.Bool
	rec := &recorder{}
	rec.result = func(data string, call int) error {
		if data != "stuck" {
			return nil
		}
		if calls := rec.of("stuck"); call > 1 && calls[len(calls)-1].delivered == 1 {
			done.Store(true)
			return nil
		}
		return errors.New("not yet")
	}
	consume(t, bus, config(1000), rec.handle)
	publish(t, ctx, bus, "a", "stuck", "c")
	eventually(t, "c is handled while stuck keeps failing", func() bool { return len(rec.of("c")) > 0 && len(rec.of("stuck")) > 1 })

	if err := bus.JS.DeleteConsumer(ctx, testStream.Name, durable); err != nil {
		t.Fatalf("DeleteConsumer: %v", err)
	}
	publish(t, ctx, bus, "d")
	eventually(t, "stuck and d are handled after the consumer is declared again", func() bool {
		return len(rec.of("d")) > 0 && done.Load()
	})
	settled(t, bus)
	handledOnce(t, rec, "a", "d")
	if info := consumerInfo(t, bus); info.Config.OptStartSeq != 2 {
		t.Errorf("consumer declared again from %d, want 2, the unfinished message", info.Config.OptStartSeq)
	}
	if dl := deadLetters(t, bus); len(dl) != 0 {
		t.Errorf("dead letters = %d, want 0", len(dl))
	}
}

// TestConsumeReplicasAfterDeletedConsumer: two replicas share the durable
// consumer. One fails a message and stops before its retry; the other
// handles what comes next, and is alone when the consumer is deleted. It
// never saw the failed message, so it declares the consumer again no later
// than the server's ack floor, which is below that message, not after the
// last message it finished itself, and the message is handled.
func TestConsumeReplicasAfterDeletedConsumer(t *testing.T) {
	natsx.SetFloorSample(t, 50*time.Millisecond)
	bus, _ := newBus(t)
	other, err := natsx.Connect(bus.Conn.ConnectedUrl(), t.Name()+"-2", newLogger(&logBuffer{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	ctx := testContext(t)
	// stuck fails at its first delivery, which is retried in a minute, and
	// succeeds at any after that.
	var mu sync.Mutex
	holder, stuck := -1, 0
	handler := func(replica int) natsx.Handler {
		return func(_ context.Context, m jetstream.Msg) error {
			mu.Lock()
			defer mu.Unlock()
			if string(m.Data()) != "stuck" {
				return nil
			}
			stuck++
			if stuck == 1 {
				holder = replica
				return errors.New("not yet")
			}
			return nil
		}
	}
	rec := &recorder{}
	cfg := config(3)
	cfg.Backoff = []time.Duration{time.Minute}
	both := func(replica int) natsx.Handler {
		h := handler(replica)
		return func(ctx context.Context, m jetstream.Msg) error {
			_ = rec.handle(ctx, m)
			return h(ctx, m)
		}
	}
	stops := []func() error{consume(t, bus, cfg, both(0)), consume(t, other, cfg, both(1))}
	eventually(t, "both replicas pull", func() bool {
		c, err := bus.JS.Consumer(ctx, testStream.Name, durable)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumWaiting >= 2
	})
	data := []string{"a", "stuck"}
	for i := range 20 {
		data = append(data, fmt.Sprintf("x%d", i))
	}
	publish(t, ctx, bus, data...)
	handled := func(data ...string) func() bool {
		return func() bool {
			for _, d := range data {
				if len(rec.of(d)) == 0 {
					return false
				}
			}
			return true
		}
	}
	eventually(t, "every message is handled or failed", handled(data...))
	mu.Lock()
	h := holder
	mu.Unlock()
	if err := stops[h](); err != nil {
		t.Fatalf("stopping replica %d: %v", h, err)
	}
	// The replica left is given what comes next.
	later := []string{"y1", "y2", "y3"}
	publish(t, ctx, bus, later...)
	eventually(t, "the replica left handles the later messages", handled(later...))
	time.Sleep(200 * time.Millisecond) // a few samples of the server's floor

	if err := bus.JS.DeleteConsumer(ctx, testStream.Name, durable); err != nil {
		t.Fatalf("DeleteConsumer: %v", err)
	}
	publish(t, ctx, bus, "d")
	eventually(t, "stuck and d are handled after the consumer is declared again", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return stuck > 1 && len(rec.of("d")) > 0
	})
	if info := consumerInfo(t, bus); info.Config.DeliverPolicy != jetstream.DeliverByStartSequencePolicy || info.Config.OptStartSeq != 2 {
		t.Errorf("consumer declared again with deliver policy %v from %d, want by start sequence from 2, the unfinished message", info.Config.DeliverPolicy, info.Config.OptStartSeq)
	}
}
