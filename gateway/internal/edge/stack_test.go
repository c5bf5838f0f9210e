package edge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pizzashop/pizzashop/gateway/internal/edge"
	"github.com/pizzashop/pizzashop/pkg/grpcx"
	"github.com/pizzashop/pizzashop/pkg/logging"
	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
)

// The gRPC side of these tests is a pair of small doubles of our own menu and
// order services, served over loopback by a real gRPC server with
// grpc.health.v1, and reached through grpcx.Dial as in production.

// menuDouble serves a fixed menu; PriceOrder fails with priceErr.
type menuDouble struct {
	menuv1.UnimplementedMenuServiceServer
	menu     *menuv1.Menu
	priceErr error
}

func (d *menuDouble) GetMenu(context.Context, *menuv1.GetMenuRequest) (*menuv1.GetMenuResponse, error) {
	return &menuv1.GetMenuResponse{Menu: d.menu}, nil
}

func (d *menuDouble) PriceOrder(context.Context, *menuv1.PriceOrderRequest) (*menuv1.PriceOrderResponse, error) {
	return nil, d.priceErr
}

// orderDouble records what reaches it and answers with the configured errors.
type orderDouble struct {
	orderv1.UnimplementedOrderServiceServer

	mu    sync.Mutex
	md    metadata.MD
	calls int

	createErr error
	getErr    error
	cancelErr error
	// watch is sent on WatchOrder; with watchHold the stream then stays open
	// until the caller goes away; watchErr then ends it.
	watch     []*orderv1.WatchOrderResponse
	watchHold bool
	watchErr  error
}

func (d *orderDouble) record(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.md = md.Copy()
	d.calls++
}

// seen returns the metadata of the last call and the number of calls.
func (d *orderDouble) seen() (metadata.MD, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.md, d.calls
}

func (d *orderDouble) CreateOrder(ctx context.Context, req *orderv1.CreateOrderRequest) (*orderv1.CreateOrderResponse, error) {
	d.record(ctx)
	if d.createErr != nil {
		return nil, d.createErr
	}
	return &orderv1.CreateOrderResponse{Order: &orderv1.Order{
		Id: "o-1", CustomerId: "c-1", Item: req.GetItem(), Fulfillment: req.GetFulfillment(),
		PaymentMethod: req.GetPaymentMethod(), Note: req.GetNote(), Status: orderv1.OrderStatus_ORDER_STATUS_PLACED,
	}}, nil
}

func (d *orderDouble) GetOrder(ctx context.Context, req *orderv1.GetOrderRequest) (*orderv1.GetOrderResponse, error) {
	d.record(ctx)
	if d.getErr != nil {
		return nil, d.getErr
	}
	return &orderv1.GetOrderResponse{Order: &orderv1.Order{Id: req.GetId()}}, nil
}

func (d *orderDouble) CancelOrder(ctx context.Context, req *orderv1.CancelOrderRequest) (*orderv1.CancelOrderResponse, error) {
	d.record(ctx)
	if d.cancelErr != nil {
		return nil, d.cancelErr
	}
	return &orderv1.CancelOrderResponse{Order: &orderv1.Order{Id: req.GetId(), Status: orderv1.OrderStatus_ORDER_STATUS_CANCELLED}}, nil
}

func (d *orderDouble) WatchOrder(req *orderv1.WatchOrderRequest, stream grpc.ServerStreamingServer[orderv1.WatchOrderResponse]) error {
	d.record(stream.Context())
	for _, m := range d.watch {
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	if d.watchHold {
		<-stream.Context().Done()
		return stream.Context().Err()
	}
	return d.watchErr
}

// stack is the gateway over real HTTP in front of the doubles.
type stack struct {
	url         string
	gw          *edge.Handler
	menu        *menuDouble
	order       *orderDouble
	menuHealth  *health.Server
	orderHealth *health.Server
	logs        *syncBuffer
}

// stackOption adjusts the doubles or the gateway options before start.
type stackOption func(*stack, *edge.Options)

func newStack(t testing.TB, opts ...stackOption) *stack {
	t.Helper()
	s := &stack{
		menu:  &menuDouble{menu: testMenu()},
		order: &orderDouble{},
		logs:  &syncBuffer{},
	}
	var menuConn, orderConn *grpc.ClientConn
	menuConn, s.menuHealth = serveGRPC(t, func(g *grpc.Server) { menuv1.RegisterMenuServiceServer(g, s.menu) })
	orderConn, s.orderHealth = serveGRPC(t, func(g *grpc.Server) { orderv1.RegisterOrderServiceServer(g, s.order) })
	o := edge.Options{
		Menu:         menuConn,
		Order:        orderConn,
		Logger:       logging.New(s.logs, "gateway", "debug"),
		MaxBodyBytes: 1024,
		OpenAPI:      []byte(`{"openapi":"3.1.0","info":{"title":"test"}}`),
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "# metrics\n")
		}),
		ReadyCacheTTL: time.Nanosecond,
	}
	for _, opt := range opts {
		opt(s, &o)
	}
	gw, err := edge.New(o)
	if err != nil {
		t.Fatalf("edge.New: %v", err)
	}
	s.gw = gw
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// serveGRPC serves the services registered by register, with health
// reporting SERVING, on a loopback port, and dials it.
func serveGRPC(t testing.TB, register func(*grpc.Server)) (*grpc.ClientConn, *health.Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	register(g)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(g, hs)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return dial(t, lis.Addr().String()), hs
}

