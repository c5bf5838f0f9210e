package devstack

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// indexedFinds counts the finds of coll the proxy answered from an index.
func indexedFinds(f *ferretDB, coll string) int64 {
	var n int64
	for _, st := range f.proxy.commands.snapshot() {
		if st.Command == "find" && st.Collection == coll && st.Lookup == "index" {
			n += st.Count
		}
	}
	return n
}

// findAll returns every document of a find.
func findAll(t *testing.T, c *mongo.Collection, filter any, o *options.FindOptionsBuilder) []bson.Raw {
	t.Helper()
	ctx := context.Background()
	cur, err := c.Find(ctx, filter, o)
	if err != nil {
		t.Fatal(err)
	}
	var out []bson.Raw
	if err := cur.All(ctx, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestIndexedFindAnswersAsFerretDB runs pages of the shapes the shop's
// stores list with (an equality and a keyset $or in sort order, $in, ranges,
// an exclusion projection) against documents whose values tie, mix number
// types and hold strings that JSON escapes, and requires the answer the
// proxy gives from an index to be the one FerretDB gives by reading every
// document. A comment on a find is an option the proxy leaves to FerretDB,
// so the same find with one is the reference.
func TestIndexedFindAnswersAsFerretDB(t *testing.T) {
	f, client := startGuardStore(t)
	ctx := context.Background()
	c := client.Database("pushdown").Collection("orders")
	for _, keys := range []bson.D{
		{{Key: "customer", Value: 1}, {Key: "t", Value: -1}, {Key: "_id", Value: -1}},
		{{Key: "t", Value: -1}, {Key: "_id", Value: -1}},
		{{Key: "status", Value: 1}, {Key: "t", Value: 1}, {Key: "_id", Value: 1}},
		{{Key: "n", Value: 1}},
	} {
		if _, err := c.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: keys}); err != nil {
			t.Fatal(err)
		}
	}
	customers := []string{"alice", "bob", "a b", "a<b&c", "é", `q"uote`}
	base := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	var docs []any
	for i := range 600 {
		var n any
		switch i % 3 {
		case 0:
			n = int32(i % 7)
		case 1:
			n = int64(i % 7)
		default:
			n = float64(i%7) + 0.5*float64(i%2)
		}
		docs = append(docs, bson.D{
			{Key: "_id", Value: fmt.Sprintf("o%04d", rng.IntN(10000)*10+i%10)},
			{Key: "customer", Value: customers[rng.IntN(len(customers))]},
			{Key: "t", Value: base.Add(time.Duration(rng.IntN(40)) * time.Second)}, // many ties
			{Key: "status", Value: int32(1 + rng.IntN(4))},
			{Key: "n", Value: n},
			{Key: "outbox", Value: bson.A{bson.D{{Key: "id", Value: "e"}}}},
		})
	}
	if _, err := c.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)); err != nil && !mongo.IsDuplicateKeyError(err) {
		t.Fatal(err)
	}

	mid := base.Add(20 * time.Second)
	noOutbox := bson.D{{Key: "outbox", Value: 0}}
	cases := []struct {
		name   string
		filter bson.D
		sort   bson.D
		limit  int64
		proj   bson.D
	}{
		{"customer page", bson.D{{Key: "customer", Value: "a<b&c"}}, bson.D{{Key: "t", Value: -1}, {Key: "_id", Value: -1}}, 21, noOutbox},
		{"customer next page", bson.D{{Key: "customer", Value: "alice"}, {Key: "$or", Value: bson.A{
			bson.D{{Key: "t", Value: bson.D{{Key: "$lt", Value: mid}}}},
			bson.D{{Key: "t", Value: mid}, {Key: "_id", Value: bson.D{{Key: "$lt", Value: "o5"}}}},
		}}}, bson.D{{Key: "t", Value: -1}, {Key: "_id", Value: -1}}, 21, noOutbox},
		{"everyone's newest", bson.D{}, bson.D{{Key: "t", Value: -1}, {Key: "_id", Value: -1}}, 50, nil},
		{"everyone after a cursor", bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: "t", Value: bson.D{{Key: "$lt", Value: mid}}}},
			bson.D{{Key: "t", Value: mid}, {Key: "_id", Value: bson.D{{Key: "$lt", Value: "o5"}}}},
		}}}, bson.D{{Key: "t", Value: -1}, {Key: "_id", Value: -1}}, 30, noOutbox},
		{"statuses in arrival order", bson.D{{Key: "status", Value: bson.D{{Key: "$in", Value: bson.A{1, 3}}}}, {Key: "$or", Value: bson.A{
			bson.D{{Key: "t", Value: bson.D{{Key: "$gt", Value: mid}}}},
			bson.D{{Key: "t", Value: mid}, {Key: "_id", Value: bson.D{{Key: "$gt", Value: "o3"}}}},
		}}}, bson.D{{Key: "t", Value: 1}, {Key: "_id", Value: 1}}, 25, noOutbox},
		{"numbers of every type", bson.D{{Key: "n", Value: bson.D{{Key: "$gte", Value: 2}, {Key: "$lt", Value: 4.5}}}}, bson.D{{Key: "n", Value: 1}, {Key: "_id", Value: 1}}, 40, nil},
		{"a number equal to a double", bson.D{{Key: "n", Value: 3.0}}, bson.D{{Key: "n", Value: 1}}, 500, nil},
		{"a string with a quote", bson.D{{Key: "customer", Value: `q"uote`}}, bson.D{{Key: "t", Value: -1}, {Key: "_id", Value: -1}}, 500, nil},
		{"no limit, fields kept", bson.D{{Key: "t", Value: bson.D{{Key: "$gte", Value: base.Add(35 * time.Second)}}}}, nil, 0,
			bson.D{{Key: "_id", Value: 1}, {Key: "outbox", Value: 1}}},
		{"no _id", bson.D{{Key: "customer", Value: "bob"}}, bson.D{{Key: "t", Value: -1}, {Key: "_id", Value: -1}}, 10,
			bson.D{{Key: "_id", Value: 0}, {Key: "outbox", Value: 0}}},
		{"only some fields, no _id", bson.D{{Key: "customer", Value: "bob"}}, bson.D{{Key: "t", Value: -1}, {Key: "_id", Value: -1}}, 10,
			bson.D{{Key: "_id", Value: 0}, {Key: "n", Value: 1}, {Key: "t", Value: true}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := func() *options.FindOptionsBuilder {
				o := options.Find()
				if tc.sort != nil {
					o.SetSort(tc.sort)
				}
				if tc.limit != 0 {
					o.SetLimit(tc.limit)
				}
				if tc.proj != nil {
					o.SetProjection(tc.proj)
				}
				return o
			}
			read := func(o *options.FindOptionsBuilder) []bson.Raw { return findAll(t, c, tc.filter, o) }
			before := indexedFinds(f, "orders")
			got := read(opts())
			if indexedFinds(f, "orders") == before {
				t.Fatalf("the find went to FerretDB; want it answered from an index")
			}
			want := read(opts().SetComment("reference"))
			if len(want) == 0 {
				t.Fatal("the reference found nothing; the case tests nothing")
			}
			if tc.sort == nil {
				// No order asked for: compare as sets.
				slices.SortFunc(got, func(a, b bson.Raw) int { return strings.Compare(a.String(), b.String()) })
				slices.SortFunc(want, func(a, b bson.Raw) int { return strings.Compare(a.String(), b.String()) })
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("from the index %d documents:\n%s\nFerretDB %d:\n%s", len(got), ids(got), len(want), ids(want))
			}
		})
	}

	// What the proxy leaves to FerretDB: more than it answers, a path, an
	// unindexed field, a projection of a path.
	if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: "arr"}, {Key: "customer", Value: bson.A{"alice", "zed"}}, {Key: "t", Value: base}}); err != nil {
		t.Fatal(err)
	}
	for name, find := range map[string]func() (*mongo.Cursor, error){
		"more than pushdownLimit": func() (*mongo.Cursor, error) {
			return c.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "t", Value: -1}, {Key: "_id", Value: -1}}).SetLimit(pushdownLimit+1))
		},
		"a path": func() (*mongo.Cursor, error) {
			return c.Find(ctx, bson.D{{Key: "outbox.id", Value: "e"}}, options.Find().SetLimit(5))
		},
		"unindexed field": func() (*mongo.Cursor, error) {
			return c.Find(ctx, bson.D{{Key: "missing", Value: "e"}}, options.Find().SetLimit(5))
		},
		"projection of a path": func() (*mongo.Cursor, error) {
			return c.Find(ctx, bson.D{{Key: "customer", Value: "bob"}}, options.Find().SetLimit(5).SetProjection(bson.D{{Key: "outbox.id", Value: 1}}))
		},
	} {
		before := indexedFinds(f, "orders")
		cur, err := find()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_ = cur.Close(ctx)
		if indexedFinds(f, "orders") != before {
			t.Errorf("%s: answered from an index; want it left to FerretDB", name)
		}
	}
	// The document holding an array is found by FerretDB's rules when the
	// proxy meets it among its candidates: it leaves the whole find to
	// FerretDB.
	var got []bson.Raw
	cur, err := c.Find(ctx, bson.D{{Key: "t", Value: base}}, options.Find().SetSort(bson.D{{Key: "t", Value: -1}, {Key: "_id", Value: -1}}).SetLimit(500))
	if err != nil || cur.All(ctx, &got) != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ids(got), "arr") {
		t.Errorf("a find of t = base missed the document whose customer is an array: %s", ids(got))
	}
}

