package orderapi

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
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
	if err := store.Init(testContext(t)); err != nil {
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

// asCustomer is a call from customer id with idempotency key key, bounded
// by the test's deadline (testContext), not left to the store's 3 s default.
func asCustomer(t *testing.T, id, key string) context.Context {
	ctx := auth.WithClaims(testContext(t), auth.Claims{Subject: id, Role: auth.RoleCustomer})
	return metadata.NewIncomingContext(ctx, metadata.Pairs("idempotency-key", key))
}

func pickup(pizza string) *orderv1.CreateOrderRequest {
	return &orderv1.CreateOrderRequest{
		Item:          &orderv1.OrderItem{PizzaId: pizza, Size: commonv1.Size_SIZE_SMALL},
		Fulfillment:   orderv1.Fulfillment_FULFILLMENT_PICKUP,
		PaymentMethod: orderv1.PaymentMethod_PAYMENT_METHOD_CASH,
	}
}

func TestIdempotencyKey(t *testing.T) {
	s, c := newServer(t)
	ctx := asCustomer(t, "ann", "key-1")
	first, err := s.CreateOrder(ctx, pickup("margherita"))
	if err != nil {
		t.Fatal(err)
	}
	id := first.GetOrder().GetId()

	for _, later := range []time.Duration{time.Hour, 24 * time.Hour, 365 * 24 * time.Hour} {
		c.t = c.t.Add(later)
		again, err := s.CreateOrder(ctx, pickup("margherita"))
		if err != nil || again.GetOrder().GetId() != id {
			t.Errorf("same key and body %s later = %v, %v; want the original order %s", later, again.GetOrder().GetId(), err, id)
		}
		if _, err := s.CreateOrder(ctx, pickup("funghi")); !errors.Is(err, ErrKeyReused) {
			t.Errorf("same key, other body %s later = %v, want ErrKeyReused", later, err)
		}
	}
	other, err := s.CreateOrder(asCustomer(t, "bob", "key-1"), pickup("margherita"))
	if err != nil || other.GetOrder().GetId() == id {
		t.Errorf("another customer's same key = %v, %v; want an order of its own", other.GetOrder().GetId(), err)
	}

	// A retry gets its order back even when it could not be placed now.
	s.menu = failingMenu{}
	again, err := s.CreateOrder(ctx, pickup("margherita"))
	if err != nil || again.GetOrder().GetId() != id {
		t.Errorf("retry while the menu fails = %v, %v; want the original order %s", again.GetOrder().GetId(), err, id)
	}
}

// TestIdempotencyKeyRace sends one request many times at once, as a client
// that gives up and retries does: exactly one order comes of it, and every
// answer is that order.
func TestIdempotencyKeyRace(t *testing.T) {
	s, _ := newServer(t)
	ctx := asCustomer(t, "ann", "race-1")
	const n = 20
	got := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			o, err := s.CreateOrder(ctx, pickup("margherita"))
			if err != nil {
				t.Errorf("CreateOrder: %v", err)
				got <- ""
				return
			}
			got <- o.GetOrder().GetId()
		})
	}
	wg.Wait()
	close(got)
	ids := map[string]bool{}
	for id := range got {
		ids[id] = true
	}
	if len(ids) != 1 {
		t.Errorf("%d racing requests with one key answered orders %v, want one", n, ids)
	}
	orders, _, err := s.store.List(testContext(t), "ann", 100, nil)
	if err != nil || len(orders) != 1 {
		t.Errorf("stored orders of ann = %d, %v; want 1", len(orders), err)
	}
}

// TestPlaceReadsProfileOnce: the name and phone an order carries come from
// memory once read.
func TestPlaceReadsProfileOnce(t *testing.T) {
	s, _ := newServer(t)
	if err := s.store.CreateCustomer(testContext(t), order.Profile{ID: "ann", Name: "Ann", Email: "ann@example.com", Phone: "+1 555 0100"}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		o, err := s.CreateOrder(asCustomer(t, "ann", fmt.Sprintf("k%d", i)), pickup("margherita"))
		if err != nil {
			t.Fatal(err)
		}
		if got := o.GetOrder().GetCustomerName(); got != "Ann" {
			t.Errorf("order %d customer name = %q, want Ann", i, got)
		}
	}
	if n := s.profiles.storeReads(); n != 1 {
		t.Errorf("10 orders read the profile %d times, want 1", n)
	}
}

// failingMenu is a menu service that is down.
type failingMenu struct{ menuv1.MenuServiceClient }

func (failingMenu) PriceOrder(context.Context, *menuv1.PriceOrderRequest, ...grpc.CallOption) (*menuv1.PriceOrderResponse, error) {
	return nil, status.Error(codes.Unavailable, "menu down")
}

