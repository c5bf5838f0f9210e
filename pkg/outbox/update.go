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

// Update is the read, change, guarded-write cycle every store runs on a
// document with an outbox. read returns the document and its revision;
// apply changes it or reports no change; fields lists what to $set after
// the change, the new revision included. The write goes through Write with
// apply's events and, when the document changed since the read, the cycle
// starts over: apply may run more than once and must depend only on what it
// is given. Nothing is written when apply reports no change or an error.
// written is told of every write that left events, to wake the relay.
func Update[T any](ctx context.Context, c *mongo.Collection, id any,
	read func(context.Context) (T, int64, error),
	apply func(*T) (bool, []Entry, error),
	fields func(T) bson.D,
	written func(*mongo.Collection, any),
) (T, bool, error) {
	var zero T
	for range maxAttempts {
		v, rev, err := read(ctx)
		if err != nil {
			return zero, false, err
		}
		changed, events, err := apply(&v)
		if err != nil || !changed {
			return v, false, err
		}
		ok, err := Write(ctx, c, id, rev, fields(v), events...)
		if err != nil {
			return zero, false, mongox.Translate(err, nil, nil)
		}
		if ok {
			if len(events) > 0 {
				written(c, id)
			}
			return v, true, nil
		}
	}
	return zero, false, ErrConflict
}
