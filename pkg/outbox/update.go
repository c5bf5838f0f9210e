package outbox

import (
	"context"

	"github.com/pizzashop/pizzashop/pkg/errs"
	"github.com/pizzashop/pizzashop/pkg/mongox"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// ErrConflict is returned by Update when the document kept changing under
// it.
var ErrConflict = errs.New(errs.KindConflict, "CONCURRENT_UPDATE", "it changed concurrently; try again")

// maxAttempts bounds the rounds of one Update. Each failed round means
// another write won.
const maxAttempts = 10

// State is what a document carries for its outbox: its revision and the
// entries not yet cleared. Stores read it with the document in Update.
type State struct {
	Revision int64   `bson:"revision"`
	Outbox   []Entry `bson:"outbox"`
}

// Notify is what a store calls after a write that leaves entries in a
// document's outbox: the collection, the document's _id, its revision after
// the write, and every entry its outbox holds at that revision (those the
// write added and those it found there). Relay.Written is one.
type Notify func(c *mongo.Collection, id any, rev int64, entries []Entry)

// Update is the read, change, guarded-write cycle every store runs on a
// document with an outbox. read returns the document and its outbox state;
// apply changes it or reports no change; fields lists what to $set after
// the change, the new revision included. The write goes through Write with
// apply's events and, when the document changed since the read, the cycle
// starts over: apply may run more than once and must depend only on what it
// is given. Nothing is written when apply reports no change or an error.
// written is told of every write that leaves entries in the outbox, to wake
// the relay.
func Update[T any](ctx context.Context, c *mongo.Collection, id any,
	read func(context.Context) (T, State, error),
	apply func(*T) (bool, []Entry, error),
	fields func(T) bson.D,
	written Notify,
) (T, bool, error) {
	var zero T
	for range maxAttempts {
		v, st, err := read(ctx)
		if err != nil {
			return zero, false, err
		}
		changed, events, err := apply(&v)
		if err == nil && !changed && len(st.Outbox) > 0 {
			// Nothing to change, yet entries wait: a write whose answer
			// was lost (the change is there, its events unpublished).
			written(c, id, st.Revision, st.Outbox)
		}
		if err != nil || !changed {
			return v, false, err
		}
		set := fields(v)
		ok, err := Write(ctx, c, id, st.Revision, set, events...)
		if err != nil {
			return zero, false, mongox.Translate(err, nil, nil)
		}
		if ok {
			// Entries still in the outbox go with the new ones: the relay
			// clears by revision, so it must know all it clears.
			if pending := append(st.Outbox, events...); len(pending) > 0 {
				rev, _ := revisionIn(set)
				written(c, id, rev, pending)
			}
			return v, true, nil
		}
	}
	return zero, false, ErrConflict
}
