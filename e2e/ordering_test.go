package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/e2e/stack"
	"github.com/pizzashop/pizzashop/pkg/grpcx"
	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"go.mongodb.org/mongo-driver/v2/bson"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// TestOrdering proves the ordering rules against one running shop shared by
// its subtests, each with customers of its own. The rejections run first and
// alone: they check that nothing at all reached the ORDER stream. The list
// test runs alone next: it places over a hundred orders and waits until the
// kitchen has taken them all, so that its backlog does not slow the others.
func TestOrdering(t *testing.T) {
	stack.Parallel(t)
	s := stack.Start(t)
	menu := getMenu(t, s)

	t.Run("Rejections", func(t *testing.T) { testRejections(t, s.For(t), menu) })
	t.Run("List", func(t *testing.T) { testList(t, s.For(t), menu) })
	t.Run("HappyPath", func(t *testing.T) { t.Parallel(); testHappyPath(t, s.For(t), menu) })
	t.Run("Visibility", func(t *testing.T) { t.Parallel(); testVisibility(t, s.For(t), menu) })
	t.Run("Idempotency", func(t *testing.T) { t.Parallel(); testIdempotency(t, s.For(t), menu) })
	t.Run("IdempotencyRace", func(t *testing.T) { t.Parallel(); testIdempotencyRace(t, s.For(t), menu) })
	t.Run("IdempotencyGRPC", func(t *testing.T) { t.Parallel(); testIdempotencyGRPC(t, s.For(t), menu) })
	t.Run("Cancel", func(t *testing.T) { t.Parallel(); testCancel(t, s.For(t), menu) })
	t.Run("Watch", func(t *testing.T) { t.Parallel(); testWatch(t, s.For(t), menu) })
}

// Card numbers (they pass the Luhn check) that must be refused wherever
// they appear and never reach a log.
var cards = []struct{ sent, digits string }{
	{"4111 1111 1111 1111", "4111111111111111"},
	{"5555-5555-5555-4444", "5555555555554444"},
	{"4012888888881881", "4012888888881881"},
}

