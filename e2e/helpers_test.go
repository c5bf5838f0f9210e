package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/e2e/stack"
	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"go.mongodb.org/mongo-driver/v2/bson"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// The helpers below speak the shop's REST API as a storefront would, and
// read the ORDER stream as a consumer would.

// uniq returns prefix with a random suffix: customer ids, idempotency keys
// and names that no other test uses.
func uniq(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// pickupBody is a valid order body for a pickup paid in cash.
func pickupBody(pizza, size string, toppings ...string) map[string]any {
	if toppings == nil {
		toppings = []string{}
	}
	return map[string]any{
		"item":          map[string]any{"pizzaId": pizza, "size": size, "toppingIds": toppings},
		"fulfillment":   "FULFILLMENT_PICKUP",
		"paymentMethod": "PAYMENT_METHOD_CASH",
	}
}

// deliveryBody is a valid order body for a delivery paid in cash.
func deliveryBody(pizza, size string, toppings ...string) map[string]any {
	b := pickupBody(pizza, size, toppings...)
	b["fulfillment"] = "FULFILLMENT_DELIVERY"
	b["deliveryAddress"] = map[string]any{"line1": "1 Main St", "city": "Springfield", "postalCode": "12345"}
	return b
}

var unmarshal = protojson.UnmarshalOptions{} // strict: a field the contract lacks fails

// decode reads a JSON answer into m, failing the test when it does not fit
// the contract.
func decode(t testing.TB, what string, raw []byte, m proto.Message) {
	t.Helper()
	if err := unmarshal.Unmarshal(raw, m); err != nil {
		t.Fatalf("%s: answer does not decode as %s: %v\n%s", what, proto.MessageName(m), err, raw)
	}
}

// place posts an order and fails the test unless it answers 200.
func place(t testing.TB, s *stack.Stack, token string, body any, headers ...string) *orderv1.Order {
	t.Helper()
	code, raw, _ := s.Do(http.MethodPost, "/v1/orders", token, body, headers...)
	if code != http.StatusOK {
		t.Fatalf("POST /v1/orders = %d %s, want 200", code, raw)
	}
	o := &orderv1.Order{}
	decode(t, "POST /v1/orders", raw, o)
	return o
}

// getOrder reads an order over REST; the order is nil unless 200.
func getOrder(t testing.TB, s *stack.Stack, token, id string) (int, *orderv1.Order, []byte) {
	t.Helper()
	code, raw, _ := s.Do(http.MethodGet, "/v1/orders/"+id, token, nil)
	if code != http.StatusOK {
		return code, nil, raw
	}
	o := &orderv1.Order{}
	decode(t, "GET /v1/orders/"+id, raw, o)
	return code, o, raw
}

// listAll walks every page of GET /v1/orders.
func listAll(t testing.TB, s *stack.Stack, token string, pageSize int) []*orderv1.Order {
	t.Helper()
	var all []*orderv1.Order
	token0 := ""
	for range 1000 {
		path := fmt.Sprintf("/v1/orders?pageSize=%d", pageSize)
		if token0 != "" {
			path += "&pageToken=" + token0
		}
		code, raw, _ := s.Do(http.MethodGet, path, token, nil)
		if code != http.StatusOK {
			t.Fatalf("GET %s = %d %s, want 200", path, code, raw)
		}
		var page orderv1.ListOrdersResponse
		decode(t, "GET "+path, raw, &page)
		all = append(all, page.GetOrders()...)
		if token0 = page.GetNextPageToken(); token0 == "" {
			return all
		}
	}
	t.Fatalf("GET /v1/orders: still a next page after 1000 pages")
	return nil
}

// apiError is a decoded google.rpc.Status answer.
type apiError struct {
	code    int32
	message string
	reason  string            // of the shop's ErrorInfo
	fields  map[string]string // BadRequest field -> description
}

func decodeError(t testing.TB, raw []byte) apiError {
	t.Helper()
	var st statuspb.Status
	if err := protojson.Unmarshal(raw, &st); err != nil {
		t.Fatalf("error answer is not a google.rpc.Status: %v\n%s", err, raw)
	}
	e := apiError{code: st.GetCode(), message: st.GetMessage(), fields: map[string]string{}}
	for _, a := range st.GetDetails() {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatalf("error detail %s: %v", a.GetTypeUrl(), err)
		}
		switch d := m.(type) {
		case *errdetails.ErrorInfo:
			e.reason = d.GetReason()
		case *errdetails.BadRequest:
			for _, f := range d.GetFieldViolations() {
				e.fields[f.GetField()] = f.GetDescription()
			}
		}
	}
	return e
}

// menuPrice is the menu price of an item for a size.
func menuPrice(prices []*menuv1.SizePrice, size commonv1.Size) int64 {
	for _, p := range prices {
		if p.GetSize() == size {
			return p.GetAmountMinor()
		}
	}
	return -1
}

func getMenu(t testing.TB, s *stack.Stack) *menuv1.Menu {
	t.Helper()
	code, raw, _ := s.Do(http.MethodGet, "/v1/menu", "", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /v1/menu = %d %s", code, raw)
	}
	m := &menuv1.Menu{}
	decode(t, "GET /v1/menu", raw, m)
	return m
}

