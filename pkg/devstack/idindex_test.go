package devstack

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// TestLookupByIDIndexed stores 50,000 documents and proves that finding and
// updating one by _id costs about what it costs among 50: FerretDB walks an
// index instead of reading the table. Without the index a lookup reads every
// row, hundreds of times the work.
func TestLookupByIDIndexed(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 50,000 documents")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, db := MongoDatabase(t)
	big, small := db.Collection("big"), db.Collection("small")
	fill(t, ctx, big, 50_000)
	fill(t, ctx, small, 50)

	for coll, plan := range LookupPlans(t, db.Name()) {
		if !strings.Contains(plan, "USING INDEX") {
			t.Errorf("lookup by _id in %s: plan %q, want an index search", coll, plan)
		}
	}

	perLookup := func(c *mongo.Collection, n int) time.Duration {
		start := time.Now()
		for range 100 {
			i := rand.IntN(n)
			var d struct {
				N int `bson:"n"`
			}
			if err := c.FindOne(ctx, bson.D{{Key: "_id", Value: docID(i)}}).Decode(&d); err != nil || d.N != i {
				t.Fatalf("FindOne(%s) = %d, %v; want %d", docID(i), d.N, err, i)
			}
			// A guarded write, as every store makes: _id and a revision.
			res, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: docID(i)}, {Key: "n", Value: i}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "seen", Value: true}}}})
			if err != nil || res.MatchedCount != 1 {
				t.Fatalf("UpdateOne(%s) matched %v, %v; want 1", docID(i), res, err)
			}
		}
		return time.Since(start) / 100
	}
	perLookup(small, 50) // warm up connections
	smallCost, bigCost := perLookup(small, 50), perLookup(big, 50_000)
	t.Logf("find and guarded update by _id: %s among 50 documents, %s among 50,000", smallCost, bigCost)
	// Generous against a noisy machine; a scan of 50,000 documents costs
	// well over 100x.
	if bigCost > 10*smallCost+5*time.Millisecond {
		t.Errorf("find and update by _id among 50,000 documents = %s, want about the %s it costs among 50", bigCost, smallCost)
	}
}

func docID(i int) string { return fmt.Sprintf("doc-%06d", i) }

func fill(t testing.TB, ctx context.Context, c *mongo.Collection, n int) {
	t.Helper()
	pad := strings.Repeat("x", 400) // about the size of an order
	for start := 0; start < n; start += 1000 {
		var docs []any
		for i := start; i < min(n, start+1000); i++ {
			docs = append(docs, bson.D{{Key: "_id", Value: docID(i)}, {Key: "n", Value: i}, {Key: "pad", Value: pad}})
		}
		if _, err := c.InsertMany(ctx, docs); err != nil {
			t.Fatalf("InsertMany into %s: %v", c.Name(), err)
		}
	}
}

// TestUseIDIndexSwapsTheUniqueIndex builds a table as FerretDB 1.24 does,
// with the plain index earlier versions added beside its _id index, and
// checks that useIDIndex leaves one unique index on the expression lookups
// use: a lookup walks it, it still refuses a second document with an _id
// already stored, and the plain index is gone. A second run changes nothing.
func TestUseIDIndexSwapsTheUniqueIndex(t *testing.T) {
	ctx := context.Background()
	files := newSQLiteFiles(t.TempDir(), "", 1)
	defer files.close("")
	conn, err := files.open("db")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE "t_1" (_ferretdb_sjson TEXT NOT NULL CHECK(_ferretdb_sjson != '')) STRICT`,
		`CREATE UNIQUE INDEX "t_1__id_" ON "t_1" (_ferretdb_sjson->"_id")`,
		`CREATE INDEX "t_1_pizzashop_id" ON "t_1" (_ferretdb_sjson->'$._id')`,
		`INSERT INTO "t_1" VALUES ('{"_id":"a","n":1}'), ('{"_id":"b","n":2}')`,
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	indexes := func() string {
		rows, err := conn.QueryContext(ctx, `SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 't_1' ORDER BY name`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var name, def string
			if err := rows.Scan(&name, &def); err != nil {
				t.Fatal(err)
			}
			out = append(out, name+": "+def)
		}
		return strings.Join(out, "\n")
	}
	for run := 1; run <= 2; run++ {
		if err := useIDIndex(ctx, conn, "t_1"); err != nil {
			t.Fatalf("run %d: useIDIndex: %v", run, err)
		}
		want := `t_1__id_: CREATE UNIQUE INDEX "t_1__id_" ON "t_1" (` + idIndexExpr + `)`
		if got := indexes(); got != want {
			t.Fatalf("run %d: indexes\n%s\nwant\n%s", run, got, want)
		}
	}
	var plan string
	var id, parent, unused int
	err = conn.QueryRowContext(ctx, `EXPLAIN QUERY PLAN SELECT _ferretdb_sjson FROM "t_1" WHERE `+idIndexExpr+` = ?`, `"a"`).
		Scan(&id, &parent, &unused, &plan)
	if err != nil || !strings.Contains(plan, "USING INDEX t_1__id_") {
		t.Errorf("lookup plan %q, %v; want a search of t_1__id_", plan, err)
	}
	_, err = conn.ExecContext(ctx, `INSERT INTO "t_1" VALUES ('{"_id":"a","n":3}')`)
	if err == nil || !strings.Contains(err.Error(), "UNIQUE constraint failed: index 't_1__id_'") {
		t.Errorf("insert of a second _id a: %v; want the unique index to refuse it", err)
	}
}

// TestDuplicateIDRefusedAfterSwap checks the same through FerretDB: a second
// insert of an _id is a duplicate key error, and listIndexes shows the one
// unique _id index MongoDB has.
func TestDuplicateIDRefusedAfterSwap(t *testing.T) {
	ctx := context.Background()
	_, db := MongoDatabase(t)
	c := db.Collection("dups")
	if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}}); err != nil {
		t.Fatal(err)
	}
	_, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}})
	if !mongo.IsDuplicateKeyError(err) {
		t.Errorf("second insert of _id a: %v; want a duplicate key error", err)
	}
	specs, err := c.Indexes().ListSpecifications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 1 || specs[0].Name != "_id_" || specs[0].Unique != nil && !*specs[0].Unique {
		t.Errorf("indexes %+v; want the one _id_ index", specs)
	}
	for coll, plan := range LookupPlans(t, db.Name()) {
		if !strings.Contains(plan, "__id_") {
			t.Errorf("lookup by _id in %s: plan %q, want a search of the unique _id index", coll, plan)
		}
	}
}