func testRejections(t *testing.T, s *stack.Stack, menu *menuv1.Menu) {
	pizzas, toppings := available(t, menu, 1, 4)
	pizza := pizzas[0]
	cust := uniq("rejected")
	tok := s.Token("customer", cust)

	// A pizza of our own to sell out, so that other tests keep theirs.
	admin := s.Token("admin", "ada")
	name := "Sold Out " + strings.TrimPrefix(uniq("x"), "x-")
	code, raw, _ := s.Do(http.MethodPost, "/v1/menu/pizzas", admin, map[string]any{
		"name": name, "description": "Only for the e2e test", "available": true,
		"prices": []map[string]any{
			{"size": "SIZE_SMALL", "amountMinor": 900}, {"size": "SIZE_MEDIUM", "amountMinor": 1200}, {"size": "SIZE_LARGE", "amountMinor": 1500}},
	})
	if code != http.StatusOK {
		t.Fatalf("POST /v1/menu/pizzas as admin = %d %s", code, raw)
	}
	var created menuv1.Pizza
	decode(t, "POST /v1/menu/pizzas", raw, &created)
	code, raw, _ = s.Do(http.MethodPatch, "/v1/menu/pizzas/"+created.GetId(), admin, map[string]any{"available": false})
	if code != http.StatusOK {
		t.Fatalf("PATCH /v1/menu/pizzas/%s {available:false} = %d %s", created.GetId(), code, raw)
	}

	with := func(change func(b map[string]any)) map[string]any {
		b := pickupBody(pizza, "SIZE_MEDIUM")
		change(b)
		return b
	}
	item := func(b map[string]any) map[string]any { return b["item"].(map[string]any) }
	valid := `{"item":{"pizzaId":"` + pizza + `","size":"SIZE_SMALL"},"fulfillment":"FULFILLMENT_PICKUP","paymentMethod":"PAYMENT_METHOD_CASH"`

	tests := []struct {
		name   string
		token  string
		body   any
		status int
		want   []string // in the message
		field  string   // in the BadRequest details, when set
		reason string   // of the ErrorInfo, when set
	}{
		{"four toppings", tok, with(func(b map[string]any) { item(b)["toppingIds"] = toppings[:4] }),
			400, []string{"item.topping_ids", "at most 3"}, "item.topping_ids", ""},
		{"duplicate topping", tok, with(func(b map[string]any) { item(b)["toppingIds"] = []string{toppings[0], toppings[0]} }),
			400, []string{"item.topping_ids", "twice"}, "item.topping_ids[1]", ""},
		{"unknown size name", tok, with(func(b map[string]any) { item(b)["size"] = "SIZE_HUGE" }),
			400, []string{"size", "SIZE_HUGE"}, "", ""},
		{"size 7", tok, with(func(b map[string]any) { item(b)["size"] = 7 }),
			400, []string{"item.size"}, "item.size", ""},
		{"no size", tok, with(func(b map[string]any) { delete(item(b), "size") }),
			400, []string{"item.size"}, "item.size", ""},
		{"unknown pizza", tok, with(func(b map[string]any) { item(b)["pizzaId"] = "hawaii-e2e" }),
			400, []string{"item.pizza_id", "hawaii-e2e"}, "item.pizza_id", ""},
		{"unknown topping", tok, with(func(b map[string]any) { item(b)["toppingIds"] = []string{toppings[0], "pineapple-e2e"} }),
			400, []string{"item.topping_ids[1]", "pineapple-e2e"}, "item.topping_ids[1]", ""},
		{"sold-out pizza", tok, with(func(b map[string]any) { item(b)["pizzaId"] = created.GetId() }),
			400, []string{"item.pizza_id", "sold out"}, "", "SOLD_OUT"},
		{"delivery without address", tok, with(func(b map[string]any) { b["fulfillment"] = "FULFILLMENT_DELIVERY" }),
			400, []string{"delivery_address"}, "delivery_address", ""},
		{"delivery address without city", tok, with(func(b map[string]any) {
			b["fulfillment"] = "FULFILLMENT_DELIVERY"
			b["deliveryAddress"] = map[string]any{"line1": "1 Main St", "postalCode": "12345"}
		}), 400, []string{"delivery_address.city"}, "delivery_address.city", ""},
		{"client price", tok, with(func(b map[string]any) { b["price"] = map[string]any{"total": map[string]any{"amountMinor": 1}} }),
			400, []string{"unknown field", "price"}, "", ""},
		{"client customer id", tok, with(func(b map[string]any) { b["customerId"] = "someone-else" }),
			400, []string{"unknown field", "customerId"}, "", ""},
		{"card in note", tok, with(func(b map[string]any) { b["note"] = "my card is " + cards[0].sent + " thanks" }),
			400, []string{"note", "card"}, "note", ""},
		{"card in delivery instructions", tok, with(func(b map[string]any) {
			b["fulfillment"] = "FULFILLMENT_DELIVERY"
			b["deliveryAddress"] = map[string]any{"line1": "1 Main St", "city": "Springfield", "postalCode": "12345",
				"instructions": "pay with " + cards[1].sent}
		}), 400, []string{"delivery_address.instructions", "card"}, "delivery_address.instructions", ""},
		{"card as topping id", tok, with(func(b map[string]any) { item(b)["toppingIds"] = []string{cards[2].sent} }),
			400, []string{"item.topping_ids[0]", "card"}, "item.topping_ids[0]", ""},
		{"oversized body", tok, with(func(b map[string]any) { b["note"] = strings.Repeat("x", 70<<10) }),
			413, []string{"larger than"}, "", ""},
		{"oversized note", tok, with(func(b map[string]any) { b["note"] = strings.Repeat("x", 201) }),
			400, []string{"note", "200"}, "note", ""},
		{"malformed JSON", tok, valid, 400, []string{"malformed JSON"}, "", ""},
		{"trailing data", tok, valid + `}{}`, 400, []string{"malformed JSON"}, "", ""},
		{"no credential", "", with(func(map[string]any) {}), 401, []string{"credential"}, "", ""},
		{"bad credential", "not-a-token", with(func(map[string]any) {}), 401, []string{"credential"}, "", ""},
		{"kitchen credential", s.Token("kitchen", "kim"), with(func(map[string]any) {}), 403, []string{"kitchen"}, "", ""},
	}

	before := streamMsgs(t, s)
	orders := s.Mongo("order").Collection("orders")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, raw, _ := s.Do(http.MethodPost, "/v1/orders", tt.token, tt.body)
			if code != tt.status {
				t.Fatalf("POST /v1/orders = %d %s, want %d", code, raw, tt.status)
			}
			e := decodeError(t, raw)
			if e.code == 0 {
				t.Errorf("error body %s has code 0", raw)
			}
			if w, ok := containsAll(e.message, tt.want...); !ok {
				t.Errorf("message %q does not mention %q", e.message, w)
			}
			if _, ok := e.fields[tt.field]; tt.field != "" && !ok {
				t.Errorf("field violations %v do not name %q", e.fields, tt.field)
			}
			if tt.reason != "" && e.reason != tt.reason {
				t.Errorf("reason = %q, want %q (body %s)", e.reason, tt.reason, raw)
			}

			// Nothing stored, nothing published.
			if got := listAll(t, s, tok, 100); len(got) != 0 {
				t.Errorf("GET /v1/orders lists %d orders after a rejected request, want none: first %s", len(got), got[0].GetId())
			}
			n, err := orders.CountDocuments(context.Background(), bson.D{{Key: "customer_id", Value: cust}})
			if err != nil {
				t.Fatalf("count orders: %v", err)
			}
			if n != 0 {
				t.Errorf("the order database holds %d orders of %s, want 0", n, cust)
			}
			if after := streamMsgs(t, s); after != before {
				t.Errorf("stream ORDER has %d messages, had %d before: a rejected request published", after, before)
			}
		})
	}

	// The relay publishes asynchronously: look again a moment later.
	time.Sleep(time.Second)
	if after := streamMsgs(t, s); after != before {
		t.Errorf("stream ORDER has %d messages a second after the rejections, had %d before", after, before)
	}

	t.Run("no card number in any log", func(t *testing.T) {
		for _, path := range s.LogFiles() {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cards {
				for _, form := range []string{c.sent, c.digits} {
					if i := bytes.Index(data, []byte(form)); i >= 0 {
						t.Errorf("%s holds the card number %s: %q", path, form, lineAt(data, i))
					}
				}
			}
		}
	})
}