// available returns the ids of the first n available pizzas and toppings.
func available(t testing.TB, m *menuv1.Menu, pizzas, toppings int) ([]string, []string) {
	t.Helper()
	var ps, ts []string
	for _, p := range m.GetPizzas() {
		if p.GetAvailable() && len(ps) < pizzas {
			ps = append(ps, p.GetId())
		}
	}
	for _, tp := range m.GetToppings() {
		if tp.GetAvailable() && len(ts) < toppings {
			ts = append(ts, tp.GetId())
		}
	}
	if len(ps) < pizzas || len(ts) < toppings {
		t.Fatalf("the menu has %d available pizzas and %d toppings, want %d and %d", len(ps), len(ts), pizzas, toppings)
	}
	return ps, ts
}

// ---- the ORDER stream

func orderStream(t testing.TB, s *stack.Stack) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := s.JS().Stream(ctx, "ORDER")
	if err != nil {
		t.Fatalf("stream ORDER: %v", err)
	}
	return st
}

// streamMsgs is the number of messages on the ORDER stream.
func streamMsgs(t testing.TB, s *stack.Stack) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := orderStream(t, s).Info(ctx)
	if err != nil {
		t.Fatalf("stream ORDER info: %v", err)
	}
	return info.State.Msgs
}

// subjectCount is the number of messages on the ORDER stream whose subject
// matches filter ("order.placed.<id>", "order.*.<id>").
func subjectCount(t testing.TB, s *stack.Stack, filter string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := orderStream(t, s).Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatalf("stream ORDER info for %s: %v", filter, err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// waitPlaced waits until the order.placed event of an order is on the
// stream. On timeout it says whether the event is still in the order's
// outbox, which tells an unpublished event from a lost one.
func waitPlaced(t testing.TB, s *stack.Stack, id string, timeout time.Duration) {
	t.Helper()
	subject := "order.placed." + id
	eventually(t, timeout, subject+" on stream ORDER", func() (bool, string) {
		n := subjectCount(t, s, subject)
		return n >= 1, fmt.Sprintf("%d messages on %s; %s", n, subject, outboxState(t, s, id))
	})
}

// outboxState describes the outbox of an order document.
func outboxState(t testing.TB, s *stack.Stack, id string) string {
	t.Helper()
	var doc struct {
		At     time.Time        `bson:"outbox_at"`
		Outbox []map[string]any `bson:"outbox"`
		Status int              `bson:"status"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.Mongo("order").Collection("orders").FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&doc)
	if err != nil {
		return "order document: " + err.Error()
	}
	var subjects []string
	for _, e := range doc.Outbox {
		subjects = append(subjects, fmt.Sprint(e["subject"]))
	}
	return fmt.Sprintf("order document: status %d, outbox_at %v, outbox %v", doc.Status, doc.At, subjects)
}

// placedEvent reads the order.placed event of an order.
func placedEvent(t testing.TB, s *stack.Stack, id string) (*jetstream.RawStreamMsg, *orderv1.OrderStatusChanged) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg, err := orderStream(t, s).GetLastMsgForSubject(ctx, "order.placed."+id)
	if err != nil {
		t.Fatalf("order.placed.%s on stream ORDER: %v", id, err)
	}
	ev := &orderv1.OrderStatusChanged{}
	if err := proto.Unmarshal(msg.Data, ev); err != nil {
		t.Fatalf("order.placed.%s does not decode as OrderStatusChanged: %v", id, err)
	}
	return msg, ev
}

// ---- waiting

// eventually polls cond every 100 ms until it holds, failing the test with
// cond's last explanation after timeout.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, timeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitStatus waits until the order reaches want.
func waitStatus(t testing.TB, s *stack.Stack, token, id string, want orderv1.OrderStatus, timeout time.Duration) *orderv1.Order {
	t.Helper()
	var o *orderv1.Order
	eventually(t, timeout, fmt.Sprintf("order %s reaches %s", id, want), func() (bool, string) {
		code, got, raw := getOrder(t, s, token, id)
		if code != http.StatusOK {
			return false, fmt.Sprintf("GET = %d %s", code, raw)
		}
		o = got
		return got.GetStatus() == want, "status " + got.GetStatus().String()
	})
	return o
}

// getTicket reads a kitchen ticket with a kitchen credential.
func getTicket(t testing.TB, s *stack.Stack, id string) (int, *kitchenv1.Ticket, []byte) {
	t.Helper()
	code, raw, _ := s.Do(http.MethodGet, "/v1/kitchen/tickets/"+id, s.Token("kitchen", "kim"), nil)
	if code != http.StatusOK {
		return code, nil, raw
	}
	tk := &kitchenv1.Ticket{}
	decode(t, "GET /v1/kitchen/tickets/"+id, raw, tk)
	return code, tk, raw
}

// waitTicket waits until the kitchen has a ticket for the order in want.
func waitTicket(t testing.TB, s *stack.Stack, id string, want kitchenv1.TicketStatus, timeout time.Duration) *kitchenv1.Ticket {
	t.Helper()
	var tk *kitchenv1.Ticket
	eventually(t, timeout, fmt.Sprintf("kitchen ticket %s is %s", id, want), func() (bool, string) {
		code, got, raw := getTicket(t, s, id)
		if code != http.StatusOK {
			return false, fmt.Sprintf("GET = %d %s", code, raw)
		}
		tk = got
		return got.GetStatus() == want, "status " + got.GetStatus().String()
	})
	return tk
}

// containsAll reports the first of wants missing from s.
func containsAll(s string, wants ...string) (string, bool) {
	for _, w := range wants {
		if !strings.Contains(s, w) {
			return w, false
		}
	}
	return "", true
}
