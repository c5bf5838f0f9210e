// Package delivery holds the rules of handover: a ready order waits on the
// delivery board or at the counter, a courier takes a delivery order out and
// hands it over at the door, and a pickup order is collected at the counter.
// Every move is checked, so an order is never handed over twice or the wrong
// way. It knows nothing of gRPC, Mongo or NATS.
package delivery

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pizzashop/pizzashop/pkg/errs"
	"github.com/pizzashop/pizzashop/pkg/ids"
)

// Status is where a delivery is. The numbers match the API.
type Status int

// The statuses.
const (
	StatusWaiting        Status = 1
	StatusOutForDelivery Status = 2
	StatusDelivered      Status = 3
	StatusPickedUp       Status = 4
)

func (s Status) String() string {
	switch s {
	case StatusWaiting:
		return "WAITING"
	case StatusOutForDelivery:
		return "OUT_FOR_DELIVERY"
	case StatusDelivered:
		return "DELIVERED"
	case StatusPickedUp:
		return "PICKED_UP"
	}
	return fmt.Sprintf("STATUS(%d)", int(s))
}

// Valid reports whether s is one of the four statuses.
func (s Status) Valid() bool { return s >= StatusWaiting && s <= StatusPickedUp }

// Open reports whether the delivery still needs someone: it waits for a
// courier or the customer, or is on its way.
func (s Status) Open() bool { return s == StatusWaiting || s == StatusOutForDelivery }

// OpenStatuses are the statuses of the deliveries on the board.
var OpenStatuses = []Status{StatusWaiting, StatusOutForDelivery}

// Fulfillment is how the order reaches the customer. The numbers match the
// API.
type Fulfillment int

// The fulfillments.
const (
	FulfillmentDelivery Fulfillment = 1
	FulfillmentPickup   Fulfillment = 2
)

func (f Fulfillment) String() string {
	switch f {
	case FulfillmentDelivery:
		return "DELIVERY"
	case FulfillmentPickup:
		return "PICKUP"
	}
	return fmt.Sprintf("FULFILLMENT(%d)", int(f))
}

// Valid reports whether f is delivery or pickup.
func (f Fulfillment) Valid() bool { return f == FulfillmentDelivery || f == FulfillmentPickup }

// Payment is how the customer pays at handover. The numbers match the API;
// 0 means the order did not say.
type Payment int

// The payment methods.
const (
	PaymentCash Payment = 1
	PaymentCard Payment = 2
)

// Size is a pizza size, numbered as in the API.
type Size int

// The sizes.
const (
	SizeSmall  Size = 1
	SizeMedium Size = 2
	SizeLarge  Size = 3
)

// Word is the size as the summary on the board says it.
func (s Size) Word() string {
	switch s {
	case SizeSmall:
		return "Small"
	case SizeMedium:
		return "Medium"
	case SizeLarge:
		return "Large"
	}
	return ""
}

// Address is where a delivery order goes.
type Address struct {
	Line1, Line2, City, PostalCode, Instructions string
}

// Money is an amount in minor units of a currency.
type Money struct {
	AmountMinor int64
	Currency    string
}

// Handover is what the ready order says about handing it over. It is fixed
// when the delivery is created.
type Handover struct {
	Fulfillment   Fulfillment
	CustomerName  string
	CustomerPhone string
	// Address is set for delivery orders and nil for pickups.
	Address   *Address
	Summary   string
	AmountDue Money
	Payment   Payment
}

// Delivery is the handover of one ready order. Its fields are unexported:
// it changes only through its moves, each of which checks the rules.
type Delivery struct {
	id           string
	status       Status
	handover     Handover
	readyTime    time.Time
	dispatchTime time.Time
	completeTime time.Time
	updateTime   time.Time
	courierID    string
	revision     int64
}

