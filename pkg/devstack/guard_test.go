package devstack

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

func TestGuardedWrites(t *testing.T) {
	f, err := startFerretDB(t.TempDir(), "127.0.0.1:0", discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.stop)
	ctx := context.Background()
	client, err := mongo.Connect(options.Client().ApplyURI(f.uri))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(ctx) })
	c := client.Database("guard").Collection("docs")

	docs := make([]any, 2000)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: fmt.Sprintf("d%04d", i)}, {Key: "revision", Value: int64(1)}, {Key: "done", Value: false}, {Key: "pad", Value: "some data to make a scan cost something"}}
	}
	if _, err := c.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	before := f.proxy.guarded.Load()

	update := func(id string, rev int64) int64 {
		t.Helper()
		res, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "revision", Value: rev}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "revision", Value: rev + 1}}}})
		if err != nil {
			t.Fatalf("UpdateOne(%s, revision %d) = %v", id, rev, err)
		}
		return res.MatchedCount
	}
	if n := update("d0042", 1); n != 1 {
		t.Errorf("guarded update at the current revision matched %d, want 1", n)
	}
	if n := update("d0042", 1); n != 0 {
		t.Errorf("guarded update at a stale revision matched %d, want 0", n)
	}
	if n := update("nope", 1); n != 0 {
		t.Errorf("guarded update of a missing document matched %d, want 0", n)
	}
	var got struct{ Revision int64 }
	if err := c.FindOne(ctx, bson.D{{Key: "_id", Value: "d0042"}}).Decode(&got); err != nil || got.Revision != 2 {
		t.Errorf("d0042 revision = %d (err %v), want 2", got.Revision, err)
	}
	res, err := c.DeleteOne(ctx, bson.D{{Key: "_id", Value: "d0007"}, {Key: "done", Value: true}})
	if err != nil || res.DeletedCount != 0 {
		t.Errorf("guarded delete with a failing guard deleted %d (err %v), want 0", res.DeletedCount, err)
	}
	res, err = c.DeleteOne(ctx, bson.D{{Key: "_id", Value: "d0007"}, {Key: "done", Value: false}})
	if err != nil || res.DeletedCount != 1 {
		t.Errorf("guarded delete with a holding guard deleted %d (err %v), want 1", res.DeletedCount, err)
	}
	if n := f.proxy.guarded.Load() - before; n != 5 {
		t.Errorf("the serializer checked %d guards itself, want 5: the fast path is not taken", n)
	}

	// Numbers compare by value across types, as in MongoDB, and a null
	// (which also matches a missing field) is left to FerretDB.
	if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: "i32"}, {Key: "revision", Value: int32(1)}}); err != nil {
		t.Fatal(err)
	}
	if n := update("i32", 1); n != 1 {
		t.Errorf("guarded update of an int32 revision with an int64 filter matched %d, want 1", n)
	}
	res3, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: "i32"}, {Key: "missing", Value: nil}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "y", Value: 1}}}})
	if err != nil || res3.MatchedCount != 1 {
		t.Errorf("update filtering a missing field with null matched %d (err %v), want 1", res3.MatchedCount, err)
	}

	// An array matches a value it holds: left to FerretDB, which knows.
	if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: "tags"}, {Key: "tags", Value: bson.A{"a", "b"}}}); err != nil {
		t.Fatal(err)
	}
	for tag, want := range map[string]int64{"a": 1, "z": 0} {
		res, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: "tags"}, {Key: "tags", Value: tag}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "y", Value: 1}}}})
		if err != nil || res.MatchedCount != want {
			t.Errorf("update filtering an array on %q matched %v (err %v), want %d", tag, res, err, want)
		}
	}

	// Operators are passed through untouched, and still work.
	res2, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: "d0100"}, {Key: "revision", Value: bson.D{{Key: "$lt", Value: 5}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}})
	if err != nil || res2.MatchedCount != 1 {
		t.Errorf("update with an operator in the filter matched %d (err %v), want 1", res2.MatchedCount, err)
	}

	start := time.Now()
	for i := range 50 {
		update(fmt.Sprintf("d%04d", 500+i), 1)
	}
	t.Logf("50 guarded updates on 2000 documents: %s each", time.Since(start)/50)
}

