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
