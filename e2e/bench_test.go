package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/e2e/stack"
	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// benchParallelism multiplies GOMAXPROCS into the number of clients
// posting at once: a shop takes orders from many customers together.
const benchParallelism = 4

// BenchmarkPlaceOrder places a fresh order per iteration through the
// gateway of a running shop: gateway, order service, menu pricing, the
// store write with its outbox event, and the relay publishing it, while the
// kitchen consumes what is published.
func BenchmarkPlaceOrder(b *testing.B) {
	s := stack.Start(b)
	pizzas, toppings := available(b, getMenu(b, s), 1, 2)
	body := benchBody(b, pizzas[0], toppings)
	benchPlace(b, s.URL("/v1/orders"), benchTokens(s), body)
}

// BenchmarkPlaceOrderBaseline sends the same requests through the same
// gateway binary to an order service that stores and publishes nothing: the
// cost of the edge alone (HTTP, JSON, auth headers, one gRPC hop), to set
// BenchmarkPlaceOrder against.
func BenchmarkPlaceOrderBaseline(b *testing.B) {
	s := stack.Start(b)
	pizzas, toppings := available(b, getMenu(b, s), 1, 2)
	body := benchBody(b, pizzas[0], toppings)
	addr := startFixedOrders(b)
	gateway := s.StartGateway("gateway-baseline", "ORDER_ADDR="+addr)
	benchPlace(b, gateway+"/v1/orders", benchTokens(s), body)
}

func benchBody(b *testing.B, pizza string, toppings []string) []byte {
	body, err := json.Marshal(pickupBody(pizza, "SIZE_MEDIUM", toppings...))
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// benchTokens are credentials of a few customers, one per client.
func benchTokens(s *stack.Stack) []string {
	var toks []string
	for range 64 {
		toks = append(toks, s.Token("customer", uniq("bench")))
	}
	return toks
}

// benchPlace posts body to url b.N times from parallel clients, and
// reports the latency percentiles of one request and the throughput.
func benchPlace(b *testing.B, url string, tokens []string, body []byte) {
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute},
	}
	defer client.CloseIdleConnections()
	post := func(token string) (time.Duration, error) {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		begin := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(begin)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("POST %s = %d %s", url, resp.StatusCode, raw)
		}
		return took, nil
	}
	// Warm the connections and the services' caches.
	for i := range 20 {
		if _, err := post(tokens[i%len(tokens)]); err != nil {
			b.Fatalf("warm-up: %v", err)
		}
	}

	var (
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, b.N)
		client0   atomic.Int64
	)
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	begin := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		token := tokens[int(client0.Add(1))%len(tokens)]
		var mine []time.Duration
		for pb.Next() {
			took, err := post(token)
			if err != nil {
				b.Error(err)
				continue
			}
			mine = append(mine, took)
		}
		mu.Lock()
		latencies = append(latencies, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(begin)
	b.StopTimer()

	if len(latencies) == 0 {
		return
	}
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		i := int(float64(len(latencies))*p+0.5) - 1
		i = max(0, min(i, len(latencies)-1))
		return float64(latencies[i].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(len(latencies))/elapsed.Seconds(), "orders/s")
}

// startFixedOrders serves an OrderService whose CreateOrder answers one
// fixed order, as large as a real one, without storing or publishing, with
// grpc.health.v1 so that the gateway's /readyz passes. It returns its
// address.
func startFixedOrders(b *testing.B) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	orderv1.RegisterOrderServiceServer(srv, &fixedOrders{order: fixedOrder()})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(lis) }()
	b.Cleanup(srv.Stop)
	return lis.Addr().String()
}

type fixedOrders struct {
	orderv1.UnimplementedOrderServiceServer
	order *orderv1.Order
}

func (f *fixedOrders) CreateOrder(context.Context, *orderv1.CreateOrderRequest) (*orderv1.CreateOrderResponse, error) {
	return &orderv1.CreateOrderResponse{Order: f.order}, nil
}

func fixedOrder() *orderv1.Order {
	now := timestamppb.Now()
	money := func(n int64) *commonv1.Money { return &commonv1.Money{CurrencyCode: "USD", AmountMinor: n} }
	return &orderv1.Order{
		Id: "xnle47ojoelkfrhmvbdu2owrey", CustomerId: "bench",
		Item:          &orderv1.OrderItem{PizzaId: "margherita", Size: commonv1.Size_SIZE_MEDIUM, ToppingIds: []string{"anchovies", "peppers"}},
		Fulfillment:   orderv1.Fulfillment_FULFILLMENT_PICKUP,
		PaymentMethod: orderv1.PaymentMethod_PAYMENT_METHOD_CASH,
		Status:        orderv1.OrderStatus_ORDER_STATUS_PLACED,
		Price: &menuv1.PriceBreakdown{
			Pizza: &menuv1.PriceLine{ItemId: "margherita", Name: "Margherita", Price: money(1200)},
			Toppings: []*menuv1.PriceLine{
				{ItemId: "anchovies", Name: "Anchovies", Price: money(200)},
				{ItemId: "peppers", Name: "Bell peppers", Price: money(150)},
			},
			Total: money(1550), Size: commonv1.Size_SIZE_MEDIUM,
		},
		History:    []*orderv1.StatusChange{{Status: orderv1.OrderStatus_ORDER_STATUS_PLACED, ChangeTime: now}},
		CreateTime: now, UpdateTime: now, Revision: 1, CustomerName: "bench",
	}
}