func ids(docs []bson.Raw) string {
	var out []string
	for _, d := range docs {
		out = append(out, d.Lookup("_id").String())
	}
	return strings.Join(out, " ")
}

// TestIndexedFindFlatAt50000 proves that a page of one customer's documents
// costs about the same among 50,000 as among 50: SQLite walks the index
// instead of FerretDB decoding every document, hundreds of times the work.
func TestIndexedFindFlatAt50000(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 50,000 documents")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f, client := startGuardStore(t)
	db := client.Database("flat")
	page := func(c *mongo.Collection) time.Duration {
		start := time.Now()
		for i := range 20 {
			cur, err := c.Find(ctx, bson.D{{Key: "owner", Value: fmt.Sprintf("c%d", i%10)}},
				options.Find().SetSort(bson.D{{Key: "n", Value: -1}, {Key: "_id", Value: -1}}).SetLimit(20))
			if err != nil {
				t.Fatal(err)
			}
			var docs []bson.Raw
			if err := cur.All(ctx, &docs); err != nil || len(docs) == 0 {
				t.Fatalf("page of c%d: %d documents, %v", i%10, len(docs), err)
			}
		}
		return time.Since(start) / 20
	}
	fillOwned := func(c *mongo.Collection, n int) {
		if _, err := c.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "owner", Value: 1}, {Key: "n", Value: -1}, {Key: "_id", Value: -1}}}); err != nil {
			t.Fatal(err)
		}
		pad := strings.Repeat("x", 400)
		for start := 0; start < n; start += 1000 {
			var docs []any
			for i := start; i < min(n, start+1000); i++ {
				docs = append(docs, bson.D{{Key: "_id", Value: docID(i)}, {Key: "owner", Value: fmt.Sprintf("c%d", i%10)}, {Key: "n", Value: i}, {Key: "pad", Value: pad}})
			}
			if _, err := c.InsertMany(ctx, docs); err != nil {
				t.Fatal(err)
			}
		}
	}
	big, small := db.Collection("big"), db.Collection("small")
	fillOwned(big, 50_000)
	fillOwned(small, 50)
	page(small) // warm up
	smallCost, bigCost := page(small), page(big)
	t.Logf("a page of 20 of one owner's documents: %s among 50, %s among 50,000", smallCost, bigCost)
	if indexedFinds(f, "big") == 0 {
		t.Fatal("no page came from an index")
	}
	if bigCost > 10*smallCost+5*time.Millisecond {
		t.Errorf("a page among 50,000 documents = %s, want about the %s it costs among 50", bigCost, smallCost)
	}
}

