package devstack

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// startGuardStore starts a FerretDB of t's own, to see its proxy's counts.
func startGuardStore(t testing.TB) (*ferretDB, *mongo.Client) {
	t.Helper()
	f, err := startFerretDB(t.TempDir(), "127.0.0.1:0", discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.stop)
	client, err := mongo.Connect(options.Client().ApplyURI(f.uri))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	return f, client
}

// guardReads counts the guard reads of coll so far: from SQLite, and
// through FerretDB.
func guardReads(f *ferretDB, coll string) (sqlite, ferret int64) {
	for _, st := range f.proxy.commands.snapshot() {
		if st.Command == "guardRead" && st.Collection == coll {
			switch st.Lookup {
			case "sqlite":
				sqlite += st.Count
			case "id":
				ferret += st.Count
			}
		}
	}
	return sqlite, ferret
}

func TestGuardedWrites(t *testing.T) {
	f, client := startGuardStore(t)
	f.proxy.memory = nil // the reads this test counts are the memory's misses
	ctx := context.Background()
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
	if sqlite, ferret := guardReads(f, "docs"); sqlite != 5 || ferret != 0 {
		t.Errorf("guard reads: %d from SQLite, %d through FerretDB; want 5 and 0", sqlite, ferret)
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

// TestGuardValueTypes checks a guard on every type the serializer compares
// itself, against one document holding them all, as MongoDB matches them:
// numbers by value across int32, int64 and double, everything else by type
// and value. A guarded update that matches sets "seen"; one that does not
// must leave the document exactly as it was.
func TestGuardValueTypes(t *testing.T) {
	f, client := startGuardStore(t)
	ctx := context.Background()
	c := client.Database("guard").Collection("types")
	oid, otherOID := bson.NewObjectID(), bson.NewObjectID()
	when := bson.DateTime(1_700_000_000_123)
	const escaped = "a<b>&\"quoted\"\\ é \u2028 \x01"
	doc := bson.D{
		{Key: "s", Value: "pizza"}, {Key: "esc", Value: escaped}, {Key: "empty", Value: ""},
		{Key: "i32", Value: int32(7)}, {Key: "i64", Value: int64(7)}, {Key: "d", Value: 7.0},
		{Key: "frac", Value: 7.5}, {Key: "tiny", Value: 0.1}, {Key: "huge", Value: 1e300},
		{Key: "negzero", Value: 0.0}, {Key: "big", Value: int64(1<<53 + 1)}, {Key: "minlong", Value: int64(-1 << 63)},
		{Key: "yes", Value: true}, {Key: "no", Value: false},
		{Key: "when", Value: when}, {Key: "before1970", Value: bson.DateTime(-1_234_567)},
		{Key: "oid", Value: oid},
		{Key: "null", Value: nil}, {Key: "obj", Value: bson.D{{Key: "k", Value: 1}}},
		{Key: "arr", Value: bson.A{"a", "b"}},
	}
	// "sqlite": decided from SQLite; "both": SQLite could not tell, so
	// the read went through FerretDB; "ferretdb": through FerretDB only.
	type check struct {
		name  string
		id    any
		conds bson.D
		want  bool
		path  string
	}
	const id = "o-1"
	checks := []check{
		{"string", id, bson.D{{Key: "s", Value: "pizza"}}, true, "sqlite"},
		{"string differs", id, bson.D{{Key: "s", Value: "Pizza"}}, false, "sqlite"},
		{"string against a number", id, bson.D{{Key: "s", Value: int32(1)}}, false, "sqlite"},
		{"string with escapes", id, bson.D{{Key: "esc", Value: escaped}}, true, "sqlite"},
		{"string with escapes differs", id, bson.D{{Key: "esc", Value: escaped + " "}}, false, "sqlite"},
		{"empty string", id, bson.D{{Key: "empty", Value: ""}}, true, "sqlite"},
		{"int32 = int32", id, bson.D{{Key: "i32", Value: int32(7)}}, true, "sqlite"},
		{"int32 = int64", id, bson.D{{Key: "i32", Value: int64(7)}}, true, "sqlite"},
		{"int32 = double", id, bson.D{{Key: "i32", Value: 7.0}}, true, "sqlite"},
		{"int32 differs", id, bson.D{{Key: "i32", Value: int32(8)}}, false, "sqlite"},
		{"int32 against a fraction", id, bson.D{{Key: "i32", Value: 7.5}}, false, "sqlite"},
		{"int64 = int32", id, bson.D{{Key: "i64", Value: int32(7)}}, true, "sqlite"},
		{"int64 = int64", id, bson.D{{Key: "i64", Value: int64(7)}}, true, "sqlite"},
		{"int64 = double", id, bson.D{{Key: "i64", Value: 7.0}}, true, "sqlite"},
		{"int64 differs", id, bson.D{{Key: "i64", Value: int64(-7)}}, false, "sqlite"},
		{"double = int32", id, bson.D{{Key: "d", Value: int32(7)}}, true, "sqlite"},
		{"double = int64", id, bson.D{{Key: "d", Value: int64(7)}}, true, "sqlite"},
		{"double = double", id, bson.D{{Key: "d", Value: 7.0}}, true, "sqlite"},
		{"double differs", id, bson.D{{Key: "d", Value: 7.000000000000001}}, false, "sqlite"},
		{"fraction", id, bson.D{{Key: "frac", Value: 7.5}}, true, "sqlite"},
		{"fraction against an integer", id, bson.D{{Key: "frac", Value: int64(7)}}, false, "sqlite"},
		{"0.1", id, bson.D{{Key: "tiny", Value: 0.1}}, true, "sqlite"},
		{"1e300", id, bson.D{{Key: "huge", Value: 1e300}}, true, "sqlite"},
		{"zero", id, bson.D{{Key: "negzero", Value: int32(0)}}, true, "sqlite"},
		{"int64 beyond 2^53", id, bson.D{{Key: "big", Value: int64(1<<53 + 1)}}, true, "sqlite"},
		{"int64 beyond 2^53 against the nearest double", id, bson.D{{Key: "big", Value: float64(1 << 53)}}, false, "sqlite"},
		{"smallest int64", id, bson.D{{Key: "minlong", Value: int64(-1 << 63)}}, true, "sqlite"},
		{"smallest int64 as a double", id, bson.D{{Key: "minlong", Value: -9223372036854775808.0}}, true, "sqlite"},
		{"true", id, bson.D{{Key: "yes", Value: true}}, true, "sqlite"},
		{"true differs", id, bson.D{{Key: "yes", Value: false}}, false, "sqlite"},
		{"true against 1", id, bson.D{{Key: "yes", Value: int32(1)}}, false, "sqlite"},
		{"false", id, bson.D{{Key: "no", Value: false}}, true, "sqlite"},
		{"datetime", id, bson.D{{Key: "when", Value: when}}, true, "sqlite"},
		{"datetime differs", id, bson.D{{Key: "when", Value: when + 1}}, false, "sqlite"},
		{"datetime against its milliseconds", id, bson.D{{Key: "when", Value: int64(when)}}, false, "sqlite"},
		{"datetime before 1970", id, bson.D{{Key: "before1970", Value: bson.DateTime(-1_234_567)}}, true, "sqlite"},
		{"objectid", id, bson.D{{Key: "oid", Value: oid}}, true, "sqlite"},
		{"objectid differs", id, bson.D{{Key: "oid", Value: otherOID}}, false, "sqlite"},
		{"objectid against its hex", id, bson.D{{Key: "oid", Value: oid.Hex()}}, false, "sqlite"},
		{"null field", id, bson.D{{Key: "null", Value: "x"}}, false, "sqlite"},
		{"missing field", id, bson.D{{Key: "nope", Value: int32(1)}}, false, "sqlite"},
		{"embedded document", id, bson.D{{Key: "obj", Value: int32(1)}}, false, "sqlite"},
		{"two fields", id, bson.D{{Key: "s", Value: "pizza"}, {Key: "i64", Value: int64(7)}}, true, "sqlite"},
		{"two fields, one differs", id, bson.D{{Key: "s", Value: "pizza"}, {Key: "i64", Value: int64(8)}}, false, "sqlite"},
		// An array matches a value it holds: FerretDB decides.
		{"array holds", id, bson.D{{Key: "arr", Value: "a"}}, true, "both"},
		{"array lacks", id, bson.D{{Key: "arr", Value: "z"}}, false, "both"},
		{"missing document", "o-2", bson.D{{Key: "s", Value: "pizza"}}, false, "sqlite"},
		{"objectid id", oid, bson.D{{Key: "s", Value: "pizza"}}, true, "sqlite"},
		{"objectid id, guard differs", oid, bson.D{{Key: "s", Value: "pie"}}, false, "sqlite"},
		{"objectid id asked as a string", oid.Hex(), bson.D{{Key: "s", Value: "pizza"}}, false, "sqlite"},
		{"string id with escapes", "o<\"1\">\\é", bson.D{{Key: "s", Value: "pizza"}}, true, "sqlite"},
		{"int id", int32(5), bson.D{{Key: "s", Value: "pizza"}}, true, "ferretdb"},
	}
	for _, docID := range []any{id, oid, "o<\"1\">\\é", int32(5)} {
		if _, err := c.InsertOne(ctx, append(bson.D{{Key: "_id", Value: docID}}, doc...)); err != nil {
			t.Fatal(err)
		}
	}
	for _, ch := range checks {
		t.Run(ch.name, func(t *testing.T) {
			idFilter := bson.D{{Key: "_id", Value: ch.id}}
			before, err := c.FindOne(ctx, idFilter).Raw()
			if err != nil && err != mongo.ErrNoDocuments {
				t.Fatal(err)
			}
			sqlite0, ferret0 := guardReads(f, "types")
			guarded0 := f.proxy.guarded.Load()
			res, err := c.UpdateOne(ctx, append(idFilter, ch.conds...), bson.D{{Key: "$set", Value: bson.D{{Key: "seen", Value: ch.name}}}})
			if err != nil {
				t.Fatalf("UpdateOne = %v", err)
			}
			if got := res.MatchedCount == 1; got != ch.want || res.MatchedCount > 1 {
				t.Errorf("UpdateOne(%v) matched %d, want %v", append(idFilter, ch.conds...), res.MatchedCount, ch.want)
			}
			after, err := c.FindOne(ctx, idFilter).Raw()
			if err != nil && err != mongo.ErrNoDocuments {
				t.Fatal(err)
			}
			if ch.want {
				if seen, _ := after.Lookup("seen").StringValueOK(); seen != ch.name {
					t.Errorf("after a holding guard, seen = %q, want %q", seen, ch.name)
				}
			} else if string(before) != string(after) {
				t.Errorf("a failing guard changed the document:\n%s\nwas\n%s", after, before)
			}
			sqlite1, ferret1 := guardReads(f, "types")
			path := map[[2]bool]string{{true, false}: "sqlite", {true, true}: "both", {false, true}: "ferretdb"}[[2]bool{sqlite1 > sqlite0, ferret1 > ferret0}]
			if path != ch.path || sqlite1-sqlite0 > 1 || ferret1-ferret0 > 1 {
				t.Errorf("guard read %d times from SQLite and %d through FerretDB, want %s", sqlite1-sqlite0, ferret1-ferret0, ch.path)
			}
			if ch.path != "both" && f.proxy.guarded.Load() == guarded0 {
				t.Errorf("the serializer did not check the guard itself")
			}
		})
	}
}

// TestGuardedBulkWrite: a bulk write of guarded updates, as the outbox relay
// sends to clear outboxes, is checked statement by statement, goes to
// FerretDB by _id only (no statement scans), and matches what MongoDB
// would: the statements whose guard holds.
func TestGuardedBulkWrite(t *testing.T) {
	f, client := startGuardStore(t)
	ctx := context.Background()
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
	if sqlite, ferret := guardReads(f, "bulk"); sqlite != 4 || ferret != 0 {
		t.Errorf("guard reads of the bulk write: %d from SQLite, %d through FerretDB; want 4 and 0", sqlite, ferret)
	}
	// All guards failing answers without FerretDB.
	res, err = c.BulkWrite(ctx, models[1:3])
	if err != nil || res.MatchedCount != 0 {
		t.Errorf("BulkWrite of failing guards = %+v, %v; want 0 matched", res, err)
	}
	var d1 bson.M
	if err := c.FindOne(ctx, bson.D{{Key: "_id", Value: "d1"}}).Decode(&d1); err != nil || len(d1) != 2 {
		t.Errorf("d1 = %v, %v; want it as inserted", d1, err)
	}
}

// A bulk write sent with the statements whose guard failed left out must
// still name each write error by the statement's place in the write the
// client made, not in the shorter one FerretDB saw.
func TestGuardedBulkWriteErrorIndexes(t *testing.T) {
	_, client := startGuardStore(t)
	ctx := context.Background()
	c := client.Database("guard").Collection("errors")
	for i := range 4 {
		if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("d%d", i)}, {Key: "revision", Value: int64(1)}, {Key: "s", Value: "text"}}); err != nil {
			t.Fatal(err)
		}
	}
	update := func(id string, rev int64, op string, set bson.D) mongo.WriteModel {
		return mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: id}, {Key: "revision", Value: rev}}).
			SetUpdate(bson.D{{Key: op, Value: set}})
	}
	_, err := c.BulkWrite(ctx, []mongo.WriteModel{
		update("d0", 9, "$set", bson.D{{Key: "x", Value: 1}}),    // guard fails: left out
		update("d1", 9, "$set", bson.D{{Key: "x", Value: 1}}),    // guard fails: left out
		update("d2", 1, "$inc", bson.D{{Key: "s", Value: 1}}),    // a string incremented: the write error
		update("d3", 1, "$set", bson.D{{Key: "x", Value: true}}), // FerretDB stops before it; MongoDB would make it
	}, options.BulkWrite().SetOrdered(false))
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || len(bwe.WriteErrors) != 1 {
		t.Fatalf("BulkWrite = %v; want one write error", err)
	}
	if got := bwe.WriteErrors[0].Index; got != 2 {
		t.Errorf("the write error names statement %d, want 2 (d2's place in the write made)", got)
	}
}

