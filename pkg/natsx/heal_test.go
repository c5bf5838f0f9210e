package natsx_test

import (
	"context"
	"os"
	"testing"
	"time"

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
// next, with nothing restarted.
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
	publish(t, ctx, bus, "a")
	eventually(t, "a is handled", func() bool { return len(rec.of("a")) > 0 })

	s.StopNATS()
	if err := os.RemoveAll(s.NATSDir()); err != nil {
		t.Fatal(err)
	}
	if err := s.StartNATS(); err != nil {
		t.Fatalf("StartNATS: %v", err)
	}
	publishEventually(t, bus, "b")
	eventually(t, "b, published after NATS came back empty, is handled", func() bool { return len(rec.of("b")) > 0 })
	settled(t, bus)
	if n := logs.count(t, "consumer lost; declaring it again"); n == 0 {
		t.Error(`no "consumer lost; declaring it again" warning logged`)
	}
}