// TestIndexedFindOptionsAsFerretDB: a projection of _id alone keeps only
// _id, and a find of a single batch returns no more than the batch holds
// (batchSize, or 101 by default), as MongoDB and FerretDB do.
func TestIndexedFindOptionsAsFerretDB(t *testing.T) {
	f, client := startGuardStore(t)
	ctx := context.Background()
	db := client.Database("pushdown")
	c := db.Collection("opts")
	if _, err := c.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "owner", Value: 1}, {Key: "n", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	var docs []any
	for i := range 150 {
		docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("d%03d", i)}, {Key: "owner", Value: "a"}, {Key: "n", Value: int64(i)}})
	}
	if _, err := c.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	find := bson.D{{Key: "find", Value: "opts"}, {Key: "filter", Value: bson.D{{Key: "owner", Value: "a"}}}, {Key: "sort", Value: bson.D{{Key: "n", Value: 1}}}}
	for name, opts := range map[string]bson.D{
		"only _id":            {{Key: "limit", Value: int64(5)}, {Key: "projection", Value: bson.D{{Key: "_id", Value: 1}}}},
		"a single batch of 5": {{Key: "limit", Value: int64(20)}, {Key: "batchSize", Value: int32(5)}, {Key: "singleBatch", Value: true}},
		"a single batch":      {{Key: "singleBatch", Value: true}},
	} {
		t.Run(name, func(t *testing.T) {
			firstBatch := func(cmd bson.D) []bson.Raw {
				var res struct {
					Cursor struct{ FirstBatch []bson.Raw }
				}
				if err := db.RunCommand(ctx, cmd).Decode(&res); err != nil {
					t.Fatal(err)
				}
				return res.Cursor.FirstBatch
			}
			cmd := append(slices.Clip(find), opts...)
			before := indexedFinds(f, "opts")
			got := firstBatch(cmd)
			if indexedFinds(f, "opts") == before {
				t.Fatalf("the find went to FerretDB; want it answered from an index")
			}
			want := firstBatch(append(cmd, bson.E{Key: "comment", Value: "reference"}))
			if !reflect.DeepEqual(got, want) {
				t.Errorf("from the index %d documents:\n%s\nFerretDB %d:\n%s", len(got), got, len(want), want)
			}
		})
	}
}

