package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/e2e/stack"
	"github.com/pizzashop/pizzashop/pkg/devstack"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
)

// TestSteadyStateScansNothing runs orders through their whole lifecycle
// once the shop is warm and counts what the store did meanwhile: every
// statement finds its documents by key, none reads a collection. It also
// reports the statements an order costs, the figure that decides how many
// orders the store can take.
func TestSteadyStateScansNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole stack")
	}
	s := stack.Start(t)
	kitchen, courier := s.Token("kitchen", "kim"), s.Token("courier", "cody")
	customer := s.Token("customer", uniq("steady"))
	lifecycle := func(n int) {
		var orders []*orderv1.Order
		for range n {
			orders = append(orders, place(t, s, customer, pickupBody("margherita", "SIZE_SMALL", "basil")))
		}
		for _, o := range orders {
			waitStatus(t, s, customer, o.GetId(), orderv1.OrderStatus_ORDER_STATUS_ACCEPTED, 10*time.Second)
			post(t, s, "/v1/kitchen/tickets/"+o.GetId()+":start", kitchen, http.StatusOK)
			post(t, s, "/v1/kitchen/tickets/"+o.GetId()+":ready", kitchen, http.StatusOK)
		}
		for _, o := range orders {
			waitStatus(t, s, customer, o.GetId(), orderv1.OrderStatus_ORDER_STATUS_READY, 10*time.Second)
			eventually(t, 10*time.Second, "the counter has "+o.GetId(), func() (bool, string) {
				code, raw, _ := s.Do(http.MethodPost, "/v1/delivery/deliveries/"+o.GetId()+":pickup", courier, map[string]any{})
				return code == http.StatusOK, string(raw)
			})
			waitStatus(t, s, customer, o.GetId(), orderv1.OrderStatus_ORDER_STATUS_PICKED_UP, 10*time.Second)
		}
	}
	lifecycle(3)                // warm: caches, connections, the kitchen's queue count
	time.Sleep(2 * time.Second) // let the warm-up's events and marks settle
	before := s.StoreStatements()
	const n = 20
	lifecycle(n)
	time.Sleep(2 * time.Second) // and this run's
	after := s.StoreStatements()

	total := 0.0
	for _, d := range statementsSince(before, after) {
		total += float64(d.Count)
		t.Logf("%6.2f per order: %s %s by %s", float64(d.Count)/n, d.Command, d.Collection, d.Lookup)
		if d.Lookup == "scan" {
			t.Errorf("steady state: %d %s statements on %s read the whole collection, want none", d.Count, d.Command, d.Collection)
		}
	}
	t.Logf("%.1f store statements per order, placed to picked up", total/n)
}

// statementsSince returns the counts of after that grew since before.
func statementsSince(before, after []devstack.StoreCommand) []devstack.StoreCommand {
	key := func(c devstack.StoreCommand) string { return fmt.Sprint(c.Command, "/", c.Collection, "/", c.Lookup) }
	was := map[string]int64{}
	for _, c := range before {
		was[key(c)] = c.Count
	}
	var out []devstack.StoreCommand
	for _, c := range after {
		if d := c.Count - was[key(c)]; d > 0 {
			c.Count = d
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b devstack.StoreCommand) int { return int(b.Count - a.Count) })
	return out
}
