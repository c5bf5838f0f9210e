package auth

import (
	"context"
	"net"
	"testing"
	"time"

	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// menuStub answers every call it is let through and reports the claims its
// handler saw.
type menuStub struct {
	menuv1.UnimplementedMenuServiceServer
	seen chan seenClaims
}

type seenClaims struct {
	claims Claims
	ok     bool
}

func (m *menuStub) record(ctx context.Context) {
	c, ok := FromContext(ctx)
	m.seen <- seenClaims{c, ok}
}

func (m *menuStub) GetMenu(ctx context.Context, _ *menuv1.GetMenuRequest) (*menuv1.GetMenuResponse, error) {
	m.record(ctx)
	return &menuv1.GetMenuResponse{}, nil
}

func (m *menuStub) PriceOrder(ctx context.Context, _ *menuv1.PriceOrderRequest) (*menuv1.PriceOrderResponse, error) {
	m.record(ctx)
	return &menuv1.PriceOrderResponse{}, nil
}

func (m *menuStub) CreatePizza(ctx context.Context, _ *menuv1.CreatePizzaRequest) (*menuv1.CreatePizzaResponse, error) {
	m.record(ctx)
	return &menuv1.CreatePizzaResponse{}, nil
}

// UpdatePizza is served but left out of the policy.
func (m *menuStub) UpdatePizza(ctx context.Context, _ *menuv1.UpdatePizzaRequest) (*menuv1.UpdatePizzaResponse, error) {
	m.record(ctx)
	return &menuv1.UpdatePizzaResponse{}, nil
}

type orderStub struct {
	orderv1.UnimplementedOrderServiceServer
	seen chan seenClaims
}

func (o *orderStub) WatchOrder(_ *orderv1.WatchOrderRequest, ss grpc.ServerStreamingServer[orderv1.WatchOrderResponse]) error {
	c, ok := FromContext(ss.Context())
	o.seen <- seenClaims{c, ok}
	return ss.Send(&orderv1.WatchOrderResponse{})
}

var testPolicy = Policy{
	menuv1.MenuService_GetMenu_FullMethodName:      Anyone,
	menuv1.MenuService_PriceOrder_FullMethodName:   Authenticated,
	menuv1.MenuService_CreatePizza_FullMethodName:  Only(RoleAdmin, RoleService),
	orderv1.OrderService_WatchOrder_FullMethodName: Only(RoleCustomer),
}

type testServer struct {
	conn   *grpc.ClientConn
	seen   chan seenClaims
	signer *Signer
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	signer, err := NewSigner(testKey)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	unary, stream := Interceptors(signer, testPolicy)
	srv := grpc.NewServer(grpc.UnaryInterceptor(unary), grpc.StreamInterceptor(stream))
	seen := make(chan seenClaims, 1)
	menuv1.RegisterMenuServiceServer(srv, &menuStub{seen: seen})
	orderv1.RegisterOrderServiceServer(srv, &orderStub{seen: seen})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return &testServer{conn: conn, seen: seen, signer: signer}
}

func (s *testServer) token(t *testing.T, role Role) string {
	t.Helper()
	tok, _, err := s.signer.Sign(Claims{Subject: "sub-" + string(role), Role: role}, time.Hour)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return tok
}

func TestInterceptors(t *testing.T) {
	s := startServer(t)
	menu := menuv1.NewMenuServiceClient(s.conn)
	orders := orderv1.NewOrderServiceClient(s.conn)
	hc := healthpb.NewHealthClient(s.conn)

	expired := func() string {
		old := &Signer{key: s.signer.key, now: func() time.Time { return time.Now().Add(-2 * time.Hour) }}
		tok, _, err := old.Sign(Claims{Subject: "late", Role: RoleAdmin}, time.Hour)
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		return tok
	}()
	other, _ := NewSigner("some-other-signing-key")
	foreign, _, _ := other.Sign(Claims{Subject: "x", Role: RoleAdmin}, time.Hour)

	bearer := func(tok string) string { return "Bearer " + tok }
	call := map[string]func(context.Context) error{
		"GetMenu": func(ctx context.Context) error {
			_, err := menu.GetMenu(ctx, &menuv1.GetMenuRequest{})
			return err
		},
		"PriceOrder": func(ctx context.Context) error {
			_, err := menu.PriceOrder(ctx, &menuv1.PriceOrderRequest{})
			return err
		},
		"CreatePizza": func(ctx context.Context) error {
			_, err := menu.CreatePizza(ctx, &menuv1.CreatePizzaRequest{})
			return err
		},
		"UpdatePizza": func(ctx context.Context) error {
			_, err := menu.UpdatePizza(ctx, &menuv1.UpdatePizzaRequest{})
			return err
		},
		"WatchOrder": func(ctx context.Context) error {
			st, err := orders.WatchOrder(ctx, &orderv1.WatchOrderRequest{})
			if err != nil {
				return err
			}
			_, err = st.Recv()
			return err
		},
		"Health.Check": func(ctx context.Context) error {
			_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		},
	}

	tests := []struct {
		name     string
		method   string
		auth     string // authorization header; "" sends none
		want     codes.Code
		wantRole Role // the role the handler sees; "" for no claims
	}{
		{"public without token", "GetMenu", "", codes.OK, ""},
		{"public with token has claims", "GetMenu", bearer(s.token(t, RoleCustomer)), codes.OK, RoleCustomer},
		{"public ignores a bad token", "GetMenu", bearer("not.a.token"), codes.OK, ""},
		{"public ignores an expired token", "GetMenu", bearer(expired), codes.OK, ""},
		{"public ignores a foreign token", "GetMenu", bearer(foreign), codes.OK, ""},
		{"public ignores a bad scheme", "GetMenu", "Basic dXNlcjpwdw==", codes.OK, ""},
		{"protected without token", "PriceOrder", "", codes.Unauthenticated, ""},
		{"protected with bad scheme", "PriceOrder", "Token " + s.token(t, RoleAdmin), codes.Unauthenticated, ""},
		{"protected with scheme only", "PriceOrder", "Bearer ", codes.Unauthenticated, ""},
		{"protected with bare token", "PriceOrder", s.token(t, RoleAdmin), codes.Unauthenticated, ""},
		{"protected with foreign token", "PriceOrder", bearer(foreign), codes.Unauthenticated, ""},
		{"protected with expired token", "PriceOrder", bearer(expired), codes.Unauthenticated, ""},
		{"authenticated, any role", "PriceOrder", bearer(s.token(t, RoleCourier)), codes.OK, RoleCourier},
		{"scheme is case-insensitive", "PriceOrder", "bearer " + s.token(t, RoleKitchen), codes.OK, RoleKitchen},
		{"wrong role", "CreatePizza", bearer(s.token(t, RoleCustomer)), codes.PermissionDenied, ""},
		{"right role", "CreatePizza", bearer(s.token(t, RoleAdmin)), codes.OK, RoleAdmin},
		{"second allowed role", "CreatePizza", bearer(s.token(t, RoleService)), codes.OK, RoleService},
		{"missing from policy, no token", "UpdatePizza", "", codes.PermissionDenied, ""},
		{"missing from policy, admin", "UpdatePizza", bearer(s.token(t, RoleAdmin)), codes.PermissionDenied, ""},
		{"stream without token", "WatchOrder", "", codes.Unauthenticated, ""},
		{"stream wrong role", "WatchOrder", bearer(s.token(t, RoleKitchen)), codes.PermissionDenied, ""},
		{"stream right role", "WatchOrder", bearer(s.token(t, RoleCustomer)), codes.OK, RoleCustomer},
		{"health is public", "Health.Check", "", codes.OK, ""},
		{"health ignores a bad token", "Health.Check", bearer("x.y.z"), codes.OK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if tt.auth != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", tt.auth)
			}
			err := call[tt.method](ctx)
			if got := status.Code(err); got != tt.want {
				t.Fatalf("%s with authorization %.30q: code = %v (%v), want %v", tt.method, tt.auth, got, err, tt.want)
			}
			var seen seenClaims
			select {
			case seen = <-s.seen:
				if tt.want != codes.OK {
					t.Fatalf("%s refused with %v, yet its handler ran", tt.method, tt.want)
				}
			default:
				if tt.want == codes.OK && tt.method != "Health.Check" {
					t.Fatalf("%s: handler did not run", tt.method)
				}
				return
			}
			if seen.ok != (tt.wantRole != "") || seen.claims.Role != tt.wantRole {
				t.Errorf("%s: claims in handler = %+v (present %v), want role %q", tt.method, seen.claims, seen.ok, tt.wantRole)
			}
			if seen.ok && seen.claims.Subject != "sub-"+string(tt.wantRole) {
				t.Errorf("%s: claims subject = %q, want %q", tt.method, seen.claims.Subject, "sub-"+string(tt.wantRole))
			}
		})
	}
}