// TestGuardSeesEveryWrite: the guard reads SQLite on connections of its
// own, and must see every write FerretDB has answered, guarded or not. Each
// goroutine moves a document of its own along, revision by revision,
// interleaving guarded updates with writes the serializer does not check;
// a guard read that missed the last write would fail the next update.
func TestGuardSeesEveryWrite(t *testing.T) {
	f, client := startGuardStore(t)
	ctx := context.Background()
	db := client.Database("guard")
	const workers, steps = 8, 150
	var wg sync.WaitGroup
	for w := range workers {
		c := db.Collection([]string{"seen_a", "seen_b"}[w%2]) // several documents per collection
		id := fmt.Sprintf("w%d", w)
		if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "revision", Value: int64(0)}}); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for rev := int64(0); rev < steps; rev++ {
				filter := bson.D{{Key: "_id", Value: id}, {Key: "revision", Value: rev}}
				var err error
				var matched int64
				switch rev % 3 {
				case 0: // guarded $set
					var res *mongo.UpdateResult
					res, err = c.UpdateOne(ctx, filter, bson.D{{Key: "$set", Value: bson.D{{Key: "revision", Value: rev + 1}}}})
					if res != nil {
						matched = res.MatchedCount
					}
				case 1: // guarded replacement
					var res *mongo.UpdateResult
					res, err = c.ReplaceOne(ctx, filter, bson.D{{Key: "revision", Value: rev + 1}, {Key: "pad", Value: rand.Int()}})
					if res != nil {
						matched = res.MatchedCount
					}
				case 2: // findAndModify, which the serializer passes through
					err = c.FindOneAndUpdate(ctx, filter, bson.D{{Key: "$inc", Value: bson.D{{Key: "revision", Value: 1}}}}).Err()
					matched = 1
				}
				if err != nil || matched != 1 {
					t.Errorf("%s at revision %d: matched %d, %v; want 1", id, rev, matched, err)
					return
				}
				// The revision just left is stale now.
				if res, err := c.UpdateOne(ctx, filter, bson.D{{Key: "$set", Value: bson.D{{Key: "stale", Value: true}}}}); err != nil || res.MatchedCount != 0 {
					t.Errorf("%s at stale revision %d: %+v, %v; want 0 matched", id, rev, res, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if sqlite, ferret := guardReads(f, "seen_a"); sqlite == 0 || ferret != 0 {
		t.Errorf("guard reads: %d from SQLite, %d through FerretDB; want all from SQLite", sqlite, ferret)
	}
}

// TestGuardFollowsCollections: the map from collection to SQLite table is
// kept in step when collections are dropped, renamed and created again
// under the same name, and when their database is dropped.
func TestGuardFollowsCollections(t *testing.T) {
	for _, memory := range []bool{false, true} {
		t.Run(map[bool]string{false: "reads", true: "memory"}[memory], func(t *testing.T) { testGuardFollowsCollections(t, memory) })
	}
}

func testGuardFollowsCollections(t *testing.T, memory bool) {
	f, client := startGuardStore(t)
	if !memory {
		f.proxy.memory = nil
	}
	ctx := context.Background()
	db := client.Database("guard")
	guard := func(coll string, rev int64, want int64) {
		t.Helper()
		res, err := db.Collection(coll).UpdateOne(ctx, bson.D{{Key: "_id", Value: "x"}, {Key: "revision", Value: rev}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "touched", Value: true}}}})
		if err != nil || res.MatchedCount != want {
			t.Errorf("guarded update of %s at revision %d: %+v, %v; want %d matched", coll, rev, res, err, want)
		}
	}
	put := func(coll string, rev int64) {
		t.Helper()
		if _, err := db.Collection(coll).InsertOne(ctx, bson.D{{Key: "_id", Value: "x"}, {Key: "revision", Value: rev}}); err != nil {
			t.Fatal(err)
		}
	}
	// A guard on a collection or database that does not exist yet.
	guard("a", 1, 0)
	if _, err := client.Database("nodb").Collection("c").UpdateOne(ctx, bson.D{{Key: "_id", Value: "x"}, {Key: "revision", Value: 1}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "y", Value: 1}}}}); err != nil {
		t.Errorf("guarded update in a missing database: %v", err)
	}

	put("a", 1)
	guard("a", 1, 1)
	if err := db.Collection("a").Drop(ctx); err != nil {
		t.Fatal(err)
	}
	guard("a", 1, 0)
	put("a", 5)
	guard("a", 1, 0)
	guard("a", 5, 1)

	// Renamed: "b" takes a's table, and a new "a" gets a table of its own.
	if err := client.Database("admin").RunCommand(ctx, bson.D{{Key: "renameCollection", Value: "guard.a"}, {Key: "to", Value: "guard.b"}}).Err(); err != nil {
		t.Fatal(err)
	}
	guard("a", 5, 0)
	put("a", 9)
	guard("a", 9, 1)
	guard("a", 5, 0)
	guard("b", 5, 1)
	guard("b", 9, 0)

	// Dropped with its file: a read of the old file would find revision 9.
	if err := db.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	put("a", 2)
	guard("a", 9, 0)
	guard("a", 2, 1)
	if sqlite, _ := guardReads(f, "a"); sqlite == 0 && !memory {
		t.Errorf("no guard of a read SQLite")
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

// reportCPU adds the process's CPU time per operation (user and system,
// every goroutine: client, proxy and FerretDB alike) to b's results, the
// figure the launcher's profile is about; ns/op is wall time, which waits
// on commits and scheduling as well.
func reportCPU(b *testing.B) func() { return reportCPUPer(b, 1) }

// reportCPUPer reports the process's CPU per document, for operations of
// docs documents each.
func reportCPUPer(b *testing.B, docs int) func() {
	start, ok := processCPU()
	return func() {
		if end, _ := processCPU(); ok {
			unit := "cpu-ns/op"
			if docs > 1 {
				unit = "cpu-ns/doc"
			}
			b.ReportMetric(float64(end-start)/float64(b.N*docs), unit)
		}
	}
}

// BenchmarkGuardedUpdate compares a guard check through FerretDB (a find
// by _id) with one read straight from SQLite, among 50,000 documents of
// about an order's size, and a whole guarded update each way. The bulk runs
// send 8 or 32 guarded updates in one unordered write and report the CPU
// per document: what batching the consumers' updates would save.
func BenchmarkGuardedUpdate(b *testing.B) {
	f, client := startGuardStore(b)
	ctx := context.Background()
	const n = 50_000
	c := client.Database("bench").Collection("orders")
	fill(b, ctx, c, n)
	s := f.proxy
	fields := s.fields
	cond := func(i int) (bsoncore.Value, []bsoncore.Element) {
		id := bsoncore.Value{Type: bsoncore.TypeString, Data: bsoncore.AppendString(nil, docID(i))}
		conds := []bsoncore.Element{bsoncore.AppendInt64Element(nil, "n", int64(i))}
		return id, conds
	}
	b.Run("read/ferretdb", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			i := rand.IntN(n)
			id, conds := cond(i)
			if holds, err := s.guardHoldsFerretDB(ctx, "bench", "orders", id, conds); err != nil || !holds {
				b.Fatalf("guard of %s = %v, %v; want true", docID(i), holds, err)
			}
		}
	})
	b.Run("read/sqlite", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			i := rand.IntN(n)
			id, conds := cond(i)
			if holds, _, err := fields.holds("bench", "orders", id, conds); err != nil || !holds {
				b.Fatalf("guard of %s = %v, %v; want true", docID(i), holds, err)
			}
		}
	})
	update := func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			i := rand.IntN(n)
			res, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: docID(i)}, {Key: "n", Value: i}},
				bson.D{{Key: "$inc", Value: bson.D{{Key: "hits", Value: 1}}}})
			if err != nil || res.MatchedCount != 1 {
				b.Fatalf("UpdateOne(%s) = %+v, %v; want 1 matched", docID(i), res, err)
			}
		}
	}
	// Guards of the collection run under its lock: switching under it
	// keeps the switch out of any guard check.
	setFields := func(r *fieldReader) {
		l := s.collLock("bench", "orders")
		l.Lock()
		s.fields = r
		l.Unlock()
	}
	b.Run("update/ferretdb", func(b *testing.B) {
		setFields(nil)
		defer setFields(fields)
		update(b)
	})
	b.Run("update/sqlite", update)
	for _, size := range []int{8, 32} {
		b.Run(fmt.Sprintf("update/bulk%d", size), func(b *testing.B) {
			defer reportCPUPer(b, size)()
			for b.Loop() {
				models := make([]mongo.WriteModel, 0, size)
				// size distinct documents, evenly apart from a random one
				first := rand.IntN(n)
				for k := range size {
					i := (first + k*(n/size)) % n
					models = append(models, mongo.NewUpdateOneModel().
						SetFilter(bson.D{{Key: "_id", Value: docID(i)}, {Key: "n", Value: i}}).
						SetUpdate(bson.D{{Key: "$inc", Value: bson.D{{Key: "hits", Value: 1}}}}))
				}
				res, err := c.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
				if err != nil || res.MatchedCount != int64(size) {
					b.Fatalf("BulkWrite of %d = %+v, %v; want all matched", size, res, err)
				}
			}
		})
	}
}
