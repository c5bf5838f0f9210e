package grpcx_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/auth"
	"github.com/pizzashop/pizzashop/pkg/errs"
	"github.com/pizzashop/pizzashop/pkg/grpcx"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestServerRefusesCardNumbers(t *testing.T) {
	e := newEnv(t)
	e.serve(t, 5*time.Second)
	menu := menuv1.NewMenuServiceClient(e.dial(t))
	ctx := testCtx(t)

	tests := []struct {
		name  string
		md    []string
		req   *menuv1.PriceOrderRequest
		field string
	}{
		{"field", nil, &menuv1.PriceOrderRequest{PizzaId: "4111 1111 1111 1111"}, "pizza_id"},
		{"list", nil, &menuv1.PriceOrderRequest{PizzaId: "funghi", ToppingIds: []string{"olives", "4111.1111.1111.1111"}}, "topping_ids[1]"},
		{"full-width", nil, &menuv1.PriceOrderRequest{PizzaId: "\uff14\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11"}, "pizza_id"},
		{"idempotency key", []string{"idempotency-key", "k-4111111111111111"}, &menuv1.PriceOrderRequest{}, "Idempotency-Key"},
		{"request id", []string{"x-request-id", "4111-1111-1111-1111"}, &menuv1.PriceOrderRequest{}, "X-Request-Id"},
		{"request id with a space", []string{"x-request-id", "a b"}, &menuv1.PriceOrderRequest{}, "X-Request-Id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctx
			if tt.md != nil {
				ctx = metadata.AppendToOutgoingContext(ctx, tt.md...)
			}
			_, err := menu.PriceOrder(ctx, tt.req)
			if status.Code(err) != codes.InvalidArgument || firstViolation(err) != tt.field {
				t.Fatalf("PriceOrder = %v (field %q), want InvalidArgument naming %s", err, firstViolation(err), tt.field)
			}
			if strings.Contains(status.Convert(err).Message(), "4111") {
				t.Errorf("error message echoes the card number: %q", status.Convert(err).Message())
			}
		})
	}
	if _, err := menu.PriceOrder(ctx, &menuv1.PriceOrderRequest{PizzaId: "funghi", ToppingIds: []string{"olives"}}); err != nil {
		t.Errorf("PriceOrder (clean) = %v, want nil", err)
	}
}

func TestCheckHeaderValue(t *testing.T) {
	for _, v := range []string{"café-1", "", "a b", "k\x7f", strings.Repeat("k", 201), "4111111111111111"} {
		if err := grpcx.CheckHeaderValue("Idempotency-Key", v); err == nil || !strings.HasPrefix(err.Error(), "Idempotency-Key: ") {
			t.Errorf("CheckHeaderValue(%q) = %v, want an error naming Idempotency-Key", v, err)
		}
	}
	for _, v := range []string{"7f3c2a", "order-2026-11-30-001", strings.Repeat("k", 200)} {
		if err := grpcx.CheckHeaderValue("Idempotency-Key", v); err != nil {
			t.Errorf("CheckHeaderValue(%q) = %v, want nil", v, err)
		}
	}
}

func TestServerBoundsRequestSize(t *testing.T) {
	e := newEnv(t)
	called := false
	e.menu.priceOrder = func(context.Context) error { called = true; return nil }
	e.serve(t, 5*time.Second)
	menu := menuv1.NewMenuServiceClient(e.dial(t))
	// The attack of the issue: ~1 MB of topping ids.
	ids := make([]string, 340_000)
	for i := range ids {
		ids[i] = "x"
	}
	_, err := menu.PriceOrder(testCtx(t), &menuv1.PriceOrderRequest{PizzaId: "funghi", ToppingIds: ids})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("PriceOrder of ~1 MB = %v, want ResourceExhausted", err)
	}
	if called {
		t.Error("the handler ran for an oversized request")
	}
	// A request just under the cap gets through.
	_, err = menu.PriceOrder(testCtx(t), &menuv1.PriceOrderRequest{PizzaId: strings.Repeat("p", grpcx.MaxRequestBytes-16)})
	if err != nil {
		t.Errorf("PriceOrder just under %d bytes = %v, want nil", grpcx.MaxRequestBytes, err)
	}
}

