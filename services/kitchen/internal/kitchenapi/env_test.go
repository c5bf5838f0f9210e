package kitchenapi_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pizzashop/pizzashop/pkg/auth"
	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/grpcx"
	"github.com/pizzashop/pizzashop/pkg/grpcx/grpcxtest"
	"github.com/pizzashop/pizzashop/pkg/logging"
	"github.com/pizzashop/pizzashop/pkg/natsx"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	"github.com/pizzashop/pizzashop/services/kitchen/internal/kitchen"
	"github.com/pizzashop/pizzashop/services/kitchen/internal/kitchenapi"
	"github.com/pizzashop/pizzashop/services/kitchen/internal/kitchendb"
	"google.golang.org/grpc/metadata"
)

const secret = "test-secret-at-least-16"

// env is a kitchen service on loopback gRPC over a real store, with its
// outbox relay publishing to a real JetStream, wired as main wires it.
type env struct {
	client kitchenv1.KitchenServiceClient
	signer *auth.Signer
	store  *kitchendb.Store
	srv    *kitchenapi.Server
	bus    *natsx.Bus
	relay  *outbox.Relay
	// events is the kitchen's subscription to ticket events; while held
	// is set, its handler holds them (holdEvents).
	events *nats.Subscription
	held   *atomic.Pointer[eventHold]

	ctx context.Context // ends when the test does
	wg  *sync.WaitGroup
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	_, db := devstack.MongoDatabase(t)
	store := kitchendb.New(db)
	if err := store.Init(ctx); err != nil {
		t.Fatalf("Init: %v", err)
	}
	bus, err := natsx.Connect(devstack.NATS(t), "kitchenapi-test", logging.Discard())
	if err != nil {
		t.Fatalf("natsx.Connect: %v", err)
	}
	t.Cleanup(bus.Close)
	if err := bus.EnsureStream(ctx, kitchenapi.Stream); err != nil {
		t.Fatalf("EnsureStream: %v", err)
	}
	relay := outbox.NewRelay(bus, logging.Discard(), store.Collections())
	store.Tracker = relay
	wg.Go(func() { _ = relay.Run(ctx) })

	signer, err := auth.NewSigner(secret)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	srv := kitchenapi.NewServer(store, logging.Discard(), kitchenapi.Options{BakeTime: 8 * time.Minute, Ovens: 2})
	bus.OnMissed(srv.QueueStale)
	var held atomic.Pointer[eventHold]
	sub, err := bus.Conn.Subscribe("kitchen.*.*", func(m *nats.Msg) {
		if h := held.Load(); h != nil {
			h.holding.Store(true)
			<-h.release
		}
		srv.TicketChanged(m.Data)
	})
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	gs := grpcx.NewServer(logging.Discard(), signer, kitchenapi.Policy)
	kitchenv1.RegisterKitchenServiceServer(gs, srv)
	conn := grpcxtest.Serve(t, ctx, &wg, gs)
	// Stop the consumers, relay and server before the bus, NATS and the
	// store go: cleanups run last registered first.
	t.Cleanup(func() { cancel(); wg.Wait() })
	return &env{client: kitchenv1.NewKitchenServiceClient(conn), signer: signer, store: store, srv: srv, bus: bus, relay: relay, events: sub, held: &held, ctx: ctx, wg: &wg}
}

// eventHold is a hold on the ticket events the kitchen's queue applies.
type eventHold struct {
	holding atomic.Bool // the subscription's handler holds an event
	release chan struct{}
}

