package devstack

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// A bulk write is one request of many statements: the counts tell round
// trips from the work the store does.
func TestStoreCountsRequestsAndStatements(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := mustStart(t, ctx, t.TempDir())
	c := connectMongo(t, s.MongoURI()).Database("counts").Collection("orders")
	if _, err := c.InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: "a"}, {Key: "revision", Value: int64(1)}},
		bson.D{{Key: "_id", Value: "b"}, {Key: "revision", Value: int64(1)}},
		bson.D{{Key: "_id", Value: "c"}, {Key: "revision", Value: int64(1)}},
	}); err != nil {
		t.Fatal(err)
	}
	set := bson.D{{Key: "$set", Value: bson.D{{Key: "revision", Value: int64(2)}}}}
	if _, err := c.BulkWrite(ctx, []mongo.WriteModel{
		mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: "a"}, {Key: "revision", Value: int64(1)}}).SetUpdate(set),
		mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: "b"}, {Key: "revision", Value: int64(1)}}).SetUpdate(set),
	}, options.BulkWrite().SetOrdered(false)); err != nil {
		t.Fatal(err)
	}
	if err := c.FindOne(ctx, bson.D{{Key: "_id", Value: "c"}}).Err(); err != nil {
		t.Fatal(err)
	}

	requests := map[string]int64{}
	for _, r := range s.StoreRequests() {
		if r.Collection == "orders" {
			requests[r.Command] += r.Count
		}
	}
	statements := map[string]int64{}
	for _, sc := range s.StoreCommands() {
		if sc.Collection == "orders" && sc.Command != "guardRead" {
			statements[sc.Command] += sc.Count
		}
	}
	for cmd, want := range map[string][2]int64{"insert": {1, 3}, "update": {1, 2}, "find": {1, 1}} {
		if requests[cmd] != want[0] || statements[cmd] != want[1] {
			t.Errorf("%s: %d requests of %d statements, want %d of %d", cmd, requests[cmd], statements[cmd], want[0], want[1])
		}
	}
}