// TestIndexedFindNoDuplicates: a page whose documents changed after SQLite
// listed them is filled from the next rows; documents stored meanwhile
// before them shift those rows, and a document already in the answer
// must not come a second time.
func TestIndexedFindNoDuplicates(t *testing.T) {
	f, client := startGuardStore(t)
	ctx := context.Background()
	c := client.Database("pushdown").Collection("dups")
	if _, err := c.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "status", Value: 1}, {Key: "n", Value: -1}}}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("d%d", i)}, {Key: "status", Value: "open"}, {Key: "n", Value: int64(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	other, err := mongo.Connect(options.Client().ApplyURI(f.uri))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Disconnect(ctx) }()
	oc := other.Database("pushdown").Collection("dups")
	once := func() {
		// Between the first page of ids and the reads of their documents:
		// d4 is closed, and two newer documents are stored.
		f.proxy.finder.afterIDs.Store(nil)
		if _, err := oc.UpdateOne(ctx, bson.D{{Key: "_id", Value: "d4"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: "closed"}}}}); err != nil {
			t.Error(err)
		}
		for _, id := range []string{"n6", "n7"} {
			if _, err := oc.InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "status", Value: "open"}, {Key: "n", Value: int64(6 + len(id))}}); err != nil {
				t.Error(err)
			}
		}
	}
	f.proxy.finder.afterIDs.Store(&once)
	before := indexedFinds(f, "dups")
	cur, err := c.Find(ctx, bson.D{{Key: "status", Value: "open"}}, options.Find().SetSort(bson.D{{Key: "n", Value: -1}}).SetLimit(3))
	if err != nil {
		t.Fatal(err)
	}
	var got []bson.Raw
	if err := cur.All(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if indexedFinds(f, "dups") == before {
		t.Fatal("the find went to FerretDB; want it answered from an index")
	}
	seen := map[string]bool{}
	for _, d := range got {
		id := d.Lookup("_id").StringValue()
		if seen[id] {
			t.Errorf("%s twice in %s", id, ids(got))
		}
		seen[id] = true
	}
}

// TestIndexedFindAfterCreateIndexes requires a find that first had no index
// to search to be answered from one as soon as the index exists: the plan
// kept from before must not outlive the index change.
func TestIndexedFindAfterCreateIndexes(t *testing.T) {
	f, client := startGuardStore(t)
	ctx := context.Background()
	c := client.Database("plans").Collection("tickets")
	var docs []any
	for i := range 50 {
		docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("t%02d", i)}, {Key: "status", Value: int32(i % 3)}})
	}
	if _, err := c.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	page := func() []bson.Raw {
		return findAll(t, c, bson.D{{Key: "status", Value: int32(1)}}, options.Find().SetLimit(5))
	}
	if got := len(page()); got != 5 || indexedFinds(f, "tickets") != 0 {
		t.Fatalf("before the index: %d documents, %d finds from an index; want 5 and none", got, indexedFinds(f, "tickets"))
	}
	if _, err := c.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "status", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	if got := len(page()); got != 5 || indexedFinds(f, "tickets") != 1 {
		t.Fatalf("after the index: %d documents, %d finds from an index; want 5 and 1", got, indexedFinds(f, "tickets"))
	}
	if err := c.Indexes().DropAll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(page()); got != 5 || indexedFinds(f, "tickets") != 1 {
		t.Fatalf("after the index was dropped: %d documents, %d finds from an index; want 5 and still 1", got, indexedFinds(f, "tickets"))
	}
}
