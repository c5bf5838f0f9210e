package outbox_test

import (
	"context"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/logging"
	"github.com/pizzashop/pizzashop/pkg/natsx"
	"github.com/pizzashop/pizzashop/pkg/outbox"
)

// TestRelayDeclaresDeletedStream: an operator deletes the stream while a
// relay runs. The relay's publishes find no stream; it declares the
// stream again and what is written afterwards is stored.
func TestRelayDeclaresDeletedStream(t *testing.T) {
	colls := newColls(t, 1)
	ctx := testContext(t)
	bus, stream := newBus(t)
	relay := outbox.NewRelay(bus, logging.Discard(), colls)
	runRelay(t, relay)
	insertEvents(t, colls[0], relay, "d1", newEntry(t, ctx, "evt.d1", "e1"))
	waitFor(t, "e1 stored", func() bool { return slices.Contains(published(t, stream), "e1") })

	if err := bus.JS.DeleteStream(ctx, eventStream.Name); err != nil {
		t.Fatalf("DeleteStream: %v", err)
	}
	insertEvents(t, colls[0], relay, "d2", newEntry(t, ctx, "evt.d2", "e2"))
	waitFor(t, "e2, written after the stream was deleted, stored", func() bool {
		if _, err := bus.JS.Stream(ctx, eventStream.Name); err != nil {
			return false
		}
		return slices.Contains(published(t, stream), "e2")
	})
}

// TestRelayAndConsumerAfterFreshServer: NATS comes back without its
// storage (a pod restarted on an emptyDir) while one process publishes
// through its relay into the stream it owns and another consumes it. The
// relay declares the stream again, the consumer declares itself again once
// the stream is back, and events written afterwards are stored and
// consumed with nothing restarted.
func TestRelayAndConsumerAfterFreshServer(t *testing.T) {
	s, err := devstack.Start(context.Background(), devstack.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	connect := func(name string) *natsx.Bus {
		b, err := natsx.Connect(s.NATSURL(), name, logging.Discard())
		if err != nil {
			t.Fatalf("natsx.Connect: %v", err)
		}
		t.Cleanup(b.Close)
		return b
	}
	ctx := testContext(t)
	owner := connect("owner") // declares the stream, as its service does
	if err := owner.EnsureStream(ctx, eventStream); err != nil {
		t.Fatalf("EnsureStream: %v", err)
	}
	reader := connect("reader") // another service: consumes, declares nothing

	var mu sync.Mutex
	var seen []string
	cctx, stopConsumer := context.WithCancel(context.Background())
	consumed := make(chan error, 1)
	go func() {
		consumed <- reader.Consume(cctx, natsx.ConsumerConfig{Stream: eventStream.Name, Durable: "reader", Workers: 1},
			func(_ context.Context, m jetstream.Msg) error {
				mu.Lock()
				defer mu.Unlock()
				seen = append(seen, m.Headers().Get(jetstream.MsgIDHeader))
				return nil
			})
	}()
	t.Cleanup(func() { stopConsumer(); <-consumed }) // before the buses close
	consumedID := func(id string) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			return slices.Contains(seen, id)
		}
	}

	colls := newColls(t, 1)
	relay := outbox.NewRelay(owner, logging.Discard(), colls)
	runRelay(t, relay)
	insertEvents(t, colls[0], relay, "d1", newEntry(t, ctx, "evt.d1", "e1"))
	waitFor(t, "e1 consumed", consumedID("e1"))

	s.StopNATS()
	if err := os.RemoveAll(s.NATSDir()); err != nil {
		t.Fatal(err)
	}
	if err := s.StartNATS(); err != nil {
		t.Fatalf("StartNATS: %v", err)
	}
	insertEvents(t, colls[0], relay, "d2", newEntry(t, ctx, "evt.d2", "e2"))
	waitFor(t, "e2, written after NATS came back empty, consumed", consumedID("e2"))
}
