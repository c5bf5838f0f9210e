package grpcx

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/pizzashop/pizzashop/pkg/auth"
	"github.com/pizzashop/pizzashop/pkg/logging"
	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
)

// BenchmarkUnaryInterceptors runs the server's unary interceptor chain
// (errors, credential and policy, card number and header checks) around a
// handler that does nothing, for a CreateOrder as the gateway forwards it:
// a customer's token, an Idempotency-Key and the headers grpc-gateway adds.
func BenchmarkUnaryInterceptors(b *testing.B) {
	signer, err := auth.NewSigner(auth.DevSecret)
	if err != nil {
		b.Fatal(err)
	}
	token, _, err := signer.Sign(auth.Claims{Subject: "alice", Role: auth.RoleCustomer, Name: "Alice"}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	method := orderv1.OrderService_CreateOrder_FullMethodName
	s := &Server{log: logging.Discard()}
	authUnary, _ := auth.Interceptors(signer, auth.Policy{method: auth.Only(auth.RoleCustomer)})
	info := &grpc.UnaryServerInfo{FullMethod: method}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.MD{
		":authority":             {"127.0.0.1:9092"},
		"content-type":           {"application/grpc"},
		"user-agent":             {"grpc-go/1.85.0"},
		"authorization":          {"Bearer " + token},
		"idempotency-key":        {"loadgen-1-000123"},
		"x-request-id":           {"req-000123"},
		"grpcgateway-user-agent": {"Go-http-client/1.1"},
		"grpcgateway-accept":     {"application/json"},
		"x-forwarded-host":       {"127.0.0.1:8080"},
		"x-forwarded-for":        {"127.0.0.1"},
		"traceparent":            {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
	})
	req := &orderv1.CreateOrderRequest{
		Item:            &orderv1.OrderItem{PizzaId: "margherita", Size: commonv1.Size_SIZE_LARGE, ToppingIds: []string{"basil", "olives"}},
		Fulfillment:     orderv1.Fulfillment_FULFILLMENT_DELIVERY,
		DeliveryAddress: &commonv1.Address{Line1: "12 Main Street", City: "Springfield", PostalCode: "12345"},
		PaymentMethod:   orderv1.PaymentMethod_PAYMENT_METHOD_CASH,
		Note:            "ring twice",
	}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	chain := func(ctx context.Context, req any) (any, error) {
		return s.unaryErrors(ctx, req, info, func(ctx context.Context, req any) (any, error) {
			return authUnary(ctx, req, info, func(ctx context.Context, req any) (any, error) {
				return unaryCheck(ctx, req, info, handler)
			})
		})
	}
	if _, err := chain(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = chain(ctx, req)
	}
}
