package outbox

import (
	"context"
	"fmt"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Write applies set to the document id if it is still at revision rev, and
// appends events to its outbox in the same write. set must include the new
// revision. It reports whether the document matched; false means it changed
// since it was read, and the caller should read it again and retry.
func Write(ctx context.Context, c *mongo.Collection, id any, rev int64, set bson.D, events ...Entry) (bool, error) {
	// The relay clears an outbox only if the document is still at the
	// revision it read; a write that did not move the revision could have
	// its new entries cleared unpublished.
	if !bumps(set, rev) {
		return false, fmt.Errorf("outbox: write of %v must set %s above %d", id, FieldRevision, rev)
	}
	update := bson.D{{Key: "$set", Value: set}}
	if len(events) > 0 {
		set = append(slices.Clip(set), bson.E{Key: FieldPending, Value: true})
		update = bson.D{{Key: "$set", Value: set},
			{Key: "$push", Value: bson.D{{Key: FieldEntries, Value: bson.D{{Key: "$each", Value: events}}}}}}
	}
	res, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: FieldRevision, Value: rev}}, update)
	if err != nil {
		return false, err
	}
	return res.MatchedCount == 1, nil
}

// Recheck hands the entries waiting in document id's outbox to written. A
// store calls it when an insert finds its document already there: the
// insert may be its own, applied though its answer was lost, and its events
// not yet published. Without it they would wait for the relay's next scan.
func Recheck(ctx context.Context, c *mongo.Collection, id any, written Notify) error {
	var st State
	err := c.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&st)
	if err != nil {
		return fmt.Errorf("outbox: recheck %v in %s: %w", id, c.Name(), err)
	}
	if len(st.Outbox) > 0 {
		written(c, id, st.Revision, st.Outbox)
	}
	return nil
}

func bumps(set bson.D, rev int64) bool {
	n, ok := revisionIn(set)
	return ok && n > rev
}

// revisionIn finds the revision a write sets.
func revisionIn(set bson.D) (int64, bool) {
	for _, e := range set {
		if e.Key == FieldRevision {
			n, ok := e.Value.(int64)
			return n, ok
		}
	}
	return 0, false
}
