package mongox

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// ReadBack tells, as the updater does after a group in which fewer updates
// matched than were sent, whether the update of id to revision rev that
// stamped tok was made.
func (u *Updater) ReadBack(ctx context.Context, id any, rev int64, tok bson.ObjectID) (bool, error) {
	call := &updateCall{id: id, rev: rev, tok: tok, done: make(chan updateResult, 1)}
	u.readBack(ctx, []*updateCall{call})
	r := <-call.done
	return r.matched, r.err
}
