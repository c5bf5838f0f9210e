package grpcx_test

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/auth"
	"github.com/pizzashop/pizzashop/pkg/errs"
	"github.com/pizzashop/pizzashop/pkg/grpcx"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// menuStub lets each test decide what GetMenu and PriceOrder do.
type menuStub struct {
	menuv1.UnimplementedMenuServiceServer
	getMenu    func(context.Context) error
	priceOrder func(context.Context) error
}

func (m *menuStub) GetMenu(ctx context.Context, _ *menuv1.GetMenuRequest) (*menuv1.GetMenuResponse, error) {
	if err := m.getMenu(ctx); err != nil {
		return nil, err
	}
	return &menuv1.GetMenuResponse{}, nil
}

func (m *menuStub) PriceOrder(ctx context.Context, _ *menuv1.PriceOrderRequest) (*menuv1.PriceOrderResponse, error) {
	if err := m.priceOrder(ctx); err != nil {
		return nil, err
	}
	return &menuv1.PriceOrderResponse{}, nil
}

// orderStub's WatchOrder is a live stream: it sends one update and then
// waits for the call to end.
type orderStub struct {
	orderv1.UnimplementedOrderServiceServer
	watching chan struct{}
	panics   bool
}

func (o *orderStub) WatchOrder(_ *orderv1.WatchOrderRequest, ss grpc.ServerStreamingServer[orderv1.WatchOrderResponse]) error {
	if o.panics {
		panic("watch exploded")
	}
	if err := ss.Send(&orderv1.WatchOrderResponse{}); err != nil {
		return err
	}
	o.watching <- struct{}{}
	<-ss.Context().Done()
	return ss.Context().Err()
}

var policy = auth.Policy{
	menuv1.MenuService_GetMenu_FullMethodName:      auth.Anyone,
	menuv1.MenuService_PriceOrder_FullMethodName:   auth.Anyone,
	orderv1.OrderService_WatchOrder_FullMethodName: auth.Authenticated,
}

type env struct {
	srv    *grpcx.Server
	menu   *menuStub
	order  *orderStub
	logs   *logBuffer
	signer *auth.Signer
	addr   string
	lis    net.Listener
}

func newEnv(t *testing.T) *env {
	t.Helper()
	signer, err := auth.NewSigner(auth.DevSecret)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	log, logs := newLog()
	e := &env{
		srv:    grpcx.NewServer(log, signer, policy),
		menu:   &menuStub{getMenu: func(context.Context) error { return nil }, priceOrder: func(context.Context) error { return nil }},
		order:  &orderStub{watching: make(chan struct{}, 4)},
		logs:   logs,
		signer: signer,
	}
	menuv1.RegisterMenuServiceServer(e.srv, e.menu)
	orderv1.RegisterOrderServiceServer(e.srv, e.order)
	e.lis, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	e.addr = e.lis.Addr().String()
	return e
}