func lineAt(data []byte, i int) string {
	start := bytes.LastIndexByte(data[:i], '\n') + 1
	end := bytes.IndexByte(data[i:], '\n')
	if end < 0 {
		end = len(data) - i
	}
	return string(data[start : i+end])
}

// eventWait bounds how long an event may take to travel: published by the
// relay, consumed by the kitchen, and back. It is generous for loaded
// machines and the race detector; on a quiet one it takes milliseconds.
const eventWait = 20 * time.Second

// idPattern is an order id: 128 random bits in lower-case base32.
var idPattern = regexp.MustCompile(`^[a-z2-7]{26}$`)

// traceparent is a W3C trace context header.
var traceparent = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)

func testHappyPath(t *testing.T, s *stack.Stack, menu *menuv1.Menu) {
	pizzas, toppings := available(t, menu, 1, 2)
	cust := uniq("happy")
	tok := s.Token("customer", cust)
	begin := time.Now()
	body := deliveryBody(pizzas[0], "SIZE_LARGE", toppings...)
	body["note"] = "extra crispy please"
	o := place(t, s, tok, body)
	end := time.Now()

	if !idPattern.MatchString(o.GetId()) {
		t.Errorf("order id %q is not 26 lower-case base32 characters", o.GetId())
	}
	if o.GetCustomerId() != cust {
		t.Errorf("customerId = %q, want %q (from the credential)", o.GetCustomerId(), cust)
	}
	if o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_PLACED {
		t.Errorf("status = %s, want ORDER_STATUS_PLACED", o.GetStatus())
	}
	if o.GetNote() != "extra crispy please" || o.GetDeliveryAddress().GetCity() != "Springfield" {
		t.Errorf("note %q, address %v: not what was ordered", o.GetNote(), o.GetDeliveryAddress())
	}

	// The price is the menu's, for the size ordered.
	size := commonv1.Size_SIZE_LARGE
	p := o.GetPrice()
	var want int64
	for _, mp := range menu.GetPizzas() {
		if mp.GetId() == pizzas[0] {
			want = menuPrice(mp.GetPrices(), size)
			if p.GetPizza().GetItemId() != mp.GetId() || p.GetPizza().GetName() != mp.GetName() || p.GetPizza().GetPrice().GetAmountMinor() != want {
				t.Errorf("price.pizza = %v, want %s %q at %d", p.GetPizza(), mp.GetId(), mp.GetName(), want)
			}
		}
	}
	if len(p.GetToppings()) != len(toppings) {
		t.Fatalf("price has %d topping lines, want %d: %v", len(p.GetToppings()), len(toppings), p)
	}
	for i, id := range toppings {
		for _, mt := range menu.GetToppings() {
			if mt.GetId() != id {
				continue
			}
			amount := menuPrice(mt.GetPrices(), size)
			want += amount
			if l := p.GetToppings()[i]; l.GetItemId() != id || l.GetPrice().GetAmountMinor() != amount {
				t.Errorf("price.toppings[%d] = %v, want %s at %d", i, l, id, amount)
			}
		}
	}
	if got := p.GetTotal().GetAmountMinor(); got != want {
		t.Errorf("price.total = %d, want %d (the menu's prices for %s)", got, want, size)
	}
	for _, m := range []*commonv1.Money{p.GetTotal(), p.GetPizza().GetPrice()} {
		if m.GetCurrencyCode() != menu.GetCurrencyCode() {
			t.Errorf("currency %q, want the menu's %q", m.GetCurrencyCode(), menu.GetCurrencyCode())
		}
	}
	if p.GetSize() != size {
		t.Errorf("price.size = %s, want %s", p.GetSize(), size)
	}
	ct := o.GetCreateTime().AsTime()
	if ct.Before(begin.Add(-5*time.Second)) || ct.After(end.Add(5*time.Second)) {
		t.Errorf("createTime %s, want about %s", ct, begin)
	}
	if h := o.GetHistory(); len(h) != 1 || h[0].GetStatus() != orderv1.OrderStatus_ORDER_STATUS_PLACED || !h[0].GetChangeTime().AsTime().Equal(ct) {
		t.Errorf("history = %v, want one PLACED step at createTime", h)
	}

	// Exactly one order.placed event, its id as Nats-Msg-Id, with trace context.
	subject := "order.placed." + o.GetId()
	waitPlaced(t, s, o.GetId(), eventWait)
	msg, ev := placedEvent(t, s, o.GetId())
	if got := msg.Header.Get("Nats-Msg-Id"); got == "" || got != ev.GetEventId() {
		t.Errorf("Nats-Msg-Id = %q, want the event id %q", got, ev.GetEventId())
	}
	if tp := msg.Header.Get("traceparent"); !traceparent.MatchString(tp) {
		t.Errorf("traceparent header = %q, want W3C trace context (headers %v)", tp, msg.Header)
	}
	if ev.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_PLACED || ev.GetOrder().GetId() != o.GetId() ||
		ev.GetOrder().GetPrice().GetTotal().GetAmountMinor() != want || ev.GetOccurTime() == nil {
		t.Errorf("event = %v, want the placed order %s", ev, o.GetId())
	}
	// The kitchen takes it; by then any duplicate would have been published.
	waitStatus(t, s, tok, o.GetId(), orderv1.OrderStatus_ORDER_STATUS_ACCEPTED, eventWait)
	if n := subjectCount(t, s, subject); n != 1 {
		t.Errorf("%d messages on %s, want exactly 1", n, subject)
	}
}

