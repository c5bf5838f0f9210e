package orderapi

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pizzashop/pizzashop/pkg/auth"
	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/grpcx"
	"github.com/pizzashop/pizzashop/pkg/grpcx/grpcxtest"
	"github.com/pizzashop/pizzashop/pkg/logging"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"github.com/pizzashop/pizzashop/services/order/internal/orderdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// watchEnv is an order service on loopback gRPC, as the service runs it
// (grpcx.NewServer with its default stream limits), with its streams fed by
// a real NATS.
type watchEnv struct {
	srv    *Server
	client orderv1.OrderServiceClient
	nc     *nats.Conn
	signer *auth.Signer
}

func newWatchEnv(t *testing.T) *watchEnv {
	t.Helper()
	_, db := devstack.MongoDatabase(t)
	store := orderdb.New(db)
	if err := store.Init(testContext(t)); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(devstack.NATS(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	signer, err := auth.NewSigner("order-api-test-secret")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(store, fakeMenu{}, noKitchen{}, signer, NATSWatcher{Conn: nc}, logging.Discard(), Options{})
	gs := grpcx.NewServer(logging.Discard(), signer, Policy)
	orderv1.RegisterOrderServiceServer(gs, srv)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	conn := grpcxtest.Serve(t, ctx, &wg, gs)
	return &watchEnv{srv: srv, client: orderv1.NewOrderServiceClient(conn), nc: nc, signer: signer}
}

// as is a context whose calls carry a token for subject with role.
func (e *watchEnv) as(t *testing.T, ctx context.Context, role auth.Role, subject string) context.Context {
	t.Helper()
	tok, _, err := e.signer.Sign(auth.Claims{Subject: subject, Role: role}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// open starts a WatchOrder stream and returns its first message or error.
func (e *watchEnv) open(ctx context.Context, id string) (orderv1.OrderService_WatchOrderClient, *orderv1.WatchOrderResponse, error) {
	st, err := e.client.WatchOrder(ctx, &orderv1.WatchOrderRequest{Id: id})
	if err != nil {
		return nil, nil, err
	}
	m, err := st.Recv()
	return st, m, err
}

// publish sends the event the order service publishes for o, as its relay
// would.
func (e *watchEnv) publish(t *testing.T, o *orderv1.Order) {
	t.Helper()
	data, err := proto.Marshal(&orderv1.OrderStatusChanged{EventId: fmt.Sprintf("ev-%d", o.GetRevision()), Order: o})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Publish("order.accepted."+o.GetId(), data); err != nil {
		t.Fatal(err)
	}
}

// TestWatchOrderSharesReads opens many streams of one order at once: they
// all get the order, their first states come from a few shared store reads
// rather than one each, and a change reaches every one of them.
func TestWatchOrderSharesReads(t *testing.T) {
	e := newWatchEnv(t)
	placed, err := e.srv.CreateOrder(asCustomer(t, "ann", "watch-1"), pickup("margherita"))
	if err != nil {
		t.Fatal(err)
	}
	o := placed.GetOrder()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Another customer learns nothing, not even that the order exists.
	if _, m, err := e.open(e.as(t, ctx, auth.RoleCustomer, "bob"), o.GetId()); status.Code(err) != codes.NotFound {
		t.Fatalf("bob watching ann's order: %v, %v; want NotFound and no message", m, err)
	}
	if _, _, err := e.open(e.as(t, ctx, auth.RoleCustomer, "ann"), "not an id"); status.Code(err) != codes.NotFound {
		t.Fatalf("watching a malformed id: %v, want NotFound", err)
	}

	// The owner's streams (her cap) and staff's, 16 each, all at once.
	callers := []context.Context{e.as(t, ctx, auth.RoleCustomer, "ann")}
	for i := range 15 {
		callers = append(callers, e.as(t, ctx, auth.RoleKitchen, fmt.Sprintf("cook-%d", i)))
	}
	before := e.srv.watches.reads.Load()
	var (
		mu      sync.Mutex
		streams []orderv1.OrderService_WatchOrderClient
		wg      sync.WaitGroup
	)
	for _, c := range callers {
		for range grpcx.DefaultStreamsPerCaller {
			wg.Go(func() {
				st, m, err := e.open(c, o.GetId())
				if err != nil || m.GetOrder().GetId() != o.GetId() || m.GetOrder().GetRevision() != o.GetRevision() {
					t.Errorf("first message: %v, %v; want the order at revision %d", m, err, o.GetRevision())
					return
				}
				mu.Lock()
				streams = append(streams, st)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	n := len(streams)
	reads := e.srv.watches.reads.Load() - before
	t.Logf("%d streams opened at once read the store %d times", n, reads)
	if want := len(callers) * grpcx.DefaultStreamsPerCaller; n != want {
		t.Fatalf("%d streams open, want %d", n, want)
	}
	if reads > int64(n/4) {
		t.Errorf("%d streams opened at once made %d store reads, want them shared (at most %d)", n, reads, n/4)
	}

	// One more of ann's: refused, her cap is full.
	if _, _, err := e.open(callers[0], o.GetId()); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("stream %d of one caller: %v, want ResourceExhausted", grpcx.DefaultStreamsPerCaller+1, err)
	}

	// A change reaches every stream.
	changed := proto.Clone(o).(*orderv1.Order)
	changed.Status = orderv1.OrderStatus_ORDER_STATUS_ACCEPTED
	changed.Revision = o.GetRevision() + 1
	e.publish(t, changed)
	for i, st := range streams {
		m, err := st.Recv()
		if err != nil || m.GetOrder().GetRevision() != changed.GetRevision() || m.GetOrder().GetStatus() != orderv1.OrderStatus_ORDER_STATUS_ACCEPTED {
			t.Fatalf("stream %d after the change: %v, %v; want the order accepted at revision %d", i, m, err, changed.GetRevision())
		}
	}
}

// TestWatchOrderBoundedInTotal opens more streams than one process allows,
// from callers each within their own cap: exactly grpcx.DefaultStreams
// open, the rest are refused, and other calls are still served meanwhile.
func TestWatchOrderBoundedInTotal(t *testing.T) {
	if testing.Short() {
		t.Skip("opens a thousand streams")
	}
	e := newWatchEnv(t)
	placed, err := e.srv.CreateOrder(asCustomer(t, "ann", "watch-total"), pickup("margherita"))
	if err != nil {
		t.Fatal(err)
	}
	id := placed.GetOrder().GetId()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const extra = 8
	staff := (grpcx.DefaultStreams + extra) / grpcx.DefaultStreamsPerCaller
	var (
		mu              sync.Mutex
		opened, refused int
		other           []error
		wg              sync.WaitGroup
	)
	before := e.srv.watches.reads.Load()
	for i := range staff {
		c := e.as(t, ctx, auth.RoleCourier, fmt.Sprintf("courier-%d", i))
		for range grpcx.DefaultStreamsPerCaller {
			wg.Go(func() {
				_, _, err := e.open(c, id)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					opened++
				case status.Code(err) == codes.ResourceExhausted && strings.Contains(err.Error(), "on this server"):
					refused++
				default:
					other = append(other, err)
				}
			})
		}
	}
	wg.Wait()
	reads := e.srv.watches.reads.Load() - before
	if len(other) > 0 {
		t.Fatalf("%d streams failed otherwise, first: %v", len(other), other[0])
	}
	total := staff * grpcx.DefaultStreamsPerCaller
	if opened != grpcx.DefaultStreams || refused != total-grpcx.DefaultStreams {
		t.Errorf("%d streams asked for: %d open, %d refused; want %d and %d", total, opened, refused, grpcx.DefaultStreams, total-grpcx.DefaultStreams)
	}
	t.Logf("%d streams asked for: %d open, %d refused, %d store reads for them", total, opened, refused, reads)
	if reads > int64(opened/4) {
		t.Errorf("%d streams made %d store reads, want them shared (at most %d)", opened, reads, opened/4)
	}

	// The customer's own calls still work with the process full of streams.
	begin := time.Now()
	got, err := e.client.GetOrder(e.as(t, ctx, auth.RoleCustomer, "ann"), &orderv1.GetOrderRequest{Id: id})
	if err != nil || got.GetOrder().GetId() != id {
		t.Fatalf("GetOrder with %d streams open: %v, %v", opened, got, err)
	}
	t.Logf("GetOrder with %d streams open: %s", opened, time.Since(begin).Round(time.Microsecond))
}