// serve runs Serve until the returned stop is called or the test ends;
// stop cancels its context and returns Serve's error.
func (e *env) serve(t *testing.T, grace time.Duration) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, e.lis, grace) }()
	var result error
	var stopped atomic.Bool
	stop = func() error {
		if stopped.Swap(true) {
			return result
		}
		cancel()
		select {
		case result = <-done:
		case <-time.After(grace + 5*time.Second):
			t.Fatalf("Serve did not return %v after its context ended", grace+5*time.Second)
		}
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func (e *env) dial(t *testing.T, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpcx.Dial(e.addr, opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestServerRecoversPanics(t *testing.T) {
	e := newEnv(t)
	e.menu.getMenu = func(context.Context) error { panic("menu exploded") }
	e.order.panics = true
	e.serve(t, 5*time.Second)
	conn := e.dial(t, auth.DialServiceCredentials(e.signer, "test"))
	ctx := testCtx(t)
	menu := menuv1.NewMenuServiceClient(conn)

	for i := range 2 {
		_, err := menu.GetMenu(ctx, &menuv1.GetMenuRequest{})
		if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != "internal error" {
			t.Errorf("GetMenu #%d (panics) = %v, want Internal \"internal error\"", i+1, err)
		}
	}
	stream, err := orderv1.NewOrderServiceClient(conn).WatchOrder(ctx, &orderv1.WatchOrderRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Errorf("WatchOrder (panics) = %v, want Internal \"internal error\"", err)
	}

	// The server is still up.
	if _, err := menu.PriceOrder(ctx, &menuv1.PriceOrderRequest{}); err != nil {
		t.Errorf("PriceOrder after panics = %v, want nil", err)
	}
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health Check after panics = %v, want nil", err)
	}

	panics := map[string]int{}
	for _, r := range e.logs.records(t) {
		if r["msg"] == "panic in handler" {
			panics[r["method"].(string)]++
			if r["stack"] == "" || r["panic"] == "" {
				t.Errorf("panic log record lacks panic or stack: %v", r)
			}
		}
	}
	if panics[menuv1.MenuService_GetMenu_FullMethodName] != 2 || panics[orderv1.OrderService_WatchOrder_FullMethodName] != 1 {
		t.Errorf("panics logged per method = %v, want GetMenu 2, WatchOrder 1", panics)
	}
}

func TestServerMapsErrors(t *testing.T) {
	e := newEnv(t)
	e.menu.getMenu = func(context.Context) error {
		return errors.Join(errs.Invalid("a", "is bad"), errs.Invalid("b", "is worse"))
	}
	e.menu.priceOrder = func(context.Context) error { return errors.New("mongo: secret detail") }
	e.serve(t, 5*time.Second)
	conn := e.dial(t)
	ctx := testCtx(t)
	menu := menuv1.NewMenuServiceClient(conn)

	_, err := menu.GetMenu(ctx, &menuv1.GetMenuRequest{})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != "a: is bad\nb: is worse" || grpcx.Reason(err) != "INVALID_ARGUMENT" {
		t.Errorf("GetMenu = %v (reason %q), want InvalidArgument listing both fields, reason INVALID_ARGUMENT", err, grpcx.Reason(err))
	}
	_, err = menu.PriceOrder(ctx, &menuv1.PriceOrderRequest{})
	if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Errorf("PriceOrder = %v, want Internal \"internal error\"", err)
	}
	// Refusals by the auth interceptor keep their codes.
	_, err = menu.CreatePizza(ctx, &menuv1.CreatePizzaRequest{})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("CreatePizza (not in policy) = %v, want PermissionDenied", err)
	}
	stream, err := orderv1.NewOrderServiceClient(conn).WatchOrder(ctx, &orderv1.WatchOrderRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("WatchOrder without credential = %v, want Unauthenticated", err)
	}
}

func TestWatchHealth(t *testing.T) {
	e := newEnv(t)
	const svc = "pizzashop.menu.v1.MenuService"
	var failing atomic.Bool
	check := func(context.Context) error {
		if failing.Load() {
			return errors.New("store down")
		}
		return nil
	}
	passing := func(context.Context) error { return nil }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.srv.WatchHealth(ctx, 10*time.Millisecond, []string{svc}, passing, check)
	}()
	t.Cleanup(func() { cancel(); <-done })

	want := func(st healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for _, name := range []string{"", svc} {
			for {
				resp, err := e.srv.Health.Check(ctx, &healthpb.HealthCheckRequest{Service: name})
				if err == nil && resp.GetStatus() == st {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("health of %q = %v, %v; want %v", name, resp.GetStatus(), err, st)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	want(healthpb.HealthCheckResponse_SERVING)
	failing.Store(true)
	want(healthpb.HealthCheckResponse_NOT_SERVING)
	failing.Store(false)
	want(healthpb.HealthCheckResponse_SERVING)

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("WatchHealth did not return after its context ended")
	}
	// One warning for the failure, one note for the recovery: no log line per probe.
	var warns, infos int
	for _, r := range e.logs.records(t) {
		switch r["msg"] {
		case "dependency check failed; reporting NOT_SERVING":
			warns++
		case "dependencies back; reporting SERVING":
			infos++
		}
	}
	if warns != 1 || infos != 1 {
		t.Errorf("logged %d failure and %d recovery records, want 1 and 1", warns, infos)
	}
}

// TestServeEndsStreamsOnShutdown checks that live streams do not hold up a
// shutdown for its grace period: they end at once with UNAVAILABLE, so that
// clients reconnect, and Serve returns.
func TestServeEndsStreamsOnShutdown(t *testing.T) {
	const grace = 20 * time.Second
	e := newEnv(t)
	stop := e.serve(t, grace)
	conn := e.dial(t, auth.DialServiceCredentials(e.signer, "test"))
	ctx := testCtx(t)

	watch, err := orderv1.NewOrderServiceClient(conn).WatchOrder(ctx, &orderv1.WatchOrderRequest{})
	if err != nil {
		t.Fatalf("WatchOrder: %v", err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatalf("WatchOrder first Recv: %v", err)
	}
	<-e.order.watching
	health, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("health Watch: %v", err)
	}
	if resp, err := health.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health Watch first Recv = %v, %v; want SERVING", resp.GetStatus(), err)
	}

	begin := time.Now()
	stopErr := make(chan error, 1)
	go func() { stopErr <- stop() }()

	if _, err := watch.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("WatchOrder Recv after shutdown = %v, want Unavailable", err)
	}
	var last healthpb.HealthCheckResponse_ServingStatus
	for {
		resp, err := health.Recv()
		if err != nil {
			if status.Code(err) != codes.Unavailable {
				t.Errorf("health Watch ended with %v, want Unavailable", err)
			}
			break
		}
		last = resp.GetStatus()
	}
	if last != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health Watch last status before the end = %v, want NOT_SERVING", last)
	}
	if err := <-stopErr; err != nil {
		t.Errorf("Serve() = %v, want nil", err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("shutdown with open streams took %v, want well under the %v grace period", took, grace)
	}
}

