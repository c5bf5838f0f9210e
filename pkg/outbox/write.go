package outbox

import (
	"context"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Write applies set to the document id if it is still at revision rev, and
// appends events to its outbox in the same write. set must include the new
// revision. It reports whether the document matched; false means it changed
// since it was read, and the caller should read it again and retry.
func Write(ctx context.Context, c *mongo.Collection, id any, rev int64, set bson.D, events ...Entry) (bool, error) {
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