// TestGuardedBulkWrite: a bulk write of guarded updates, as the outbox relay
// sends to clear outboxes, is checked statement by statement, goes to
// FerretDB by _id only (no statement scans), and matches what MongoDB
// would: the statements whose guard holds.
func TestGuardedBulkWrite(t *testing.T) {
	f, err := startFerretDB(t.TempDir(), "127.0.0.1:0", discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.stop)
	ctx := context.Background()
	client, err := mongo.Connect(options.Client().ApplyURI(f.uri))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(ctx) })
	c := client.Database("guard").Collection("bulk")
	for i := range 3 {
		if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("d%d", i)}, {Key: "revision", Value: int64(1)}}); err != nil {
			t.Fatal(err)
		}
	}
	set := bson.D{{Key: "$set", Value: bson.D{{Key: "cleared", Value: true}}}}
	models := []mongo.WriteModel{
		mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: "d0"}, {Key: "revision", Value: int64(1)}}).SetUpdate(set),
		mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: "d1"}, {Key: "revision", Value: int64(7)}}).SetUpdate(set), // moved on
		mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: "missing"}, {Key: "revision", Value: int64(1)}}).SetUpdate(set),
		mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: "d2"}, {Key: "revision", Value: int32(1)}}).SetUpdate(set),
	}
	res, err := c.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
	if err != nil || res.MatchedCount != 2 || res.ModifiedCount != 2 {
		t.Fatalf("BulkWrite = %+v, %v; want 2 matched and modified (d0, d2)", res, err)
	}
	for id, want := range map[string]bool{"d0": true, "d1": false, "d2": true} {
		var d struct {
			Cleared bool `bson:"cleared"`
		}
		if err := c.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d); err != nil || d.Cleared != want {
			t.Errorf("%s cleared = %v, %v; want %v", id, d.Cleared, err, want)
		}
	}
	for _, st := range f.proxy.commands.snapshot() {
		if st.Collection == "bulk" && st.Lookup == "scan" {
			t.Errorf("%d %s statements on %s scanned the collection, want every one by _id", st.Count, st.Command, st.Collection)
		}
	}
	// All guards failing answers without FerretDB.
	res, err = c.BulkWrite(ctx, models[1:3])
	if err != nil || res.MatchedCount != 0 {
		t.Errorf("BulkWrite of failing guards = %+v, %v; want 0 matched", res, err)
	}
}

func TestSameValue(t *testing.T) {
	i32 := func(n int32) bsoncore.Value {
		return bsoncore.Value{Type: bsoncore.TypeInt32, Data: bsoncore.AppendInt32(nil, n)}
	}
	i64 := func(n int64) bsoncore.Value {
		return bsoncore.Value{Type: bsoncore.TypeInt64, Data: bsoncore.AppendInt64(nil, n)}
	}
	dbl := func(f float64) bsoncore.Value {
		return bsoncore.Value{Type: bsoncore.TypeDouble, Data: bsoncore.AppendDouble(nil, f)}
	}
	str := func(s string) bsoncore.Value {
		return bsoncore.Value{Type: bsoncore.TypeString, Data: bsoncore.AppendString(nil, s)}
	}
	for _, tc := range []struct {
		name string
		a, b bsoncore.Value
		want bool
	}{
		{"int32 int64", i32(1), i64(1), true},
		{"int32 double", i32(1), dbl(1), true},
		{"int64 double", i64(-3), dbl(-3), true},
		{"int64 fraction", i64(1), dbl(1.5), false},
		{"beyond 2^53", i64(1<<53 + 1), dbl(1 << 53), false},
		{"2^53", i64(1 << 53), dbl(1 << 53), true},
		{"smallest int64", i64(-1 << 63), dbl(-1 << 63), true},
		{"2^63", i64(1<<63 - 1), dbl(1 << 63), false},
		{"infinity", i64(1<<63 - 1), dbl(math.Inf(1)), false},
		{"NaN", i64(0), dbl(math.NaN()), false},
		{"zeros", dbl(math.Copysign(0, -1)), i32(0), true},
		{"doubles", dbl(0.1), dbl(0.1), true},
		{"strings", str("a"), str("a"), true},
		{"string number", str("1"), i32(1), false},
	} {
		if got := sameValue(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: sameValue(%s, %s) = %v, want %v", tc.name, tc.a, tc.b, got, tc.want)
		}
		if got := sameValue(tc.b, tc.a); got != tc.want {
			t.Errorf("%s: sameValue(%s, %s) = %v, want %v", tc.name, tc.b, tc.a, got, tc.want)
		}
	}
}
