package menuapi

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/logging"
	"github.com/pizzashop/pizzashop/pkg/natsx"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	"github.com/pizzashop/pizzashop/services/menu/internal/menudb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// TestPricingFromCache prices from memory while the menu does not change,
// and picks up a change made by another replica from its menu.changed event
// well before the cache's own maximum age (menuMaxAge, a minute) would.
func TestPricingFromCache(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, db := devstack.MongoDatabase(t)
	store := menudb.New(db, "EUR")
	if err := store.Init(ctx, time.Now()); err != nil {
		t.Fatalf("Init: %v", err)
	}
	bus, err := natsx.Connect(devstack.NATS(t), "menu-cache-test", logging.Discard())
	if err != nil {
		t.Fatalf("natsx.Connect: %v", err)
	}
	t.Cleanup(bus.Close)
	if err := bus.EnsureStream(ctx, Stream); err != nil {
		t.Fatalf("EnsureStream: %v", err)
	}
	relay := outbox.NewRelay(bus, logging.Discard(), store.Collections())
	store.Tracker = relay
	rctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = relay.Run(rctx) })
	t.Cleanup(func() { stop(); wg.Wait() })

	// Two replicas over one store; a listens for changes as main wires it.
	a, b := NewServer(store), NewServer(store)
	sub, err := bus.Conn.Subscribe(SubjectChanged, func(*nats.Msg) { a.MenuChanged() })
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := bus.Conn.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}

	price := func() int64 {
		t.Helper()
		resp, err := a.PriceOrder(ctx, &menuv1.PriceOrderRequest{PizzaId: "margherita", Size: commonv1.Size_SIZE_LARGE})
		if err != nil {
			t.Fatalf("PriceOrder: %v", err)
		}
		return resp.GetPrice().GetTotal().GetAmountMinor()
	}
	before := price()
	for range 20 {
		if got := price(); got != before {
			t.Fatalf("PriceOrder = %d, want %d while the menu does not change", got, before)
		}
	}
	if n := a.menu.storeReads(); n != 1 {
		t.Errorf("21 prices read the store %d times, want 1", n)
	}

	_, err = b.UpdatePizza(ctx, &menuv1.UpdatePizzaRequest{
		Pizza: &menuv1.Pizza{Id: "margherita", Prices: []*menuv1.SizePrice{
			{Size: commonv1.Size_SIZE_SMALL, AmountMinor: 800}, {Size: commonv1.Size_SIZE_MEDIUM, AmountMinor: 1000},
			{Size: commonv1.Size_SIZE_LARGE, AmountMinor: before + 500}}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"prices"}},
	})
	if err != nil {
		t.Fatalf("UpdatePizza on the other replica: %v", err)
	}
	// The event takes the relay's publish, JetStream and the subscription
	// to arrive: tens of milliseconds idle, seconds on a loaded machine.
	// The wait allows for that and stays far below menuMaxAge, so only the
	// event, not the cache expiring, can end it in time.
	const pickup = 15 * time.Second
	if pickup >= menuMaxAge/2 {
		t.Fatalf("the wait of %s does not tell the event from the cache expiring after %s", pickup, menuMaxAge)
	}
	changed := time.Now()
	for price() != before+500 {
		if time.Since(changed) > pickup {
			t.Fatalf("a change on another replica not picked up after %s", time.Since(changed))
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("another replica's change picked up after %s", time.Since(changed))
	if n := a.menu.storeReads(); n != 2 {
		t.Errorf("store read %d times, want 2: once at first, once after the change", n)
	}
}
