package devstack

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestGuardMemory: once a collection's guards are known, the guards of
// documents the serializer saw written are decided without a read, and
// they are decided right: a stale revision matches nothing. A write the
// memory cannot follow (an operator other than $set, a write without a
// guard, a delete) makes the next guard read the store again, and see the
// document as it is.
func TestGuardMemory(t *testing.T) {
	f, client := startGuardStore(t)
	ctx := context.Background()
	c := client.Database("memory").Collection("docs")
	reads := func() int64 {
		sqlite, ferret := guardReads(f, "docs")
		return sqlite + ferret
	}
	update := func(id string, rev, want int64) {
		t.Helper()
		res, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "revision", Value: rev}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "revision", Value: rev + 1}}}})
		if err != nil || res.MatchedCount != want {
			t.Fatalf("guarded update of %s at revision %d: %+v, %v; want %d matched", id, rev, res, err, want)
		}
	}
	insert := func(id string, rev int64) {
		t.Helper()
		if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "revision", Value: rev}, {Key: "pad", Value: "x"}}); err != nil {
			t.Fatal(err)
		}
	}

	insert("a", 1)
	update("a", 1, 1) // the first guard of the collection reads, and teaches the memory its field
	if reads() != 1 {
		t.Fatalf("guard reads %d; want 1", reads())
	}
	insert("b", 1) // remembered from here on
	update("a", 2, 1)
	update("a", 2, 0)
	update("b", 1, 1)
	update("b", 1, 0)
	update("b", 2, 1)
	// Two documents in one bulk write, one guard stale.
	res, err := c.BulkWrite(ctx, []mongo.WriteModel{
		mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: "a"}, {Key: "revision", Value: 3}}).
			SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: "revision", Value: 4}}}}),
		mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: "b"}, {Key: "revision", Value: 1}}).
			SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: "revision", Value: 2}}}}),
	}, options.BulkWrite().SetOrdered(false))
	if err != nil || res.MatchedCount != 1 {
		t.Fatalf("bulk write: %+v, %v; want 1 matched", res, err)
	}
	update("a", 4, 1)
	update("b", 3, 1)
	if n := reads(); n != 1 {
		t.Errorf("guard reads %d after the first; want none: the memory decides them", n-1)
	}

	// $inc: the memory cannot follow it, and must not answer from before.
	if _, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "revision", Value: 5}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: "revision", Value: 10}}}}); err != nil {
		t.Fatal(err)
	}
	before := reads()
	update("a", 6, 0)
	update("a", 15, 1)
	if reads() == before {
		t.Errorf("after an $inc the guard was decided without a read")
	}
	// A write with no guard passes through, and the collection is forgotten.
	if _, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: "b"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "revision", Value: int64(50)}}}}); err != nil {
		t.Fatal(err)
	}
	update("b", 4, 0)
	update("b", 50, 1)
	// Deleted and stored again at a lower revision.
	if _, err := c.DeleteOne(ctx, bson.D{{Key: "_id", Value: "b"}, {Key: "revision", Value: 51}}); err != nil {
		t.Fatal(err)
	}
	insert("b", 1)
	update("b", 51, 0)
	update("b", 1, 1)
	var got struct{ Revision int64 }
	if err := c.FindOne(ctx, bson.D{{Key: "_id", Value: "b"}}).Decode(&got); err != nil || got.Revision != 2 {
		t.Errorf("b at revision %d (%v); want 2", got.Revision, err)
	}
}

// TestGuardMemoryNumericIDs: 7 as an int32, an int64 and a double name one
// document, as in MongoDB. A guarded update by one of them must leave the
// memory of the document under any other stale-free: the revision a guard
// by int32 7 sees is the one the update by int64 7 wrote.
func TestGuardMemoryNumericIDs(t *testing.T) {
	_, client := startGuardStore(t)
	ctx := context.Background()
	c := client.Database("memory").Collection("numeric")
	update := func(id any, rev, want int64) {
		t.Helper()
		res, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "revision", Value: rev}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "revision", Value: rev + 1}}}})
		if err != nil || res.MatchedCount != want {
			t.Fatalf("guarded update of %v (%T) at revision %d: %+v, %v; want %d matched", id, id, rev, res, err, want)
		}
	}
	// Teach the memory the collection's guard field.
	if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: "x"}, {Key: "revision", Value: int64(1)}}); err != nil {
		t.Fatal(err)
	}
	update("x", 1, 1)
	if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(7)}, {Key: "revision", Value: int64(1)}}); err != nil {
		t.Fatal(err)
	}
	update(int64(7), 1, 1)
	update(int32(7), 1, 0) // revision 2 now
	update(7.0, 1, 0)
	update(int32(7), 2, 1)
	update(int64(7), 2, 0) // revision 3 now
	var got struct{ Revision int64 }
	if err := c.FindOne(ctx, bson.D{{Key: "_id", Value: int32(7)}}).Decode(&got); err != nil || got.Revision != 3 {
		t.Errorf("document 7 at revision %d (%v); want 3", got.Revision, err)
	}
}
