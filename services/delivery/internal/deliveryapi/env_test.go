package deliveryapi_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/auth"
	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/grpcx"
	"github.com/pizzashop/pizzashop/pkg/grpcx/grpcxtest"
	"github.com/pizzashop/pizzashop/pkg/logging"
	"github.com/pizzashop/pizzashop/pkg/natsx"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	deliveryv1 "github.com/pizzashop/pizzashop/proto/pizzashop/delivery/v1"
	"github.com/pizzashop/pizzashop/services/delivery/internal/delivery"
	"github.com/pizzashop/pizzashop/services/delivery/internal/deliveryapi"
	"github.com/pizzashop/pizzashop/services/delivery/internal/deliverydb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const secret = "test-secret-at-least-16"

// env is a delivery service on loopback gRPC over a real store, with its
// outbox relay publishing to a real JetStream.
type env struct {
	client deliveryv1.DeliveryServiceClient
	signer *auth.Signer
	store  *deliverydb.Store
	srv    *deliveryapi.Server
	bus    *natsx.Bus
	stream jetstream.Stream // DELIVERY
	relay  *outbox.Relay

	ctx context.Context // ends when the test does
	wg  *sync.WaitGroup
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	_, db := devstack.MongoDatabase(t)
	store := deliverydb.New(db)
	if err := store.Init(ctx); err != nil {
		t.Fatalf("Init: %v", err)
	}

	bus, err := natsx.Connect(devstack.NATS(t), "deliveryapi-test", logging.Discard())
	if err != nil {
		t.Fatalf("natsx.Connect: %v", err)
	}
	t.Cleanup(bus.Close)
	if err := bus.EnsureStream(ctx, deliveryapi.Stream); err != nil {
		t.Fatalf("EnsureStream: %v", err)
	}
	stream, err := bus.JS.Stream(ctx, deliveryapi.Stream.Name)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	relay := outbox.NewRelay(bus, logging.Discard(), store.Collections())
	store.Tracker = relay
	wg.Go(func() { _ = relay.Run(ctx) })

	signer, err := auth.NewSigner(secret)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	srv := deliveryapi.NewServer(store, bus.Conn, logging.Discard())
	gs := grpcx.NewServer(logging.Discard(), signer, deliveryapi.Policy)
	deliveryv1.RegisterDeliveryServiceServer(gs, srv)
	conn := grpcxtest.Serve(t, ctx, &wg, gs)

	// Stop the streams, consumers, relay and server before the bus, NATS
	// and the store go: cleanups run last registered first.
	t.Cleanup(func() { srv.EndWatches(); cancel(); wg.Wait() })

	return &env{client: deliveryv1.NewDeliveryServiceClient(conn), signer: signer, store: store, srv: srv, relay: relay,
		bus: bus, stream: stream, ctx: ctx, wg: &wg}
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

func (e *env) courier(t *testing.T) context.Context { return e.as(t, auth.RoleCourier, "courier-ann") }

var readyAt = time.Date(2025, 3, 14, 18, 30, 0, 0, time.UTC)

// seed stores a waiting delivery that became ready min minutes after
// readyAt.
func (e *env) seed(t *testing.T, id string, f delivery.Fulfillment, min int) delivery.Delivery {
	t.Helper()
	h := delivery.Handover{
		Fulfillment: f, CustomerName: "Customer " + id, CustomerPhone: "+39 06 555 0101",
		Summary: "Small Funghi", AmountDue: delivery.Money{AmountMinor: 1000, Currency: "EUR"}, Payment: delivery.PaymentCard,
	}
	if f == delivery.FulfillmentDelivery {
		h.Address = &delivery.Address{Line1: "Via Roma 1", City: "Napoli", PostalCode: "80100"}
	}
	ready := readyAt.Add(time.Duration(min) * time.Minute)
	d, err := delivery.New(id, h, ready, ready)
	if err != nil {
		t.Fatalf("New(%s): %v", id, err)
	}
	if ok, err := e.store.Insert(testContext(t), d); !ok || err != nil {
		t.Fatalf("Insert(%s) = %v, %v", id, ok, err)
	}
	return d
}

// published returns the events in the DELIVERY stream.
func (e *env) published(t *testing.T) []*deliveryv1.DeliveryStatusChanged {
	t.Helper()
	ctx := testContext(t)
	info, err := e.stream.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	var out []*deliveryv1.DeliveryStatusChanged
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := e.stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("GetMsg(%d): %v", seq, err)
		}
		ev := &deliveryv1.DeliveryStatusChanged{}
		if err := proto.Unmarshal(m.Data, ev); err != nil {
			t.Fatalf("message %d is not a DeliveryStatusChanged: %v", seq, err)
		}
		if id := m.Header.Get(jetstream.MsgIDHeader); id != ev.GetEventId() || id == "" {
			t.Errorf("message %d has Nats-Msg-Id %q, want its event id %q", seq, id, ev.GetEventId())
		}
		want := deliveryapi.Subject(delivery.Status(ev.GetStatus()), ev.GetDelivery().GetId())
		if m.Subject != want {
			t.Errorf("message %d subject = %q, want %q", seq, m.Subject, want)
		}
		out = append(out, ev)
	}
	return out
}

// waitPublished waits until the DELIVERY stream holds an event on each of
// subjects, and returns all its events.
func (e *env) waitPublished(t *testing.T, subjects ...string) []*deliveryv1.DeliveryStatusChanged {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs := e.published(t)
		have := map[string]bool{}
		for _, ev := range evs {
			have[deliveryapi.Subject(delivery.Status(ev.GetStatus()), ev.GetDelivery().GetId())] = true
		}
		missing := []string{}
		for _, s := range subjects {
			if !have[s] {
				missing = append(missing, s)
			}
		}
		if len(missing) == 0 {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event on %s within 10s", strings.Join(missing, ", "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFlushed waits until the relay has published every event of the
// writes so far.
func (e *env) waitFlushed(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.relay.Pending() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes still unpublished after 10s", e.relay.Pending())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkCode fails t unless err is a status with code want, and with reason
// reason when that is not empty.
func checkCode(t *testing.T, call string, err error, want codes.Code, reason string) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: code = %v, want %v (err: %v)", call, got, want, err)
		return
	}
	if reason != "" {
		if got := grpcx.Reason(err); got != reason {
			t.Errorf("%s: reason = %q, want %q (err: %v)", call, got, reason, err)
		}
	}
}