// Errors callers branch on.
var (
	ErrNotFound = errs.New(errs.KindNotFound, "DELIVERY_NOT_FOUND", "delivery not found")
	// ErrInvalidTransition: the delivery is not in a state, or not of a
	// fulfillment, that allows the move. The message says which.
	ErrInvalidTransition = errs.New(errs.KindFailedPrecondition, "INVALID_TRANSITION", "the delivery cannot make that move")
	// ErrNotYourDelivery: a courier tried to hand over a delivery that
	// another courier has out.
	ErrNotYourDelivery = errs.New(errs.KindPermissionDenied, "NOT_YOUR_DELIVERY", "only the courier who took the delivery can mark it delivered")
)

// New puts a ready order on the board (delivery) or at the counter (pickup),
// waiting. readyTime is when the kitchen finished it; zero means now. A
// delivery order without an address is still accepted: the courier has the
// customer's phone, and refusing it would leave a hot pizza on no board.
func New(id string, h Handover, readyTime, now time.Time) (Delivery, error) {
	if !ids.Valid(id) {
		return Delivery{}, errs.Invalid("id", "must be 1 to %d lower-case letters and digits, got %q", ids.MaxLen, id)
	}
	if !h.Fulfillment.Valid() {
		return Delivery{}, errs.Invalid("fulfillment", "must be DELIVERY or PICKUP, got %d", int(h.Fulfillment))
	}
	if h.Fulfillment == FulfillmentPickup {
		h.Address = nil
	} else if h.Address != nil {
		a := *h.Address
		h.Address = &a
	}
	if readyTime.IsZero() {
		readyTime = now
	}
	return Delivery{
		id: id, status: StatusWaiting, handover: h,
		readyTime: readyTime.UTC(), updateTime: now.UTC(), revision: 1,
	}, nil
}

// Record is a delivery laid flat, for adapters that store or send it.
type Record struct {
	ID       string
	Status   Status
	Handover Handover
	// ReadyTime is when the kitchen finished the order; DispatchTime when a
	// courier took it; CompleteTime when it was delivered or picked up.
	// Zero when it has not happened.
	ReadyTime, DispatchTime, CompleteTime time.Time
	// UpdateTime is when the delivery last changed.
	UpdateTime time.Time
	CourierID  string
	Revision   int64
}

// Restore rebuilds a delivery from its record, as an adapter read it back.
func Restore(r Record) Delivery {
	if r.Handover.Address != nil {
		a := *r.Handover.Address
		r.Handover.Address = &a
	}
	return Delivery{
		id: r.ID, status: r.Status, handover: r.Handover,
		readyTime: r.ReadyTime, dispatchTime: r.DispatchTime, completeTime: r.CompleteTime,
		updateTime: r.UpdateTime, courierID: r.CourierID, revision: r.Revision,
	}
}

// Record returns the delivery laid flat. Changing the record does not change
// the delivery.
func (d Delivery) Record() Record {
	h := d.handover
	if h.Address != nil {
		a := *h.Address
		h.Address = &a
	}
	return Record{
		ID: d.id, Status: d.status, Handover: h,
		ReadyTime: d.readyTime, DispatchTime: d.dispatchTime, CompleteTime: d.completeTime,
		UpdateTime: d.updateTime, CourierID: d.courierID, Revision: d.revision,
	}
}

// ID is the delivery's id, the same as its order's.
func (d Delivery) ID() string { return d.id }

// Status is where the delivery is.
func (d Delivery) Status() Status { return d.status }

// Fulfillment says whether it goes to the door or waits at the counter.
func (d Delivery) Fulfillment() Fulfillment { return d.handover.Fulfillment }

// ReadyTime is when the kitchen finished the order; lists are in this order.
func (d Delivery) ReadyTime() time.Time { return d.readyTime }

// UpdateTime is when the delivery last changed.
func (d Delivery) UpdateTime() time.Time { return d.updateTime }

// CourierID is the subject of the courier who took it, if one did.
func (d Delivery) CourierID() string { return d.courierID }

// Revision increases by one with every change.
func (d Delivery) Revision() int64 { return d.revision }

