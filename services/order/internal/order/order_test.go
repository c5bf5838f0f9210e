package order

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/errs"
)

var t0 = time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)

func validRequest() Request {
	return Request{
		Item:        Item{PizzaID: "margherita", Size: 2, ToppingIDs: []string{"olives"}},
		Fulfillment: FulfillmentDelivery,
		Address:     &Address{Line1: "1 Main St", City: "Springfield", PostalCode: "12345"},
		Payment:     PaymentCash,
	}
}

func TestRequestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Request)
		fields []string // fields that must be named; empty means valid
	}{
		{"valid delivery", func(*Request) {}, nil},
		{"valid pickup without address", func(r *Request) { r.Fulfillment, r.Address = FulfillmentPickup, nil }, nil},
		{"three toppings", func(r *Request) { r.Item.ToppingIDs = []string{"a", "b", "c"} }, nil},
		{"no pizza", func(r *Request) { r.Item.PizzaID = "" }, []string{"item.pizza_id"}},
		{"size zero", func(r *Request) { r.Item.Size = 0 }, []string{"item.size"}},
		{"fourth size", func(r *Request) { r.Item.Size = 4 }, []string{"item.size"}},
		{"four toppings", func(r *Request) { r.Item.ToppingIDs = []string{"a", "b", "c", "d"} }, []string{"item.topping_ids"}},
		{"duplicate topping", func(r *Request) { r.Item.ToppingIDs = []string{"a", "a"} }, []string{"item.topping_ids[1]"}},
		{"empty topping", func(r *Request) { r.Item.ToppingIDs = []string{""} }, []string{"item.topping_ids[0]"}},
		{"no fulfillment", func(r *Request) { r.Fulfillment = 0 }, []string{"fulfillment"}},
		{"delivery without address", func(r *Request) { r.Address = nil }, []string{"delivery_address"}},
		{"address missing city and postal code", func(r *Request) { r.Address = &Address{Line1: "x"} },
			[]string{"delivery_address.city", "delivery_address.postal_code"}},
		{"no payment", func(r *Request) { r.Payment = 0 }, []string{"payment_method"}},
		{"long note", func(r *Request) { r.Note = strings.Repeat("n", MaxNoteLen+1) }, []string{"note"}},
		{"every problem at once", func(r *Request) { *r = Request{} },
			[]string{"item.pizza_id", "item.size", "fulfillment", "payment_method"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRequest()
			tt.change(&r)
			err := r.Validate()
			if len(tt.fields) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if errs.KindOf(err) != errs.KindInvalid {
				t.Fatalf("Validate() kind = %v, want invalid (err %v)", errs.KindOf(err), err)
			}
			named := map[string]bool{}
			for _, f := range errs.Fields(err) {
				named[f.Field] = true
			}
			for _, f := range tt.fields {
				if !named[f] {
					t.Errorf("Validate() = %v, want a problem naming %q", err, f)
				}
			}
		})
	}
}

func TestReachable(t *testing.T) {
	tests := []struct {
		from, to Status
		want     bool
	}{
		{StatusPlaced, StatusAccepted, true},
		{StatusPlaced, StatusBaking, true}, // skipping a step that arrives late
		{StatusPlaced, StatusCancelled, true},
		{StatusAccepted, StatusCancelled, true},
		{StatusAccepted, StatusRejected, true},
		{StatusBaking, StatusCancelled, false},
		{StatusBaking, StatusAccepted, false}, // backwards
		{StatusReady, StatusPickedUp, true},
		{StatusReady, StatusDelivered, true},
		{StatusOutForDelivery, StatusPickedUp, false}, // sideways
		{StatusDelivered, StatusReady, false},
		{StatusCancelled, StatusAccepted, false},
		{StatusRejected, StatusBaking, false},
		{StatusPlaced, StatusPlaced, false},
	}
	for _, tt := range tests {
		if got := Reachable(tt.from, tt.to); got != tt.want {
			t.Errorf("Reachable(%s, %s) = %v, want %v", tt.from, tt.to, got, tt.want)
		}
	}
}

func newOrder(t *testing.T, f Fulfillment) *Order {
	t.Helper()
	r := validRequest()
	if f == FulfillmentPickup {
		r.Fulfillment, r.Address = FulfillmentPickup, nil
	}
	o, err := New("o1", Customer{ID: "c1", Name: "Ann"}, r, Price{Total: 1200, Currency: "USD"}, "", t0)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	return o
}

func TestNew(t *testing.T) {
	o := newOrder(t, FulfillmentDelivery)
	if o.Status != StatusPlaced || o.Revision != 1 || len(o.History) != 1 || !o.CreateTime.Equal(t0) {
		t.Errorf("New() = status %s revision %d history %d created %v, want PLACED 1 1 %v", o.Status, o.Revision, len(o.History), o.CreateTime, t0)
	}
	if _, err := New("o2", Customer{ID: "c1"}, Request{}, Price{}, "", t0); err == nil {
		t.Error("New(invalid request) = nil error, want the validation error")
	}
	p := newOrder(t, FulfillmentPickup)
	if p.Address != nil {
		t.Errorf("pickup order address = %+v, want none", p.Address)
	}
}