func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpcx.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}

// do sends one request and returns the response with its body read.
func (s *stack) do(t testing.TB, method, path string, body io.Reader, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, b
}

// rpcStatus is the JSON google.rpc.Status body of an error response.
type rpcStatus struct {
	Code    int              `json:"code"`
	Message string           `json:"message"`
	Details []map[string]any `json:"details"`
}

func decodeStatus(t testing.TB, what string, body []byte) rpcStatus {
	t.Helper()
	var st rpcStatus
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("%s: body is not a JSON Status: %v\n%s", what, err, body)
	}
	if !bytes.Contains(body, []byte(`"details"`)) {
		t.Errorf("%s: body %s has no \"details\" field", what, body)
	}
	return st
}

// statusErr returns a status error with details.
func statusErr(code codes.Code, msg string, details ...protoadapt.MessageV1) error {
	st, err := status.New(code, msg).WithDetails(details...)
	if err != nil {
		panic(err)
	}
	return st.Err()
}

// reason is the shop's ErrorInfo with the given reason.
func reason(r string) *errdetails.ErrorInfo {
	return &errdetails.ErrorInfo{Reason: r, Domain: grpcx.ErrorDomain}
}

// testMenu is a menu like the seeded one: 6 pizzas, 10 toppings, one of
// each sold out.
func testMenu() *menuv1.Menu {
	prices := func(s, m, l int64) []*menuv1.SizePrice {
		return []*menuv1.SizePrice{
			{Size: commonv1.Size_SIZE_SMALL, AmountMinor: s},
			{Size: commonv1.Size_SIZE_MEDIUM, AmountMinor: m},
			{Size: commonv1.Size_SIZE_LARGE, AmountMinor: l},
		}
	}
	at := timestamppb.New(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	m := &menuv1.Menu{Version: 7, CurrencyCode: "USD", UpdateTime: at}
	for i, name := range []string{"Capricciosa", "Diavola", "Funghi", "Margherita", "Marinara", "Quattro Formaggi"} {
		m.Pizzas = append(m.Pizzas, &menuv1.Pizza{
			Id: strings.ToLower(strings.ReplaceAll(name, " ", "-")), Name: name,
			Description: "Tomato, mozzarella and a few good things on a thin crust.",
			Prices:      prices(900+int64(i)*50, 1200+int64(i)*50, 1500+int64(i)*50),
			Available:   i != 4, UpdateTime: at,
		})
	}
	for i, name := range []string{"Anchovies", "Artichokes", "Basil", "Capers", "Ham", "Mushrooms", "Olives", "Onions", "Peppers", "Salami"} {
		m.Toppings = append(m.Toppings, &menuv1.Topping{
			Id: strings.ToLower(name), Name: name, Prices: prices(100, 150, 200),
			Available: i != 0, UpdateTime: at,
		})
	}
	return m
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// randomFields are the log fields whose values are random or timing: their
// digits can hold "4111" by chance (".411125209Z", trace id "a372d41113f3..."),
// so a search of the log for a card number leaves them out.
var randomFields = regexp.MustCompile(`"(time|trace_id|span_id)":"[^"]*"|"duration_ms":[0-9.e+-]+`)

// withoutRandomFields is logs with the values of randomFields emptied.
func withoutRandomFields(logs string) string {
	return randomFields.ReplaceAllStringFunc(logs, func(f string) string {
		return f[:strings.Index(f, ":")+1] + `""`
	})
}