func TestServiceCredentials(t *testing.T) {
	s := startServer(t)
	menu := menuv1.NewMenuServiceClient(s.conn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// As a call option.
	if _, err := menu.CreatePizza(ctx, &menuv1.CreatePizzaRequest{}, ServiceCredentials(s.signer, "order")); err != nil {
		t.Fatalf("CreatePizza with ServiceCredentials: %v", err)
	}
	if got := <-s.seen; !got.ok || got.claims.Role != RoleService || got.claims.Subject != "order" {
		t.Errorf("claims from ServiceCredentials = %+v (present %v), want subject order, role service", got.claims, got.ok)
	} else if ttl := got.claims.ExpiresAt.Sub(got.claims.IssuedAt); ttl != 5*time.Minute {
		t.Errorf("service token lifetime = %v, want 5m", ttl)
	}

	// As a dial option.
	conn, err := grpc.NewClient(s.conn.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		DialServiceCredentials(s.signer, "kitchen"))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	defer conn.Close()
	if _, err := menuv1.NewMenuServiceClient(conn).CreatePizza(ctx, &menuv1.CreatePizzaRequest{}); err != nil {
		t.Fatalf("CreatePizza over DialServiceCredentials: %v", err)
	}
	if got := <-s.seen; !got.ok || got.claims.Role != RoleService || got.claims.Subject != "kitchen" {
		t.Errorf("claims from DialServiceCredentials = %+v (present %v), want subject kitchen, role service", got.claims, got.ok)
	}

	// Signed with another key, the token is refused.
	other, _ := NewSigner("some-other-signing-key")
	_, err = menu.CreatePizza(ctx, &menuv1.CreatePizzaRequest{}, ServiceCredentials(other, "order"))
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("CreatePizza with a foreign service token: %v, want Unauthenticated", err)
	}
}

func TestWithClaims(t *testing.T) {
	ctx := context.Background()
	if c, ok := FromContext(ctx); ok {
		t.Errorf("FromContext(empty) = %+v, true; want false", c)
	}
	want := Claims{Subject: "x", Role: RoleKitchen}
	if c, ok := FromContext(WithClaims(ctx, want)); !ok || c != want {
		t.Errorf("FromContext(WithClaims(c)) = %+v, %v; want %+v, true", c, ok, want)
	}
}
