package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/e2e/stack"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
)

// The tests in this file take NATS and the store down while the shop runs,
// and check that nothing accepted is lost and that the shop catches up when
// they come back.

// TestNATSOutage places orders while NATS is down: they are accepted and
// stored, their events wait in the outbox, and once NATS is back every one
// reaches the kitchen exactly once.
func TestNATSOutage(t *testing.T) {
	s := stack.Start(t)
	customer := s.Token("customer", uniq("outage"))
	before := place(t, s, customer, pickupBody("margherita", "SIZE_SMALL"))
	waitStatus(t, s, customer, before.GetId(), orderv1.OrderStatus_ORDER_STATUS_ACCEPTED, 10*time.Second)

	s.StopNATS()
	var during []string
	for range 3 {
		o := place(t, s, customer, pickupBody("funghi", "SIZE_MEDIUM"))
		during = append(during, o.GetId())
	}
	time.Sleep(2 * time.Second)
	for _, id := range during {
		if _, o, raw := getOrder(t, s, customer, id); o == nil || o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_PLACED {
			t.Fatalf("order %s placed during the outage = %s, want it stored and PLACED", id, raw)
		}
	}

	s.StartNATS()
	for _, id := range during {
		waitStatus(t, s, customer, id, orderv1.OrderStatus_ORDER_STATUS_ACCEPTED, 30*time.Second)
	}
	time.Sleep(time.Second)
	for _, id := range append(during, before.GetId()) {
		if n := countOn(t, s, "ORDER", "order.placed."+id); n != 1 {
			t.Errorf("%d order.placed events for %s, want exactly 1", n, id)
		}
		if n := countOn(t, s, "KITCHEN", "kitchen.queued."+id); n != 1 {
			t.Errorf("%d kitchen.queued events for %s, want exactly 1", n, id)
		}
	}
}

// TestStoreOutage takes the store down: the shop answers 503 rather than
// 500 and accepts nothing it cannot keep; an event caught in flight is held,
// not dead-lettered; and when the store is back, ordering works again and
// nothing stored before is lost.
func TestStoreOutage(t *testing.T) {
	s := stack.Start(t)
	customer := s.Token("customer", uniq("outage"))
	before := place(t, s, customer, pickupBody("margherita", "SIZE_SMALL"))
	waitStatus(t, s, customer, before.GetId(), orderv1.OrderStatus_ORDER_STATUS_ACCEPTED, 10*time.Second)

	// An order whose events are still on their way when the store goes.
	inFlight := place(t, s, customer, pickupBody("diavola", "SIZE_LARGE"))
	s.StopStore()

	code, raw, _ := s.Do(http.MethodPost, "/v1/orders", customer, pickupBody("funghi", "SIZE_SMALL"))
	if code != http.StatusServiceUnavailable || !strings.Contains(strings.ToLower(string(raw)), "unavailable") {
		t.Errorf("POST /v1/orders with the store down = %d %s, want 503 saying unavailable", code, raw)
	}
	// A menu replica that has read the menu serves it from memory; one that
	// never has answers 503 like the rest. Never a 500 or a hang.
	if code, raw, _ := s.Do(http.MethodGet, "/v1/menu", "", nil); code != http.StatusOK && code != http.StatusServiceUnavailable {
		t.Errorf("GET /v1/menu with the store down = %d %s, want 200 from a menu cache or 503", code, raw)
	}
	eventually(t, 15*time.Second, "readyz reports the outage", func() (bool, string) {
		code, raw, _ := s.Do(http.MethodGet, "/readyz", "", nil)
		return code == http.StatusServiceUnavailable, string(raw)
	})
	time.Sleep(3 * time.Second) // let consumers meet the outage

	s.StartStore()
	eventually(t, 30*time.Second, "readyz recovers", func() (bool, string) {
		code, raw, _ := s.Do(http.MethodGet, "/readyz", "", nil)
		return code == http.StatusOK, string(raw)
	})
	waitStatus(t, s, customer, inFlight.GetId(), orderv1.OrderStatus_ORDER_STATUS_ACCEPTED, 30*time.Second)
	after := place(t, s, customer, pickupBody("funghi", "SIZE_SMALL"))
	waitStatus(t, s, customer, after.GetId(), orderv1.OrderStatus_ORDER_STATUS_ACCEPTED, 15*time.Second)
	if _, o, raw := getOrder(t, s, customer, before.GetId()); o == nil || o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_ACCEPTED {
		t.Errorf("order stored before the outage = %s, want it kept, ACCEPTED", raw)
	}
	if n := countOn(t, s, "DEADLETTER", "deadletter.>"); n != 0 {
		t.Errorf("%d dead letters after a store outage, want 0: an outage is not a failure of the message", n)
	}
}