func TestServerCapsViolations(t *testing.T) {
	e := newEnv(t)
	e.menu.getMenu = func(context.Context) error {
		var problems []error
		for i := range 1000 {
			problems = append(problems, errs.Invalid(fmt.Sprintf("topping_ids[%d]", i), "unknown topping %q", strings.Repeat("z", 5000)))
		}
		return errors.Join(problems...)
	}
	e.serve(t, 5*time.Second)
	_, err := menuv1.NewMenuServiceClient(e.dial(t)).GetMenu(testCtx(t), &menuv1.GetMenuRequest{})
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("GetMenu = %v, want InvalidArgument", err)
	}
	if n := len(st.Message()); n > 2048 {
		t.Errorf("message is %d bytes, want at most 2048", n)
	}
	if !strings.Contains(st.Message(), "(and 995 more problems)") {
		t.Errorf("message %q does not say how many problems were left out", st.Message()[:200])
	}
	var violations int
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			violations += len(br.GetFieldViolations())
			for _, v := range br.GetFieldViolations() {
				if len(v.GetDescription()) > 300 {
					t.Errorf("violation description is %d bytes, want at most 300", len(v.GetDescription()))
				}
			}
		}
	}
	if violations != grpcx.MaxViolations {
		t.Errorf("%d field violations listed, want %d", violations, grpcx.MaxViolations)
	}
	if size := len(fmt.Sprint(st.Proto())); size > 8<<10 {
		t.Errorf("error status is %d bytes, want under 8 KiB", size)
	}
}

func TestServerBoundsStreams(t *testing.T) {
	signer, err := auth.NewSigner(auth.DevSecret)
	if err != nil {
		t.Fatal(err)
	}
	log, _ := newLog()
	e := newEnv(t)
	e.srv = grpcx.NewServer(log, signer, policy, grpcx.WithStreamLimits(3, 5))
	e.order.watching = make(chan struct{}, 100)
	orderv1.RegisterOrderServiceServer(e.srv, e.order)
	e.serve(t, 5*time.Second)
	client := orderv1.NewOrderServiceClient(e.dial(t))

	as := func(sub string) context.Context {
		tok, _, err := signer.Sign(auth.Claims{Subject: sub, Role: auth.RoleKitchen}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return metadata.AppendToOutgoingContext(testCtx(t), "authorization", "Bearer "+tok)
	}
	open := func(ctx context.Context) (cancel func(), err error) {
		ctx, cancel = context.WithCancel(ctx)
		s, err := client.WatchOrder(ctx, &orderv1.WatchOrderRequest{})
		if err == nil {
			_, err = s.Recv()
		}
		if err != nil {
			cancel()
		}
		return cancel, err
	}
	kim := as("kim")
	var kims []func()
	for i := range 3 {
		cancel, err := open(kim)
		if err != nil {
			t.Fatalf("stream %d of kim: %v", i+1, err)
		}
		kims = append(kims, cancel)
	}
	if _, err := open(kim); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("4th stream of kim = %v, want ResourceExhausted", err)
	}
	// Others are not affected, up to the total.
	lea := as("lea")
	for i := range 2 {
		if _, err := open(lea); err != nil {
			t.Fatalf("stream %d of lea: %v", i+1, err)
		}
	}
	if _, err := open(as("max")); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("6th stream on the server = %v, want ResourceExhausted", err)
	}
	// A closed stream frees its place.
	kims[0]()
	deadline := time.Now().Add(5 * time.Second)
	for {
		cancel, err := open(kim)
		if err == nil {
			cancel()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream of kim after closing one = %v, want it open", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// firstViolation returns the field of the first BadRequest violation in err.
func firstViolation(err error) string {
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	return ""
}