func TestAdvance(t *testing.T) {
	tests := []struct {
		name        string
		fulfillment Fulfillment
		steps       []Status
		want        Status
		changes     int
	}{
		{"delivery lifecycle", FulfillmentDelivery, []Status{StatusAccepted, StatusBaking, StatusReady, StatusOutForDelivery, StatusDelivered}, StatusDelivered, 5},
		{"pickup lifecycle", FulfillmentPickup, []Status{StatusAccepted, StatusBaking, StatusReady, StatusPickedUp}, StatusPickedUp, 4},
		{"repeated event", FulfillmentDelivery, []Status{StatusAccepted, StatusAccepted, StatusAccepted}, StatusAccepted, 1},
		{"late event after a newer one is recorded, status kept", FulfillmentDelivery, []Status{StatusBaking, StatusAccepted}, StatusBaking, 2},
		{"late event repeated", FulfillmentDelivery, []Status{StatusReady, StatusBaking, StatusBaking}, StatusReady, 2},
		{"no cancel after baking", FulfillmentDelivery, []Status{StatusBaking, StatusCancelled}, StatusBaking, 1},
		{"no baking after cancel", FulfillmentDelivery, []Status{StatusCancelled, StatusBaking, StatusReady}, StatusCancelled, 1},
		{"pickup order is not delivered", FulfillmentPickup, []Status{StatusReady, StatusOutForDelivery, StatusDelivered}, StatusReady, 1},
		{"delivery order is not picked up", FulfillmentDelivery, []Status{StatusReady, StatusPickedUp}, StatusReady, 1},
		{"rejected is final", FulfillmentDelivery, []Status{StatusAccepted, StatusRejected, StatusBaking}, StatusRejected, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newOrder(t, tt.fulfillment)
			changes := 0
			for i, s := range tt.steps {
				if o.Advance(s, t0.Add(time.Duration(i+1)*time.Minute), "why") {
					changes++
				}
			}
			if o.Status != tt.want || changes != tt.changes {
				t.Errorf("after %v: status %s with %d changes, want %s with %d", tt.steps, o.Status, changes, tt.want, tt.changes)
			}
			if got := int64(1 + changes); o.Revision != got {
				t.Errorf("revision = %d, want %d", o.Revision, got)
			}
			if len(o.History) != 1+changes {
				t.Errorf("history has %d steps, want %d", len(o.History), 1+changes)
			}
		})
	}
}

func TestRejectionReasonAndEstimate(t *testing.T) {
	o := newOrder(t, FulfillmentDelivery)
	eta := t0.Add(20 * time.Minute)
	if !o.SetEstimate(eta) || o.SetEstimate(eta) {
		t.Errorf("SetEstimate twice = first false or second true, want true then false")
	}
	o.Advance(StatusRejected, t0.Add(time.Minute), "out of dough")
	if o.RejectionReason != "out of dough" {
		t.Errorf("RejectionReason = %q, want %q", o.RejectionReason, "out of dough")
	}
	if o.SetEstimate(eta.Add(time.Minute)) {
		t.Error("SetEstimate on a final order = true, want false")
	}
}

func TestCanCancel(t *testing.T) {
	for _, tt := range []struct {
		status Status
		ok     bool
	}{
		{StatusPlaced, true}, {StatusAccepted, true}, {StatusBaking, false}, {StatusReady, false},
		{StatusDelivered, false}, {StatusRejected, false},
	} {
		o := newOrder(t, FulfillmentDelivery)
		o.Status = tt.status
		err := o.CanCancel()
		if (err == nil) != tt.ok {
			t.Errorf("CanCancel() in %s = %v, want ok=%v", tt.status, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrNotCancellable) {
			t.Errorf("CanCancel() in %s = %v, want ErrNotCancellable", tt.status, err)
		}
	}
}

func TestVisibleTo(t *testing.T) {
	o := newOrder(t, FulfillmentDelivery)
	if !o.VisibleTo("c1", false) || o.VisibleTo("c2", false) || !o.VisibleTo("kim", true) {
		t.Error("VisibleTo: want the owner and staff to see the order, and no other customer")
	}
}

func TestNewProfile(t *testing.T) {
	tests := []struct {
		name, cname, email, phone string
		field                     string
	}{
		{"valid", "Ann", "ann@example.com", "+1 555 0100", ""},
		{"no name", "", "ann@example.com", "+1 555 0100", "name"},
		{"bad email", "Ann", "ann(at)example", "+1 555 0100", "email"},
		{"letters in phone", "Ann", "ann@example.com", "call me", "phone"},
		{"short phone", "Ann", "ann@example.com", "123", "phone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewProfile("id", tt.cname, tt.email, tt.phone, nil, t0)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("NewProfile() = %v, want nil", err)
				}
				return
			}
			fs := errs.Fields(err)
			if len(fs) == 0 || fs[0].Field != tt.field {
				t.Errorf("NewProfile() = %v, want a problem naming %q", err, tt.field)
			}
		})
	}
}

// TestAdvanceLateStep: the events of one order can overtake each other (two
// replicas of the order service, a redelivery). A step that comes after a
// later one still goes into the history, in time order; the status stays.
func TestAdvanceLateStep(t *testing.T) {
	o := newOrder(t, FulfillmentPickup)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	o.Advance(StatusAccepted, at(1), "")
	o.Advance(StatusReady, at(9), "")
	if !o.Advance(StatusBaking, at(2), "") {
		t.Fatal("Advance(BAKING) after READY = false, want it recorded")
	}
	o.Advance(StatusPickedUp, at(12), "")
	var got []Status
	for _, c := range o.History {
		got = append(got, c.Status)
	}
	want := []Status{StatusPlaced, StatusAccepted, StatusBaking, StatusReady, StatusPickedUp}
	if !slices.Equal(got, want) || o.Status != StatusPickedUp {
		t.Errorf("history %v status %s, want %v and PICKED_UP", got, o.Status, want)
	}
}