// holdEvents stops the kitchen's queue from applying the ticket events it
// gets, as a busy handler or another replica's NATS hop would, until
// release. wait(n) returns once the kitchen has n events held: the first
// in its subscription's handler, the others queued behind it.
func (e *env) holdEvents(t *testing.T) (wait func(n int), release func()) {
	h := &eventHold{release: make(chan struct{})}
	e.held.Store(h)
	release = sync.OnceFunc(func() {
		e.held.Store(nil)
		close(h.release)
	})
	t.Cleanup(release)
	wait = func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			queued, _, err := e.events.Pending()
			if err != nil {
				t.Fatalf("Pending: %v", err)
			}
			if h.holding.Load() && 1+queued >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the kitchen did not get %d ticket events within 10s", n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return wait, release
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// as returns a context whose calls carry a token for subject with role.
func (e *env) as(t *testing.T, role auth.Role, subject string) context.Context {
	t.Helper()
	tok, _, err := e.signer.Sign(auth.Claims{Subject: subject, Role: role}, time.Hour)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return metadata.AppendToOutgoingContext(testContext(t), "authorization", "Bearer "+tok)
}

func (e *env) cook(t *testing.T) context.Context { return e.as(t, auth.RoleKitchen, "cook-kim") }

var orderAt = time.Date(2026, 3, 14, 18, 30, 0, 0, time.UTC)

// seed stores a queued ticket ordered min minutes after orderAt, with no
// event: as if it was made while this kitchen heard nothing.
func (e *env) seed(t *testing.T, id string, min int) kitchen.Ticket {
	t.Helper()
	at := orderAt.Add(time.Duration(min) * time.Minute)
	tk := kitchen.New(kitchen.Ticket{ID: id, PizzaName: "Margherita", Size: 2, Fulfillment: 1, OrderTime: at}, at, at.Add(8*time.Minute))
	if ok, err := e.store.Insert(testContext(t), tk); !ok || err != nil {
		t.Fatalf("Insert(%s) = %v, %v", id, ok, err)
	}
	return tk
}

// madeNow stores a ticket made now with the event of its making in its
// outbox, as a replica does when an order comes in: the relay publishes it.
func (e *env) madeNow(t *testing.T, ctx context.Context, id string) kitchen.Ticket {
	t.Helper()
	now := time.Now()
	tk := kitchen.New(kitchen.Ticket{ID: id, PizzaName: "Funghi", Size: 1, Fulfillment: 1, OrderTime: now}, now, now.Add(8*time.Minute))
	ev, err := kitchenapi.TicketEvent(ctx, tk)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := e.store.Insert(ctx, tk, ev); !ok || err != nil {
		t.Fatalf("Insert(%s) = %v, %v", id, ok, err)
	}
	return tk
}

// watch is an open WatchTickets stream whose messages arrive on msgs.
type watch struct {
	msgs chan *kitchenv1.WatchTicketsResponse
	errc chan error
}

func (e *env) watch(t *testing.T, ctx context.Context) *watch {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	st, err := e.client.WatchTickets(ctx, &kitchenv1.WatchTicketsRequest{})
	if err != nil {
		t.Fatalf("WatchTickets: %v", err)
	}
	w := &watch{msgs: make(chan *kitchenv1.WatchTicketsResponse, 100), errc: make(chan error, 1)}
	go func() {
		for {
			m, err := st.Recv()
			if err != nil {
				w.errc <- err
				return
			}
			w.msgs <- m
		}
	}()
	return w
}

// next returns the next message that is not a keep-alive, failing t if none
// comes within wait.
func (w *watch) next(t *testing.T, wait time.Duration) *kitchenv1.WatchTicketsResponse {
	t.Helper()
	m := w.within(t, wait)
	if m == nil {
		t.Fatalf("no watch message within %v", wait)
	}
	return m
}

// within returns the next message that is not a keep-alive, or nil if none
// comes within wait.
func (w *watch) within(t *testing.T, wait time.Duration) *kitchenv1.WatchTicketsResponse {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case m := <-w.msgs:
			if m.GetTicket() == nil && !m.GetSnapshotComplete() {
				continue
			}
			return m
		case err := <-w.errc:
			t.Fatalf("watch ended: %v", err)
		case <-deadline:
			return nil
		}
	}
}

// expect fails t unless the next messages, as says describes them, are
// want, each within 10 s.
func (w *watch) expect(t *testing.T, want ...string) {
	t.Helper()
	for i, wt := range want {
		if got := says(w.next(t, 10*time.Second)); got != wt {
			t.Fatalf("display message %d = %s, want %s", i+1, got, wt)
		}
	}
}

// says describes a message as id, status, revision and whether it is part
// of the snapshot.
func says(m *kitchenv1.WatchTicketsResponse) string {
	if m.GetSnapshotComplete() {
		return "snapshot complete"
	}
	tk := m.GetTicket()
	s := fmt.Sprintf("%s %s @%d", tk.GetId(), tk.GetStatus(), tk.GetRevision())
	if m.GetSnapshot() {
		s += " snapshot"
	}
	return s
}
