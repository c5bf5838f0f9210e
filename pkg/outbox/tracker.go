package outbox

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Tracker is told of every write that adds entries to an outbox, before it
// and after it. The Relay is one: it publishes what was written and keeps
// its mark behind every write still under way.
type Tracker interface {
	// Begin returns the time a write that adds entries stamps its document
	// with (outbox_at). Every Begin must be followed by one Done.
	Begin(ctx context.Context) (time.Time, error)
	// Done reports how the write stamped At ended.
	Done(w Written)
	// Acked reports whether JetStream holds every one of entries, found in
	// a document whose outbox_at is at: a write may then drop them.
	Acked(ctx context.Context, entries []Entry, at time.Time) bool
}

// Outcome is how a write ended.
type Outcome int

const (
	// Applied: the write is stored.
	Applied Outcome = iota
	// NotApplied: the write is certainly not stored (its guard failed, or
	// the document exists already).
	NotApplied
	// Unknown: the write may be stored or not (its answer was lost). The
	// tracker reads the document back, a while later, and publishes what
	// its outbox holds; one read covers every such write of a document.
	// Without a stamp (At zero) it asks only for that read, at once: a
	// document found already there when inserting it.
	Unknown
)

// Written describes one write to its Tracker.
type Written struct {
	At       time.Time // from Begin
	Coll     *mongo.Collection
	ID       any   // the document's _id
	Revision int64 // the document's revision after the write (Applied)
	Entries  []Entry
	Outcome  Outcome
}

// OnWritten is a Tracker that calls fn after every applied write with the
// entries its document's outbox holds, and knows of no entry as published.
// A nil OnWritten tracks nothing: stores use it until they get a relay.
type OnWritten func(c *mongo.Collection, id any, rev int64, entries []Entry)

// Begin returns the current time.
func (OnWritten) Begin(context.Context) (time.Time, error) { return stampNow(), nil }

// Done calls fn for an applied write.
func (f OnWritten) Done(w Written) {
	if f != nil && w.Outcome == Applied && len(w.Entries) > 0 {
		f(w.Coll, w.ID, w.Revision, w.Entries)
	}
}

// Acked reports false: without a relay nothing is known to be published.
func (OnWritten) Acked(context.Context, []Entry, time.Time) bool { return false }

// stampNow is the current time as the store keeps it (milliseconds), so a
// stamp compares the same before and after a round trip.
func stampNow() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }
