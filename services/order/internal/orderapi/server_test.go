package orderapi

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/auth"
	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/logging"
	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"github.com/pizzashop/pizzashop/services/order/internal/order"
	"github.com/pizzashop/pizzashop/services/order/internal/orderdb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// fakeMenu prices every pizza at 900 USD; the menu's own rules are tested
// in the menu service.
type fakeMenu struct{ menuv1.MenuServiceClient }

func (fakeMenu) PriceOrder(_ context.Context, req *menuv1.PriceOrderRequest, _ ...grpc.CallOption) (*menuv1.PriceOrderResponse, error) {
	usd := func(n int64) *commonv1.Money { return &commonv1.Money{CurrencyCode: "USD", AmountMinor: n} }
	return &menuv1.PriceOrderResponse{Price: &menuv1.PriceBreakdown{
		Pizza: &menuv1.PriceLine{ItemId: req.GetPizzaId(), Name: req.GetPizzaId(), Price: usd(900)},
		Total: usd(900), Size: req.GetSize(),
	}}, nil
}

type noKitchen struct{ kitchenv1.KitchenServiceClient }

type noWatch struct{}

func (noWatch) Watch(string, func(*orderv1.OrderStatusChanged)) (func(), error) {
	return func() {}, nil
}

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newServer(t *testing.T) (*Server, *clock) {
	t.Helper()
	_, db := devstack.MongoDatabase(t)
	store := orderdb.New(db)
	if err := store.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	signer, err := auth.NewSigner("order-api-test-secret")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(store, fakeMenu{}, noKitchen{}, signer, noWatch{}, logging.Discard(), Options{})
	c := &clock{t: time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)}
	s.now = c.now
	return s, c
}

func asCustomer(id, key string) context.Context {
	ctx := auth.WithClaims(context.Background(), auth.Claims{Subject: id, Role: auth.RoleCustomer})
	return metadata.NewIncomingContext(ctx, metadata.Pairs("idempotency-key", key))
}

func pickup(pizza string) *orderv1.CreateOrderRequest {
	return &orderv1.CreateOrderRequest{
		Item:          &orderv1.OrderItem{PizzaId: pizza, Size: commonv1.Size_SIZE_SMALL},
		Fulfillment:   orderv1.Fulfillment_FULFILLMENT_PICKUP,
		PaymentMethod: orderv1.PaymentMethod_PAYMENT_METHOD_CASH,
	}
}

func TestIdempotencyKeyLifetime(t *testing.T) {
	s, c := newServer(t)
	ctx := asCustomer("ann", "key-1")
	first, err := s.CreateOrder(ctx, pickup("margherita"))
	if err != nil {
		t.Fatal(err)
	}
	id := first.GetOrder().GetId()

	c.t = c.t.Add(time.Hour)
	again, err := s.CreateOrder(ctx, pickup("margherita"))
	if err != nil || again.GetOrder().GetId() != id {
		t.Errorf("same key and body an hour later = %v, %v; want the original order %s", again.GetOrder().GetId(), err, id)
	}
	c.t = c.t.Add(time.Hour)
	if _, err := s.CreateOrder(ctx, pickup("funghi")); !errors.Is(err, ErrKeyReused) {
		t.Errorf("same key, other body within 24h = %v, want ErrKeyReused", err)
	}

	// Once the key has expired it may name a new request.
	c.t = c.t.Add(23 * time.Hour)
	later, err := s.CreateOrder(ctx, pickup("funghi"))
	if err != nil {
		t.Fatalf("key reused after it expired = %v, want a new order", err)
	}
	if later.GetOrder().GetId() == id || later.GetOrder().GetItem().GetPizzaId() != "funghi" {
		t.Errorf("key reused after it expired = order %s for %s, want a new funghi order, not %s",
			later.GetOrder().GetId(), later.GetOrder().GetItem().GetPizzaId(), id)
	}
	if replay, err := s.CreateOrder(ctx, pickup("funghi")); err != nil || replay.GetOrder().GetId() != later.GetOrder().GetId() {
		t.Errorf("replay of the new request = %v, %v; want %s", replay.GetOrder().GetId(), err, later.GetOrder().GetId())
	}
}

func TestIdempotencyKeyInFlight(t *testing.T) {
	s, c := newServer(t)
	// A request claimed the key and died before placing its order.
	hash := requestHash(pickup("margherita"))
	if _, err := s.store.ReserveKey(context.Background(), "ann", "key-2", hash, c.t, s.opts.KeyTTL); err != nil {
		t.Fatal(err)
	}
	ctx := asCustomer("ann", "key-2")
	c.t = c.t.Add(10 * time.Second)
	if _, err := s.CreateOrder(ctx, pickup("margherita")); !errors.Is(err, ErrKeyInFlight) {
		t.Errorf("same key while the first request may still run = %v, want ErrKeyInFlight", err)
	}
	c.t = c.t.Add(s.opts.InFlightTimeout)
	o, err := s.CreateOrder(ctx, pickup("margherita"))
	if err != nil || o.GetOrder().GetId() == "" {
		t.Errorf("same key after the first request was given up = %v, %v; want it placed", o, err)
	}
}

func TestStaleKitchenEventKeepsEstimate(t *testing.T) {
	s, c := newServer(t)
	placed, err := s.CreateOrder(asCustomer("ann", "k"), pickup("margherita"))
	if err != nil {
		t.Fatal(err)
	}
	id := placed.GetOrder().GetId()
	queued, baking := c.t.Add(20*time.Minute), c.t.Add(9*time.Minute)
	ctx := context.Background()
	if err := s.apply(ctx, id, order.StatusAccepted, c.t, "", queued); err != nil {
		t.Fatal(err)
	}
	if err := s.apply(ctx, id, order.StatusBaking, c.t.Add(time.Minute), "", baking); err != nil {
		t.Fatal(err)
	}
	// The QUEUED event again, late: it must not bring back its estimate.
	if err := s.apply(ctx, id, order.StatusAccepted, c.t, "", queued); err != nil {
		t.Fatal(err)
	}
	o, err := s.store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if o.Status != order.StatusBaking || !o.EstimatedReadyTime.Equal(baking) {
		t.Errorf("after a late QUEUED event: %s ready at %v, want BAKING ready at %v", o.Status, o.EstimatedReadyTime, baking)
	}
}