// TestServeFinishesCallsInFlight checks that a unary call under way when
// shutdown begins completes, and that new calls are refused.
func TestServeFinishesCallsInFlight(t *testing.T) {
	e := newEnv(t)
	started, release := make(chan struct{}), make(chan struct{})
	e.menu.getMenu = func(context.Context) error {
		close(started)
		<-release
		return nil
	}
	stop := e.serve(t, 10*time.Second)
	conn := e.dial(t)
	ctx := testCtx(t)
	menu := menuv1.NewMenuServiceClient(conn)

	callErr := make(chan error, 1)
	go func() {
		_, err := menu.GetMenu(ctx, &menuv1.GetMenuRequest{})
		callErr <- err
	}()
	<-started
	stopErr := make(chan error, 1)
	go func() { stopErr <- stop() }()
	time.Sleep(50 * time.Millisecond) // let shutdown begin
	select {
	case err := <-stopErr:
		t.Fatalf("Serve returned %v while a call was in flight", err)
	default:
	}
	close(release)
	if err := <-callErr; err != nil {
		t.Errorf("GetMenu in flight during shutdown = %v, want nil", err)
	}
	if err := <-stopErr; err != nil {
		t.Errorf("Serve() = %v, want nil", err)
	}
	if _, err := menu.PriceOrder(ctx, &menuv1.PriceOrderRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("PriceOrder after shutdown = %v, want Unavailable", err)
	}
}

// TestServeGraceExpires checks that a call that will not finish is cut off
// once the grace period is over.
func TestServeGraceExpires(t *testing.T) {
	const grace = 200 * time.Millisecond
	e := newEnv(t)
	started := make(chan struct{})
	e.menu.getMenu = func(ctx context.Context) error {
		close(started)
		<-ctx.Done() // ends only when the server closes the call
		return ctx.Err()
	}
	stop := e.serve(t, grace)
	ctx := testCtx(t)
	callErr := make(chan error, 1)
	go func() {
		_, err := menuv1.NewMenuServiceClient(e.dial(t)).GetMenu(ctx, &menuv1.GetMenuRequest{})
		callErr <- err
	}()
	<-started
	begin := time.Now()
	if err := stop(); err != nil {
		t.Errorf("Serve() = %v, want nil", err)
	}
	if took := time.Since(begin); took < grace || took > grace+2*time.Second {
		t.Errorf("shutdown with a stuck call took %v, want about the grace period %v", took, grace)
	}
	if err := <-callErr; status.Code(err) != codes.Unavailable {
		t.Errorf("stuck GetMenu after the grace period = %v, want Unavailable", err)
	}
	found := false
	for _, r := range e.logs.records(t) {
		found = found || r["msg"] == "graceful stop timed out; closing remaining calls"
	}
	if !found {
		t.Error("no warning logged when the grace period ran out")
	}
}

func TestRunListenError(t *testing.T) {
	e := newEnv(t)
	defer e.lis.Close()
	err := e.srv.Run(context.Background(), e.addr, time.Second) // address taken by e.lis
	if err == nil {
		t.Fatal("Run on a taken address = nil, want an error")
	}
}