func testVisibility(t *testing.T, s *stack.Stack, menu *menuv1.Menu) {
	pizzas, _ := available(t, menu, 1, 0)
	owner := s.Token("customer", uniq("owner"))
	other := s.Token("customer", uniq("other"))
	o := place(t, s, owner, pickupBody(pizzas[0], "SIZE_SMALL"))

	if code, got, raw := getOrder(t, s, owner, o.GetId()); code != http.StatusOK || got.GetId() != o.GetId() {
		t.Errorf("GET own order = %d %s, want 200", code, raw)
	}
	if code, got, raw := getOrder(t, s, s.Token("kitchen", "kim"), o.GetId()); code != http.StatusOK || got.GetId() != o.GetId() {
		t.Errorf("GET order with a kitchen credential = %d %s, want 200 (staff read any order)", code, raw)
	}

	// Another customer learns nothing, not even that the order exists.
	code, foreign, _ := s.Do(http.MethodGet, "/v1/orders/"+o.GetId(), other, nil)
	if code != http.StatusNotFound {
		t.Fatalf("GET another customer's order = %d %s, want 404", code, foreign)
	}
	missingID := strings.Repeat("a", 26)
	code, missing, _ := s.Do(http.MethodGet, "/v1/orders/"+missingID, other, nil)
	if code != http.StatusNotFound {
		t.Fatalf("GET a missing order = %d %s, want 404", code, missing)
	}
	fe, me := decodeError(t, foreign), decodeError(t, missing)
	if fe.code != me.code || fe.reason != me.reason || strings.Contains(string(foreign), o.GetId()) != strings.Contains(string(missing), missingID) {
		t.Errorf("another customer's order answers\n  %s\nbut a missing one\n  %s", foreign, missing)
	}
	if a, b := string(foreign), strings.ReplaceAll(string(missing), missingID, o.GetId()); a != b {
		t.Errorf("another customer's order and a missing order answer different bodies, which tells them apart:\n  foreign: %s\n  missing: %s", a, missing)
	}
}

func testList(t *testing.T, s *stack.Stack, menu *menuv1.Menu) {
	pizzas, _ := available(t, menu, 1, 0)
	cust := uniq("lister")
	tok := s.Token("customer", cust)
	other := s.Token("customer", uniq("neighbour"))
	theirs := place(t, s, other, pickupBody(pizzas[0], "SIZE_SMALL"))

	// More orders than the largest page, placed a few at a time.
	const n = 105
	ids := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			code, raw, _ := s.Do(http.MethodPost, "/v1/orders", tok, pickupBody(pizzas[0], "SIZE_SMALL"))
			if code != http.StatusOK {
				t.Errorf("POST /v1/orders #%d = %d %s", i, code, raw)
				return
			}
			var o orderv1.Order
			if err := protojson.Unmarshal(raw, &o); err != nil {
				t.Errorf("POST /v1/orders #%d: %v", i, err)
			}
			ids[i] = o.GetId()
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	code, raw, _ := s.Do(http.MethodGet, "/v1/orders?pageSize=1000", tok, nil)
	if code != http.StatusOK {
		t.Fatalf("GET /v1/orders?pageSize=1000 = %d %s", code, raw)
	}
	var page orderv1.ListOrdersResponse
	decode(t, "GET /v1/orders", raw, &page)
	if got := len(page.GetOrders()); got > 100 || got == 0 {
		t.Errorf("pageSize=1000 answered %d orders, want at most 100", got)
	}
	if page.GetNextPageToken() == "" {
		t.Errorf("pageSize=1000 with %d orders answered no nextPageToken", n)
	}

	all := listAll(t, s, tok, 7)
	seen := map[string]bool{}
	for i, o := range all {
		if seen[o.GetId()] {
			t.Errorf("order %s listed twice while paging", o.GetId())
		}
		seen[o.GetId()] = true
		if o.GetCustomerId() != cust {
			t.Errorf("listed order %s of customer %q, want only %q's", o.GetId(), o.GetCustomerId(), cust)
		}
		if o.GetId() == theirs.GetId() {
			t.Errorf("another customer's order %s is listed", o.GetId())
		}
		if i > 0 {
			prev, cur := all[i-1].GetCreateTime().AsTime(), o.GetCreateTime().AsTime()
			if cur.After(prev) {
				t.Errorf("orders[%d] created %s after orders[%d] %s: want newest first", i, cur, i-1, prev)
			}
		}
	}
	for _, id := range ids {
		if !seen[id] {
			t.Errorf("order %s was placed but never listed", id)
		}
	}
	if len(all) != n {
		t.Errorf("paging listed %d orders, want %d", len(all), n)
	}
	for _, o := range listAll(t, s, other, 100) {
		if o.GetCustomerId() != theirs.GetCustomerId() {
			t.Errorf("the neighbour's list holds order %s of %q", o.GetId(), o.GetCustomerId())
		}
	}

	// Let the kitchen catch up before the other subtests run.
	eventually(t, 60*time.Second, "the kitchen accepts every listed order", func() (bool, string) {
		waiting := 0
		for _, o := range listAll(t, s, tok, 100) {
			if o.GetStatus() == orderv1.OrderStatus_ORDER_STATUS_PLACED {
				waiting++
			}
		}
		return waiting == 0, fmt.Sprintf("%d orders still PLACED", waiting)
	})
}