func TestStaleKitchenEventKeepsEstimate(t *testing.T) {
	s, c := newServer(t)
	placed, err := s.CreateOrder(asCustomer(t, "ann", "k"), pickup("margherita"))
	if err != nil {
		t.Fatal(err)
	}
	id := placed.GetOrder().GetId()
	queued, baking := c.t.Add(20*time.Minute), c.t.Add(9*time.Minute)
	ctx := testContext(t)
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

// countingMenu is fakeMenu counting its PriceOrder calls.
type countingMenu struct {
	fakeMenu
	calls atomic.Int32
}

func (m *countingMenu) PriceOrder(ctx context.Context, req *menuv1.PriceOrderRequest, opts ...grpc.CallOption) (*menuv1.PriceOrderResponse, error) {
	m.calls.Add(1)
	return m.fakeMenu.PriceOrder(ctx, req, opts...)
}

// TestPlaceAsksMenuOnce: with the caches warm, placing an order asks the
// menu for nothing; a menu change empties the price cache.
func TestPlaceAsksMenuOnce(t *testing.T) {
	s, _ := newServer(t)
	menu := &countingMenu{}
	s.menu = menu
	for i := range 10 {
		if _, err := s.CreateOrder(asCustomer(t, "ann", fmt.Sprintf("m%d", i)), pickup("margherita")); err != nil {
			t.Fatal(err)
		}
	}
	if n := menu.calls.Load(); n != 1 {
		t.Errorf("10 orders of one pizza asked the menu %d times, want 1", n)
	}
	s.PricesChanged(nil)
	if _, err := s.CreateOrder(asCustomer(t, "ann", "after-change"), pickup("margherita")); err != nil {
		t.Fatal(err)
	}
	if n := menu.calls.Load(); n != 2 {
		t.Errorf("after a menu change the menu was asked %d times in all, want 2", n)
	}
}

// versionedMenu answers every price at its version, in cents of USD.
type versionedMenu struct {
	fakeMenu
	mu      sync.Mutex
	version int64
	amount  int64
	calls   int
}

func (m *versionedMenu) set(version, amount int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.version, m.amount = version, amount
}

func (m *versionedMenu) PriceOrder(_ context.Context, req *menuv1.PriceOrderRequest, _ ...grpc.CallOption) (*menuv1.PriceOrderResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	usd := &commonv1.Money{CurrencyCode: "USD", AmountMinor: m.amount}
	return &menuv1.PriceOrderResponse{MenuVersion: m.version, Price: &menuv1.PriceBreakdown{
		Pizza: &menuv1.PriceLine{ItemId: req.GetPizzaId(), Name: req.GetPizzaId(), Price: usd},
		Total: usd, Size: req.GetSize(),
	}}, nil
}

// TestPriceFromReplicaBehindNotKept: the event of a price change reaches the
// order service before the menu replica it asks next has heard of it. That
// replica's old price is not kept, so the next order asks again and gets
// the new one, instead of the old price being served for a minute.
func TestPriceFromReplicaBehindNotKept(t *testing.T) {
	s, _ := newServer(t)
	menu := &versionedMenu{version: 20, amount: 900}
	s.menu = menu
	price := func(key string) int64 {
		t.Helper()
		o, err := s.CreateOrder(asCustomer(t, "ann", key), pickup("margherita"))
		if err != nil {
			t.Fatal(err)
		}
		return o.GetOrder().GetPrice().GetTotal().GetAmountMinor()
	}
	if got := price("before"); got != 900 {
		t.Fatalf("first order priced %d, want 900", got)
	}
	ev, err := proto.Marshal(&menuv1.MenuChanged{EventId: "e21", MenuVersion: 21})
	if err != nil {
		t.Fatal(err)
	}
	s.PricesChanged(ev)     // the change to 950 at version 21, made on another replica
	price("replica-behind") // the replica asked has not heard of it yet
	menu.set(21, 950)       // now it has
	if got := price("caught-up"); got != 950 {
		t.Errorf("order after the replica caught up priced %d, want 950: the behind replica's price was kept", got)
	}
	price("cached")
	if menu.calls != 3 {
		t.Errorf("menu asked %d times, want 3: prices at the announced version are kept", menu.calls)
	}
}

// TestIdempotentRetrySameOrder: a retry gets exactly the order the first
// call answered, to the last field, though the first answer came from
// memory and the retry's from the store.
func TestIdempotentRetrySameOrder(t *testing.T) {
	s, c := newServer(t)
	c.t = c.t.Add(123456789 * time.Nanosecond)
	first, err := s.CreateOrder(asCustomer(t, "ann", "k"), pickup("margherita"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.CreateOrder(asCustomer(t, "ann", "k"), pickup("margherita"))
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(first, again) {
		t.Errorf("retry with the same key answered\n%v\nwant what the first call answered\n%v", again, first)
	}
}