// invalid explains why the delivery cannot make a move.
func (d *Delivery) invalid(format string, args ...any) error {
	return errs.Wrap(ErrInvalidTransition, "", "delivery %s "+format, append([]any{d.id}, args...)...)
}

// over explains that a delivery in a final status can make no more moves.
func (d *Delivery) over() error {
	switch d.status {
	case StatusDelivered:
		return d.invalid("was already delivered at %s", d.completeTime.Format(time.RFC3339))
	case StatusPickedUp:
		return d.invalid("was already picked up at %s", d.completeTime.Format(time.RFC3339))
	}
	return d.invalid("is %s", d.status)
}

func (d *Delivery) changed(now time.Time) {
	d.updateTime = now.UTC()
	d.revision++
}

// Dispatch hands a waiting delivery order to courier.
func (d *Delivery) Dispatch(courier string, now time.Time) error {
	courier = strings.TrimSpace(courier)
	if courier == "" {
		return errs.Invalid("courier_id", "must name the courier taking the order")
	}
	switch {
	case !d.status.Open():
		return d.over()
	case d.handover.Fulfillment == FulfillmentPickup:
		return d.invalid("is a pickup order; mark it picked up at the counter")
	case d.status == StatusOutForDelivery:
		return d.invalid("is already out for delivery with courier %s", d.courierID)
	}
	d.status = StatusOutForDelivery
	d.courierID = courier
	d.dispatchTime = now.UTC()
	d.changed(now)
	return nil
}

// Deliver marks a delivery order handed over at the door by courier, who
// must be the courier who took it out.
func (d *Delivery) Deliver(courier string, now time.Time) error {
	courier = strings.TrimSpace(courier)
	switch {
	case !d.status.Open():
		return d.over()
	case d.handover.Fulfillment == FulfillmentPickup:
		return d.invalid("is a pickup order; mark it picked up at the counter")
	case d.status == StatusWaiting:
		return d.invalid("is still waiting; dispatch it to a courier before marking it delivered")
	case courier != d.courierID:
		return errs.Wrap(ErrNotYourDelivery, "", "delivery %s is out with courier %s; only they can mark it delivered", d.id, d.courierID)
	}
	d.status = StatusDelivered
	d.completeTime = now.UTC()
	d.changed(now)
	return nil
}

// Pickup marks a waiting pickup order collected at the counter.
func (d *Delivery) Pickup(now time.Time) error {
	switch {
	case !d.status.Open():
		return d.over()
	case d.handover.Fulfillment != FulfillmentPickup:
		return d.invalid("is a delivery order; dispatch it to a courier instead of marking it picked up")
	case d.status != StatusWaiting:
		return d.invalid("is %s; only a WAITING pickup can be picked up", d.status)
	}
	d.status = StatusPickedUp
	d.completeTime = now.UTC()
	d.changed(now)
	return nil
}

// Summary says what is in the box in a few words, for example
// "Large Margherita + mushrooms, black olives". Topping names are written
// in lower case after the "+" unless they start with an acronym.
func Summary(size Size, pizza string, toppings []string) string {
	var b strings.Builder
	if w := size.Word(); w != "" {
		b.WriteString(w)
	}
	if pizza = strings.TrimSpace(pizza); pizza != "" {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(pizza)
	}
	var names []string
	for _, t := range toppings {
		if t = strings.TrimSpace(t); t != "" {
			names = append(names, lowerFirst(t))
		}
	}
	if len(names) > 0 {
		if b.Len() > 0 {
			b.WriteString(" + ")
		}
		b.WriteString(strings.Join(names, ", "))
	}
	return b.String()
}

// lowerFirst lower-cases the first letter of s unless its first word has
// another capital ("BBQ sauce" stays as it is).
func lowerFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	word, _, _ := strings.Cut(s[n:], " ")
	if strings.IndexFunc(word, unicode.IsUpper) >= 0 {
		return s
	}
	return string(unicode.ToLower(r)) + s[n:]
}