func testIdempotency(t *testing.T, s *stack.Stack, menu *menuv1.Menu) {
	pizzas, toppings := available(t, menu, 2, 1)
	cust := uniq("retrier")
	tok := s.Token("customer", cust)
	key := uniq("key")
	body := pickupBody(pizzas[0], "SIZE_MEDIUM", toppings...)

	first := place(t, s, tok, body, "Idempotency-Key", key)
	again := place(t, s, tok, body, "Idempotency-Key", key)
	if again.GetId() != first.GetId() {
		t.Errorf("same key and body placed %s, then %s: want the original order back", first.GetId(), again.GetId())
	}

	code, raw, _ := s.Do(http.MethodPost, "/v1/orders", tok, pickupBody(pizzas[1], "SIZE_LARGE"), "Idempotency-Key", key)
	if code != http.StatusUnprocessableEntity {
		t.Errorf("same key, other body = %d %s, want 422", code, raw)
	} else if e := decodeError(t, raw); e.reason != "IDEMPOTENCY_KEY_REUSED" || e.message == "" {
		t.Errorf("same key, other body: reason %q message %q, want IDEMPOTENCY_KEY_REUSED with a message", e.reason, e.message)
	}

	// Keys are per customer: another one with the same key gets an order of its own.
	neighbour := s.Token("customer", uniq("neighbour"))
	theirs := place(t, s, neighbour, body, "Idempotency-Key", key)
	if theirs.GetId() == first.GetId() || theirs.GetCustomerId() == cust {
		t.Errorf("another customer with the same key got order %s of %q: keys must be per customer", theirs.GetId(), theirs.GetCustomerId())
	}

	// A key whose request the menu refused is not spent: the corrected
	// request with the same key goes through.
	fixKey := uniq("fix")
	code, raw, _ = s.Do(http.MethodPost, "/v1/orders", tok, pickupBody("no-such-pizza", "SIZE_SMALL"), "Idempotency-Key", fixKey)
	if code != http.StatusBadRequest {
		t.Errorf("unknown pizza with a key = %d %s, want 400", code, raw)
	}
	fixed := place(t, s, tok, body, "Idempotency-Key", fixKey)

	if got := listAll(t, s, tok, 100); len(got) != 2 || got[1].GetId() != first.GetId() || got[0].GetId() != fixed.GetId() {
		t.Errorf("the customer has %d orders, want exactly %s and %s", len(got), fixed.GetId(), first.GetId())
	}
	waitStatus(t, s, tok, first.GetId(), orderv1.OrderStatus_ORDER_STATUS_ACCEPTED, eventWait)
	if n := subjectCount(t, s, "order.placed."+first.GetId()); n != 1 {
		t.Errorf("%d order.placed events for %s, want 1", n, first.GetId())
	}
}

func testIdempotencyRace(t *testing.T, s *stack.Stack, menu *menuv1.Menu) {
	pizzas, _ := available(t, menu, 1, 0)
	cust := uniq("racer")
	tok := s.Token("customer", cust)
	key := uniq("race")
	body := pickupBody(pizzas[0], "SIZE_SMALL")

	const n = 20
	type answer struct {
		code int
		raw  []byte
		id   string
	}
	answers := make([]answer, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			code, raw, m := s.Do(http.MethodPost, "/v1/orders", tok, body, "Idempotency-Key", key)
			id, _ := m["id"].(string)
			answers[i] = answer{code, raw, id}
		})
	}
	close(start)
	wg.Wait()

	var id string
	oks, conflicts := 0, 0
	for i, a := range answers {
		switch a.code {
		case http.StatusOK:
			oks++
			if id == "" {
				id = a.id
			}
			if a.id != id {
				t.Errorf("answer %d: order %s, but another answer was %s: two orders for one key", i, a.id, id)
			}
		case http.StatusConflict:
			conflicts++
		default:
			t.Errorf("answer %d = %d %s, want 200 or 409", i, a.code, a.raw)
		}
	}
	t.Logf("%d concurrent requests with one key: %d answered 200, %d 409", n, oks, conflicts)
	if oks == 0 {
		t.Fatalf("no request succeeded")
	}
	got := listAll(t, s, tok, 100)
	if len(got) != 1 || got[0].GetId() != id {
		var ids []string
		for _, o := range got {
			ids = append(ids, o.GetId())
		}
		t.Errorf("the customer has orders %v, want exactly [%s]", ids, id)
	}
	// After the race a retry still gets the one order.
	if again := place(t, s, tok, body, "Idempotency-Key", key); again.GetId() != id {
		t.Errorf("a retry after the race placed %s, want %s", again.GetId(), id)
	}
	waitStatus(t, s, tok, id, orderv1.OrderStatus_ORDER_STATUS_ACCEPTED, eventWait)
	if n := subjectCount(t, s, "order.placed."+id); n != 1 {
		t.Errorf("%d order.placed events for %s, want 1", n, id)
	}
}

