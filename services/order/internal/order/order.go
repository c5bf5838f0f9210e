package order

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pizzashop/pizzashop/pkg/errs"
)

// Size is a pizza size, numbered as in the API: 1 small, 2 medium, 3 large.
type Size int

// Fulfillment is how the pizza reaches the customer.
type Fulfillment int

// The fulfillments, numbered as in the API.
const (
	FulfillmentDelivery Fulfillment = 1
	FulfillmentPickup   Fulfillment = 2
)

// Payment is how the customer pays at handover.
type Payment int

// The payment methods, numbered as in the API.
const (
	PaymentCash Payment = 1
	PaymentCard Payment = 2
)

// Limits on what a customer may send.
const (
	MaxToppings     = 3
	MaxNoteLen      = 200
	MaxAddressField = 120
	MaxInstructions = 200
	MaxCancelReason = 200
	MaxRejectReason = 200
	maxMenuIDLen    = 40
)

// Address is a delivery address.
type Address struct {
	Line1, Line2, City, PostalCode, Instructions string
}

// Item is the one pizza of an order.
type Item struct {
	PizzaID    string
	Size       Size
	ToppingIDs []string
}

// Line is one priced item of the breakdown.
type Line struct {
	ID     string
	Name   string
	Amount int64
}

// Price is the breakdown the menu computed when the order was placed.
type Price struct {
	Pizza    Line
	Toppings []Line
	Total    int64
	Currency string
}

// Request is what a customer asks for, before validation.
type Request struct {
	Item        Item
	Fulfillment Fulfillment
	Address     *Address
	Payment     Payment
	Note        string
}

// Validate checks everything about a request that needs no menu: sizes,
// topping count and uniqueness, fulfillment and address, payment, note.
// Every problem is reported, each naming its field as in the API.
func (r Request) Validate() error {
	var problems []error
	add := func(field, format string, args ...any) {
		problems = append(problems, errs.Invalid(field, format, args...))
	}
	if r.Item.PizzaID == "" {
		add("item.pizza_id", "is required")
	} else if len(r.Item.PizzaID) > maxMenuIDLen {
		add("item.pizza_id", "is longer than %d characters", maxMenuIDLen)
	}
	if r.Item.Size < 1 || r.Item.Size > 3 {
		add("item.size", "must be SIZE_SMALL, SIZE_MEDIUM or SIZE_LARGE")
	}
	if n := len(r.Item.ToppingIDs); n > MaxToppings {
		add("item.topping_ids", "at most %d toppings per pizza, got %d", MaxToppings, n)
	}
	seen := map[string]bool{}
	for i, id := range r.Item.ToppingIDs {
		field := fmt.Sprintf("item.topping_ids[%d]", i)
		switch {
		case id == "":
			add(field, "must not be empty")
		case len(id) > maxMenuIDLen:
			add(field, "is longer than %d characters", maxMenuIDLen)
		case seen[id]:
			add(field, "topping %q is listed twice; each topping may appear once", id)
		}
		seen[id] = true
	}
	switch r.Fulfillment {
	case FulfillmentDelivery:
		problems = append(problems, r.Address.validate("delivery_address"))
	case FulfillmentPickup:
	default:
		add("fulfillment", "must be FULFILLMENT_DELIVERY or FULFILLMENT_PICKUP")
	}
	if r.Payment != PaymentCash && r.Payment != PaymentCard {
		add("payment_method", "must be PAYMENT_METHOD_CASH or PAYMENT_METHOD_CARD (paid at handover)")
	}
	if n := utf8.RuneCountInString(r.Note); n > MaxNoteLen {
		add("note", "must be at most %d characters, got %d", MaxNoteLen, n)
	}
	return errors.Join(problems...)
}

func (a *Address) validate(field string) error {
	if a == nil {
		return errs.Invalid(field, "is required for delivery")
	}
	var problems []error
	for _, f := range []struct {
		name     string
		value    string
		required bool
		max      int
	}{
		{"line1", a.Line1, true, MaxAddressField},
		{"line2", a.Line2, false, MaxAddressField},
		{"city", a.City, true, MaxAddressField},
		{"postal_code", a.PostalCode, true, 20},
		{"instructions", a.Instructions, false, MaxInstructions},
	} {
		n := utf8.RuneCountInString(strings.TrimSpace(f.value))
		switch {
		case f.required && n == 0:
			problems = append(problems, errs.Invalid(field+"."+f.name, "is required for delivery"))
		case n > f.max:
			problems = append(problems, errs.Invalid(field+"."+f.name, "must be at most %d characters, got %d", f.max, n))
		}
	}
	return errors.Join(problems...)
}

// Change is one step of an order's history.
type Change struct {
	Status Status
	Time   time.Time
	Reason string
}

// Customer is who placed an order, as known when it was placed.
type Customer struct {
	ID, Name, Phone string
}

