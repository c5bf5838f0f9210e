// Package kitchen holds the kitchen's rules: one ticket per order, worked in
// arrival order, and the moves staff and customers may make on it. The
// kitchen owns the ticket, so it alone decides whether an order can still be
// cancelled. It knows nothing of gRPC, Mongo or NATS.
package kitchen

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pizzashop/pizzashop/pkg/errs"
)

// Status is where a ticket is. The numbers match the API.
type Status int

// The statuses.
const (
	StatusQueued    Status = 1
	StatusBaking    Status = 2
	StatusReady     Status = 3
	StatusRejected  Status = 4
	StatusCancelled Status = 5
)

func (s Status) String() string {
	switch s {
	case StatusQueued:
		return "QUEUED"
	case StatusBaking:
		return "BAKING"
	case StatusReady:
		return "READY"
	case StatusRejected:
		return "REJECTED"
	case StatusCancelled:
		return "CANCELLED"
	}
	return fmt.Sprintf("STATUS(%d)", int(s))
}

// Open reports whether the ticket still needs the kitchen.
func (s Status) Open() bool { return s == StatusQueued || s == StatusBaking }

// Ticket is the kitchen's view of one order. Fields are exported for the
// adapters; change a ticket only through its methods.
type Ticket struct {
	ID                 string
	Status             Status
	PizzaName          string
	Size               int
	ToppingNames       []string
	Fulfillment        int
	Note               string
	CustomerName       string
	OrderTime          time.Time
	CreateTime         time.Time
	UpdateTime         time.Time
	EstimatedReadyTime time.Time
	Reason             string
	Revision           int64
}

// Errors callers branch on.
var (
	ErrNotFound = errs.New(errs.KindNotFound, "TICKET_NOT_FOUND", "ticket not found")
	// ErrInvalidTransition: the ticket is not in a state that allows the move.
	ErrInvalidTransition = errs.New(errs.KindFailedPrecondition, "INVALID_TRANSITION", "the ticket cannot make that move")
	// ErrNotCancellable: baking has started or the ticket is over.
	ErrNotCancellable = errs.New(errs.KindFailedPrecondition, "ORDER_NOT_CANCELLABLE", "the kitchen has started this order; it can no longer be cancelled")
)

// Estimate says when a ticket that has ahead tickets in front of it will be
// ready, with ovens baking in parallel for bake each.
func Estimate(now time.Time, ahead int, bake time.Duration, ovens int) time.Time {
	if ovens < 1 {
		ovens = 1
	}
	rounds := ahead/ovens + 1
	return now.Add(time.Duration(rounds) * bake).UTC()
}

// New queues a ticket for a placed order.
func New(t Ticket, now time.Time, estimate time.Time) Ticket {
	t.Status = StatusQueued
	t.CreateTime, t.UpdateTime = now.UTC(), now.UTC()
	t.EstimatedReadyTime = estimate
	t.Revision = 1
	return t
}

// Tombstone is the ticket of an order cancelled before its ticket arrived;
// it makes the late arrival a no-op.
func Tombstone(id, reason string, now time.Time) Ticket {
	return Ticket{ID: id, Status: StatusCancelled, Reason: reason, CreateTime: now.UTC(), UpdateTime: now.UTC(), Revision: 1}
}

func (t *Ticket) move(from, to Status, now time.Time, err *errs.Error) error {
	if t.Status != from {
		return errs.Wrap(err, "", "ticket %s is %s; only a %s ticket can become %s", t.ID, t.Status, from, to)
	}
	t.Status = to
	t.UpdateTime = now.UTC()
	t.Revision++
	return nil
}

// Start puts a queued ticket in the oven.
func (t *Ticket) Start(now time.Time, bake time.Duration) error {
	if err := t.move(StatusQueued, StatusBaking, now, ErrInvalidTransition); err != nil {
		return err
	}
	t.EstimatedReadyTime = now.Add(bake).UTC()
	return nil
}

// Ready marks a baking ticket ready.
func (t *Ticket) Ready(now time.Time) error {
	if err := t.move(StatusBaking, StatusReady, now, ErrInvalidTransition); err != nil {
		return err
	}
	t.EstimatedReadyTime = now.UTC()
	return nil
}

// MaxReason bounds reject and cancel reasons.
const MaxReason = 200

// Reject refuses a queued ticket with a reason the customer will see.
func (t *Ticket) Reject(reason string, now time.Time) error {
	reason = strings.TrimSpace(reason)
	if n := utf8.RuneCountInString(reason); n == 0 || n > MaxReason {
		return errs.Invalid("reason", "must be 1 to %d characters, got %d", MaxReason, n)
	}
	if err := t.move(StatusQueued, StatusRejected, now, ErrInvalidTransition); err != nil {
		return err
	}
	t.Reason = reason
	return nil
}

// Cancel cancels a queued ticket. Cancelling a cancelled ticket is a no-op
// and reports false.
func (t *Ticket) Cancel(reason string, now time.Time) (bool, error) {
	if t.Status == StatusCancelled {
		return false, nil
	}
	if err := t.move(StatusQueued, StatusCancelled, now, ErrNotCancellable); err != nil {
		return false, err
	}
	t.Reason = reason
	return true, nil
}