func testIdempotencyGRPC(t *testing.T, s *stack.Stack, menu *menuv1.Menu) {
	pizzas, _ := available(t, menu, 2, 0)
	cust := uniq("grpc")
	tok := s.Token("customer", cust)
	key := uniq("grpc-key")
	conn, err := grpc.NewClient(s.GRPCAddr("order"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := orderv1.NewOrderServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok, "idempotency-key", key)
	req := &orderv1.CreateOrderRequest{
		Item:          &orderv1.OrderItem{PizzaId: pizzas[0], Size: commonv1.Size_SIZE_SMALL},
		Fulfillment:   orderv1.Fulfillment_FULFILLMENT_PICKUP,
		PaymentMethod: orderv1.PaymentMethod_PAYMENT_METHOD_CASH,
	}
	first, err := client.CreateOrder(ctx, req)
	if err != nil {
		t.Fatalf("CreateOrder: %v", err)
	}
	again, err := client.CreateOrder(ctx, req)
	if err != nil {
		t.Fatalf("CreateOrder again: %v", err)
	}
	if again.GetOrder().GetId() != first.GetOrder().GetId() {
		t.Errorf("CreateOrder with one key twice: %s then %s, want the same order", first.GetOrder().GetId(), again.GetOrder().GetId())
	}
	// The same request over REST with the same key is the same request.
	viaREST := place(t, s, tok, pickupBody(pizzas[0], "SIZE_SMALL"), "Idempotency-Key", key)
	if viaREST.GetId() != first.GetOrder().GetId() {
		t.Errorf("the same request over REST placed %s, want %s", viaREST.GetId(), first.GetOrder().GetId())
	}
	other := &orderv1.CreateOrderRequest{
		Item:          &orderv1.OrderItem{PizzaId: pizzas[1], Size: commonv1.Size_SIZE_LARGE},
		Fulfillment:   orderv1.Fulfillment_FULFILLMENT_PICKUP,
		PaymentMethod: orderv1.PaymentMethod_PAYMENT_METHOD_CARD,
	}
	_, err = client.CreateOrder(ctx, other)
	if status.Code(err) != codes.FailedPrecondition || grpcx.Reason(err) != "IDEMPOTENCY_KEY_REUSED" {
		t.Errorf("CreateOrder with the key and another body: %v, want FAILED_PRECONDITION IDEMPOTENCY_KEY_REUSED", err)
	}
	if got := listAll(t, s, tok, 100); len(got) != 1 {
		t.Errorf("the customer has %d orders, want 1", len(got))
	}
}

func testCancel(t *testing.T, s *stack.Stack, menu *menuv1.Menu) {
	pizzas, _ := available(t, menu, 1, 0)
	cust := uniq("canceller")
	tok := s.Token("customer", cust)
	kitchen := s.Token("kitchen", "kim")

	t.Run("right after placing", func(t *testing.T) {
		o := place(t, s, tok, pickupBody(pizzas[0], "SIZE_SMALL"))
		code, raw, _ := s.Do(http.MethodPost, "/v1/orders/"+o.GetId()+":cancel", tok, map[string]any{"reason": "changed my mind"})
		if code != http.StatusOK {
			t.Fatalf("cancel = %d %s, want 200", code, raw)
		}
		var c orderv1.Order
		decode(t, "cancel", raw, &c)
		h := c.GetHistory()
		if c.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_CANCELLED || len(h) < 2 ||
			h[0].GetStatus() != orderv1.OrderStatus_ORDER_STATUS_PLACED || h[len(h)-1].GetStatus() != orderv1.OrderStatus_ORDER_STATUS_CANCELLED {
			t.Fatalf("cancel answered status %s history %v, want CANCELLED after PLACED", c.GetStatus(), h)
		}
		if r := h[len(h)-1].GetReason(); r != "changed my mind" {
			t.Errorf("cancel reason in history = %q, want the customer's", r)
		}

		// The kitchen holds a cancelled ticket (or tombstone), and the
		// placed event arriving late changes nothing.
		waitTicket(t, s, o.GetId(), kitchenv1.TicketStatus_TICKET_STATUS_CANCELLED, 5*time.Second)
		waitPlaced(t, s, o.GetId(), eventWait)
		time.Sleep(time.Second)
		if _, tk, _ := getTicket(t, s, o.GetId()); tk.GetStatus() != kitchenv1.TicketStatus_TICKET_STATUS_CANCELLED {
			t.Errorf("after the placed event, ticket is %s, want still CANCELLED", tk.GetStatus())
		}
		if _, got, _ := getOrder(t, s, tok, o.GetId()); got.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_CANCELLED {
			t.Errorf("after the kitchen's events, order is %s, want still CANCELLED", got.GetStatus())
		}

		// Cancelling again is fine and changes nothing.
		code, raw, _ = s.Do(http.MethodPost, "/v1/orders/"+o.GetId()+":cancel", tok, map[string]any{})
		if code != http.StatusOK {
			t.Fatalf("second cancel = %d %s, want 200", code, raw)
		}
		var c2 orderv1.Order
		decode(t, "second cancel", raw, &c2)
		if c2.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_CANCELLED {
			t.Errorf("second cancel answered %s", c2.GetStatus())
		}
	})

	t.Run("after accepted", func(t *testing.T) {
		o := place(t, s, tok, pickupBody(pizzas[0], "SIZE_SMALL"))
		waitStatus(t, s, tok, o.GetId(), orderv1.OrderStatus_ORDER_STATUS_ACCEPTED, eventWait)
		code, raw, _ := s.Do(http.MethodPost, "/v1/orders/"+o.GetId()+":cancel", tok, map[string]any{})
		if code != http.StatusOK {
			t.Fatalf("cancel of an accepted order = %d %s, want 200", code, raw)
		}
		waitTicket(t, s, o.GetId(), kitchenv1.TicketStatus_TICKET_STATUS_CANCELLED, 5*time.Second)
	})

	t.Run("after the kitchen started", func(t *testing.T) {
		o := place(t, s, tok, pickupBody(pizzas[0], "SIZE_SMALL"))
		waitTicket(t, s, o.GetId(), kitchenv1.TicketStatus_TICKET_STATUS_QUEUED, eventWait)
		code, raw, _ := s.Do(http.MethodPost, "/v1/kitchen/tickets/"+o.GetId()+":start", kitchen, map[string]any{})
		if code != http.StatusOK {
			t.Fatalf("start ticket = %d %s", code, raw)
		}
		code, raw, _ = s.Do(http.MethodPost, "/v1/orders/"+o.GetId()+":cancel", tok, map[string]any{})
		if code != http.StatusConflict {
			t.Fatalf("cancel after the kitchen started = %d %s, want 409", code, raw)
		}
		if e := decodeError(t, raw); e.message == "" || e.reason != "ORDER_NOT_CANCELLABLE" {
			t.Errorf("cancel after start: message %q reason %q, want a reason message and ORDER_NOT_CANCELLABLE", e.message, e.reason)
		}
		got := waitStatus(t, s, tok, o.GetId(), orderv1.OrderStatus_ORDER_STATUS_BAKING, eventWait)
		for _, h := range got.GetHistory() {
			if h.GetStatus() == orderv1.OrderStatus_ORDER_STATUS_CANCELLED {
				t.Errorf("the baking order's history holds CANCELLED: %v", got.GetHistory())
			}
		}
	})

	t.Run("by another customer", func(t *testing.T) {
		o := place(t, s, tok, pickupBody(pizzas[0], "SIZE_SMALL"))
		code, raw, _ := s.Do(http.MethodPost, "/v1/orders/"+o.GetId()+":cancel", s.Token("customer", uniq("stranger")), map[string]any{})
		if code != http.StatusNotFound {
			t.Errorf("another customer's cancel = %d %s, want 404", code, raw)
		}
		if _, got, _ := getOrder(t, s, tok, o.GetId()); got.GetStatus() == orderv1.OrderStatus_ORDER_STATUS_CANCELLED {
			t.Errorf("another customer's cancel cancelled the order")
		}
	})
}

func testWatch(t *testing.T, s *stack.Stack, menu *menuv1.Menu) {
	pizzas, _ := available(t, menu, 1, 0)
	tok := s.Token("customer", uniq("watcher"))
	o := place(t, s, tok, pickupBody(pizzas[0], "SIZE_MEDIUM"))

	t.Run("another customer", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), eventWait)
		defer cancel()
		resp, err := (&http.Client{}).Do(s.Request(ctx, http.MethodGet, "/v1/orders/"+o.GetId()+":watch", s.Token("customer", uniq("peeker")), nil))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("another customer's watch = %d, want 404", resp.StatusCode)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	begin := time.Now()
	resp, err := (&http.Client{}).Do(s.Request(ctx, http.MethodGet, "/v1/orders/"+o.GetId()+":watch", tok, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("watch = %d, want 200", resp.StatusCode)
	}
	lines := make(chan *orderv1.Order, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var line struct {
				Result json.RawMessage `json:"result"`
				Error  json.RawMessage `json:"error"`
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil || line.Result == nil {
				t.Errorf("watch line %q: want {\"result\":{\"order\":...}} (%v)", sc.Bytes(), err)
				return
			}
			var r orderv1.WatchOrderResponse
			if err := protojson.Unmarshal(line.Result, &r); err != nil {
				t.Errorf("watch line %s: %v", line.Result, err)
				return
			}
			lines <- r.GetOrder()
		}
	}()
	next := func(what string, timeout time.Duration) *orderv1.Order {
		t.Helper()
		select {
		case got, ok := <-lines:
			if !ok {
				t.Fatalf("watch ended before %s", what)
			}
			return got
		case <-time.After(timeout):
			t.Fatalf("watch sent no line for %s within %s", what, timeout)
		}
		return nil
	}

	first := next("the current state", 3*time.Second)
	t.Logf("first line after %s: %s", time.Since(begin).Round(time.Millisecond), first.GetStatus())
	if first.GetId() != o.GetId() {
		t.Fatalf("first line is order %q, want %s", first.GetId(), o.GetId())
	}
	seen := []orderv1.OrderStatus{first.GetStatus()}
	last := first
	for last.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_ACCEPTED {
		got := next("ACCEPTED", eventWait)
		if got.GetRevision() <= last.GetRevision() {
			t.Errorf("revision %d after %d: a stale line", got.GetRevision(), last.GetRevision())
		}
		seen, last = append(seen, got.GetStatus()), got
	}
	code, raw, _ := s.Do(http.MethodPost, "/v1/kitchen/tickets/"+o.GetId()+":start", s.Token("kitchen", "kim"), map[string]any{})
	if code != http.StatusOK {
		t.Fatalf("start ticket = %d %s", code, raw)
	}
	for last.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_BAKING {
		got := next("BAKING", eventWait)
		if got.GetRevision() <= last.GetRevision() {
			t.Errorf("revision %d after %d: a stale line", got.GetRevision(), last.GetRevision())
		}
		seen, last = append(seen, got.GetStatus()), got
	}
	if !slices.Contains(seen, orderv1.OrderStatus_ORDER_STATUS_ACCEPTED) {
		t.Errorf("statuses seen %v, want ACCEPTED among them", seen)
	}
	if got := last.GetEstimatedReadyTime(); got == nil || !got.AsTime().After(time.Now()) {
		t.Errorf("a baking order's estimatedReadyTime = %v, want a time ahead", got)
	}
}

// TestOrderingMenuDown: with the menu service down an order cannot be
// priced, which is the service being unavailable (503), not a fault (500);
// once the menu is back, ordering works again.
func TestOrderingMenuDown(t *testing.T) {
	stack.Parallel(t)
	s := stack.Start(t)
	pizzas, _ := available(t, getMenu(t, s), 1, 0)
	tok := s.Token("customer", uniq("patient"))
	before := streamMsgs(t, s)

	s.Stop("menu")
	code, raw, _ := s.Do(http.MethodPost, "/v1/orders", tok, pickupBody(pizzas[0], "SIZE_SMALL"))
	if code != http.StatusServiceUnavailable {
		t.Errorf("POST /v1/orders with the menu down = %d %s, want 503", code, raw)
	} else if e := decodeError(t, raw); !strings.Contains(e.message, "unavailable") {
		t.Errorf("503 message %q does not say unavailable", e.message)
	}
	if got := listAll(t, s, tok, 100); len(got) != 0 {
		t.Errorf("an order was stored while the menu was down: %s", got[0].GetId())
	}
	if after := streamMsgs(t, s); after != before {
		t.Errorf("stream ORDER has %d messages, had %d: something was published while the menu was down", after, before)
	}

	s.StartService("menu")
	var o orderv1.Order
	eventually(t, 20*time.Second, "POST /v1/orders works again after the menu restarted", func() (bool, string) {
		code, raw, _ := s.Do(http.MethodPost, "/v1/orders", tok, pickupBody(pizzas[0], "SIZE_SMALL"), "Idempotency-Key", "after-menu-restart")
		if code != http.StatusOK {
			if code != http.StatusServiceUnavailable {
				t.Errorf("while the menu comes back: POST = %d %s, want 200 or 503", code, raw)
			}
			return false, fmt.Sprintf("%d %s", code, raw)
		}
		decode(t, "POST /v1/orders", raw, &o)
		return true, ""
	})
	if got := listAll(t, s, tok, 100); len(got) != 1 || got[0].GetId() != o.GetId() {
		t.Errorf("the customer has %d orders, want exactly %s", len(got), o.GetId())
	}
}

// TestOutboxCrash: an order stored while its event could not be published
// (the relay is off, then the process dies) is published exactly once by the
// next process, and the kitchen then takes it.
func TestOutboxCrash(t *testing.T) {
	stack.Parallel(t)
	s := stack.Start(t, stack.WithEnv("order", "OUTBOX_RELAY_DISABLED=true"))
	pizzas, _ := available(t, getMenu(t, s), 1, 0)
	tok := s.Token("customer", uniq("crash"))

	o := place(t, s, tok, pickupBody(pizzas[0], "SIZE_SMALL"))
	if code, _, raw := getOrder(t, s, tok, o.GetId()); code != http.StatusOK {
		t.Fatalf("GET the stored order = %d %s, want 200", code, raw)
	}
	subject := "order.placed." + o.GetId()
	time.Sleep(1500 * time.Millisecond)
	if n := subjectCount(t, s, subject); n != 0 {
		t.Fatalf("%d messages on %s with the relay off, want 0", n, subject)
	}
	var doc bson.M
	if err := s.Mongo("order").Collection("orders").FindOne(context.Background(), bson.D{{Key: "_id", Value: o.GetId()}}).Decode(&doc); err != nil {
		t.Fatalf("read the order document: %v", err)
	}
	if entries, _ := doc["outbox"].(bson.A); len(entries) != 1 || doc["outbox_at"] == nil {
		t.Errorf("the order document has outbox %v at %v, want its event and the time: the event is not kept with the order", doc["outbox"], doc["outbox_at"])
	}

	s.Kill("order")
	s.StartService("order")
	waitPlaced(t, s, o.GetId(), 10*time.Second)
	waitTicket(t, s, o.GetId(), kitchenv1.TicketStatus_TICKET_STATUS_QUEUED, eventWait)
	waitStatus(t, s, tok, o.GetId(), orderv1.OrderStatus_ORDER_STATUS_ACCEPTED, eventWait)
	time.Sleep(3 * time.Second)
	if n := subjectCount(t, s, subject); n != 1 {
		t.Errorf("%d messages on %s, want exactly 1", n, subject)
	}
}