// Order is one customer's order for one pizza. Fields are exported for the
// adapters; change an order only through its methods, which keep the
// lifecycle rules.
type Order struct {
	ID                 string
	Customer           Customer
	Item               Item
	Fulfillment        Fulfillment
	Address            *Address
	Payment            Payment
	Note               string
	Price              Price
	Status             Status
	History            []Change
	CreateTime         time.Time
	UpdateTime         time.Time
	EstimatedReadyTime time.Time
	RejectionReason    string
	// Revision counts the changes of the order; events carry it.
	Revision int64
	// RequestHash identifies the request that placed the order when it came
	// with an Idempotency-Key: a retry of that request gets this order
	// back; another request with the same key is refused.
	RequestHash string
}

// New places an order for a validated request, priced by the menu.
func New(id string, c Customer, r Request, p Price, requestHash string, now time.Time) (*Order, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if id == "" || c.ID == "" {
		return nil, errors.New("order: new: id and customer are required")
	}
	now = storedTime(now)
	o := &Order{
		ID: id, Customer: c, Item: r.Item, Fulfillment: r.Fulfillment, Payment: r.Payment,
		Note: strings.TrimSpace(r.Note), Price: p, Status: StatusPlaced,
		History:    []Change{{Status: StatusPlaced, Time: now}},
		CreateTime: now, UpdateTime: now, Revision: 1, RequestHash: requestHash,
	}
	if r.Fulfillment == FulfillmentDelivery {
		a := *r.Address
		o.Address = &a
	}
	return o, nil
}

// Errors callers branch on.
var (
	// ErrNotFound: no such order, or not the caller's.
	ErrNotFound = errs.New(errs.KindNotFound, "ORDER_NOT_FOUND", "order not found")
	// ErrNotCancellable: the kitchen has started the order, or it is over.
	ErrNotCancellable = errs.New(errs.KindFailedPrecondition, "ORDER_NOT_CANCELLABLE", "order can no longer be cancelled")
)

// CanCancel says whether the customer may still try to cancel; the kitchen
// has the last word for orders it holds.
func (o *Order) CanCancel() error {
	if o.Status == StatusPlaced || o.Status == StatusAccepted {
		return nil
	}
	return errs.Wrap(ErrNotCancellable, "", "order %s is %s and can no longer be cancelled", o.ID, o.Status)
}

// Advance moves the order to status to at time at, if the lifecycle allows
// it from where the order is now. It reports whether anything changed: a
// repeated, stale or out-of-order step changes nothing and is not an error,
// so events can be applied any number of times in any order.
func (o *Order) Advance(to Status, at time.Time, reason string) bool {
	if to == StatusDelivered && o.Fulfillment != FulfillmentDelivery ||
		to == StatusOutForDelivery && o.Fulfillment != FulfillmentDelivery ||
		to == StatusPickedUp && o.Fulfillment != FulfillmentPickup {
		return false
	}
	if !Reachable(o.Status, to) {
		return o.recordLate(to, at, reason)
	}
	at = storedTime(at)
	o.Status = to
	o.History = append(o.History, Change{Status: to, Time: at, Reason: reason})
	o.UpdateTime = at
	o.Revision++
	if to == StatusRejected {
		o.RejectionReason = reason
	}
	return true
}

// recordLate records a step that arrives after a later one (events of one
// order handled by two replicas, or a redelivery, can overtake each other):
// a step on the way to the current status that the history lacks goes into
// the history at its time, and the status stays where it is. Anything else
// (a repeat, a step off the order's path) changes nothing.
func (o *Order) recordLate(to Status, at time.Time, reason string) bool {
	if !Reachable(to, o.Status) {
		return false
	}
	for _, c := range o.History {
		if c.Status == to {
			return false
		}
	}
	at = storedTime(at)
	i := len(o.History)
	for i > 0 && o.History[i-1].Time.After(at) {
		i--
	}
	o.History = slices.Insert(o.History, i, Change{Status: to, Time: at, Reason: reason})
	if to == StatusRejected {
		o.RejectionReason = reason
	}
	o.Revision++
	return true
}

// SetEstimate records when the kitchen expects the order ready. It changes
// nothing once the order is ready or over.
func (o *Order) SetEstimate(t time.Time) bool {
	if o.Status >= StatusReady || t.IsZero() || storedTime(t).Equal(o.EstimatedReadyTime) {
		return false
	}
	o.EstimatedReadyTime = storedTime(t)
	o.Revision++
	return true
}

// VisibleTo reports whether a caller may see the order: its customer, or
// staff.
func (o *Order) VisibleTo(subject string, staff bool) bool {
	return staff || o.Customer.ID == subject
}

// storedTime is t as an order keeps it: UTC, to the millisecond, which is
// all a store or an event keeps. An order answered from memory (a new one,
// or one changed by a step) then says what a later read of it says, so a
// retry with the same Idempotency-Key gets the very order the first call
// did.
func storedTime(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }
