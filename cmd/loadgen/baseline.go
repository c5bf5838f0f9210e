package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/pizzashop/pizzashop/pkg/grpcx"
	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// runBaselineOrder serves an OrderService whose CreateOrder answers one
// fixed order, as large as a real one, without storing or publishing
// anything, with grpc.health.v1 so a gateway in front of it is ready. A
// gateway pointed at it (ORDER_ADDR) measures the cost of the edge alone,
// the baseline of the real write path.
func runBaselineOrder(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen baseline-order", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9292", "gRPC listen address")
	metricsAddr := fs.String("metrics-addr", "", "serve /metrics (process_cpu_seconds_total) here; empty: none")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("baseline-order: unexpected argument %q", fs.Arg(0))}
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("baseline-order: %w", err)
	}
	srv := grpc.NewServer()
	orderv1.RegisterOrderServiceServer(srv, &fixedOrders{order: fixedOrder()})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	// What a gateway balancing over replicas asks before it sends a call.
	hs.SetServingStatus(grpcx.ServingHealth, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)

	var msrv *http.Server
	if *metricsAddr != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mlis, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			lis.Close()
			return fmt.Errorf("baseline-order: metrics: %w", err)
		}
		msrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = msrv.Serve(mlis) }()
		defer msrv.Close()
	}
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
	}()
	fmt.Fprintf(stderr, "baseline order service on %s\n", lis.Addr())
	return srv.Serve(lis)
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
