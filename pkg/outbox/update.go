package outbox

import (
	"context"
	"errors"
	"time"

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

// State is what a document carries for its outbox: its revision, the
// entries of its latest writes and when the latest of them began. Stores
// read it with the document in Update.
type State struct {
	Revision int64     `bson:"revision"`
	Outbox   []Entry   `bson:"outbox"`
	At       time.Time `bson:"outbox_at"`
}

// Update is the read, change, guarded-write cycle every store runs on a
// document with an outbox. read returns the document and its outbox state;
// apply changes it or reports no change; fields lists what to $set after
// the change, the new revision included. The write goes through Write with
// apply's events and, when the document changed since the read, the cycle
// starts over: apply may run more than once and must depend only on what it
// is given. Nothing is written when apply reports no change or an error.
func Update[T any](ctx context.Context, c *mongo.Collection, id any,
	read func(context.Context) (T, State, error),
	apply func(*T) (bool, []Entry, error),
	fields func(T) bson.D,
	tr Tracker,
) (T, bool, error) {
	return UpdateRecent(ctx, collectionUpdater{c}, id, nil, read, apply, fields, tr)
}

// UpdateRecent is Update starting from the copy recent keeps of the
// document, when it has one, instead of a read; a write keeps its result
// there. A copy that turns out stale (the guarded write matches nothing, or
// apply refuses or finds nothing to do) is dropped and the cycle starts
// over from a read. The write goes through up: a mongox.Updater sends it
// together with other callers' at the same time.
func UpdateRecent[T any](ctx context.Context, up Updater, id any, recent *Recent[T],
	read func(context.Context) (T, State, error),
	apply func(*T) (bool, []Entry, error),
	fields func(T) bson.D,
	tr Tracker,
) (T, bool, error) {
	var zero T
	for range maxAttempts {
		v, st, cached := recent.get(id)
		if !cached {
			var err error
			if v, st, err = read(ctx); err != nil {
				return zero, false, err
			}
		}
		changed, events, err := apply(&v)
		if err != nil || !changed {
			if cached {
				recent.drop(id)
				continue
			}
			return v, false, err
		}
		next, ok, err := write(ctx, up, tr, id, st, fields(v), events)
		if errors.Is(err, mongox.ErrOutcomeUnknown) && ctx.Err() == nil {
			// A grouped write whose document had moved on: most often
			// a stale start, which a fresh read settles either way (if
			// the write was made, apply finds nothing left to do). Its
			// tracker was told the outcome is unknown.
			recent.drop(id)
			continue
		}
		if err != nil {
			recent.drop(id)
			return zero, false, mongox.Translate(err, nil, nil)
		}
		if ok {
			recent.Put(id, v, next)
			return v, true, nil
		}
		recent.drop(id)
	}
	return zero, false, ErrConflict
}
