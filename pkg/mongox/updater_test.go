package mongox_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/mongox"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// updateCommands connects to the test store counting update commands and
// the statements they carry.
func updateCommands(t *testing.T) (*mongo.Collection, *atomic.Int64, *atomic.Int64) {
	t.Helper()
	var commands, stmts atomic.Int64
	monitor := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		if e.CommandName == "update" {
			commands.Add(1)
			if arr, ok := e.Command.Lookup("updates").ArrayOK(); ok {
				vals, _ := arr.Values()
				stmts.Add(int64(len(vals)))
			}
		}
	}}
	client, err := mongo.Connect(options.Client().ApplyURI(devstack.Mongo(t)).SetMonitor(monitor))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	_, db := devstack.MongoDatabase(t)
	return client.Database(db.Name()).Collection("orders"), &commands, &stmts
}

func seed(t *testing.T, c *mongo.Collection, n int) {
	t.Helper()
	docs := make([]any, n)
	for i := range n {
		docs[i] = bson.D{{Key: "_id", Value: fmt.Sprint("o", i)}, {Key: "revision", Value: int64(1)}, {Key: "by", Value: "seed"}}
	}
	if _, err := c.InsertMany(testContext(t), docs); err != nil {
		t.Fatal(err)
	}
}

func byOf(t *testing.T, c *mongo.Collection, id string) (string, int64) {
	t.Helper()
	var d struct {
		By       string `bson:"by"`
		Revision int64  `bson:"revision"`
	}
	if err := c.FindOne(testContext(t), bson.D{{Key: "_id", Value: id}}).Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d.By, d.Revision
}

func TestUpdaterGroupsConcurrentUpdates(t *testing.T) {
	ctx := testContext(t)
	c, commands, stmts := updateCommands(t)
	const docs = 100
	seed(t, c, docs)
	commands.Store(0)
	stmts.Store(0)

	up := mongox.NewUpdater(c, 32, "revision")
	start := make(chan struct{})
	matched := make([]bool, docs)
	errs := make([]error, docs)
	var wg sync.WaitGroup
	for i := range docs {
		wg.Go(func() {
			<-start
			id := fmt.Sprint("o", i)
			matched[i], errs[i] = up.UpdateOne(ctx, id, 1, bson.D{{Key: "revision", Value: int64(2)}, {Key: "by", Value: id}})
		})
	}
	close(start)
	wg.Wait()
	for i := range docs {
		id := fmt.Sprint("o", i)
		if !matched[i] || errs[i] != nil {
			t.Errorf("update of %s = %v, %v; want matched", id, matched[i], errs[i])
		}
		if by, rev := byOf(t, c, id); by != id || rev != 2 {
			t.Errorf("%s = by %q at revision %d, want by itself at 2", id, by, rev)
		}
	}
	if commands.Load() >= docs {
		t.Errorf("%d update commands for %d concurrent updates, want them grouped", commands.Load(), docs)
	}
	t.Logf("%d concurrent updates in %d commands (%d statements)", docs, commands.Load(), stmts.Load())
}

// Two writers race for each document from the same revision: exactly one
// of them must be told it won, and the document must hold that one's
// change. Groups then hold winners and losers, and the updater tells them
// apart by reading the documents back.
func TestUpdaterTellsWinnersFromLosers(t *testing.T) {
	ctx := testContext(t)
	c, commands, stmts := updateCommands(t)
	const docs = 60
	seed(t, c, docs)
	commands.Store(0)
	stmts.Store(0)

	up := mongox.NewUpdater(c, 32, "revision")
	start := make(chan struct{})
	type result struct {
		matched bool
		err     error
	}
	results := make([][2]result, docs)
	var wg sync.WaitGroup
	for i := range docs {
		for w := range 2 {
			wg.Go(func() {
				<-start
				ok, err := up.UpdateOne(ctx, fmt.Sprint("o", i), 1, bson.D{{Key: "revision", Value: int64(2)}, {Key: "by", Value: fmt.Sprint("w", w)}})
				results[i][w] = result{ok, err}
			})
		}
	}
	close(start)
	wg.Wait()
	for i := range docs {
		id := fmt.Sprint("o", i)
		r := results[i]
		if r[0].err != nil || r[1].err != nil {
			t.Fatalf("%s: errors %v, %v", id, r[0].err, r[1].err)
		}
		if r[0].matched == r[1].matched {
			t.Errorf("%s: both writers told matched=%v, want exactly one", id, r[0].matched)
			continue
		}
		want := "w0"
		if r[1].matched {
			want = "w1"
		}
		if by, rev := byOf(t, c, id); by != want || rev != 2 {
			t.Errorf("%s = by %q at revision %d, want by the winner %s at 2", id, by, rev, want)
		}
	}
	if commands.Load() >= 2*docs {
		t.Errorf("%d update commands for %d concurrent updates, want them grouped", commands.Load(), 2*docs)
	}
	t.Logf("%d racing updates in %d commands (%d statements)", 2*docs, commands.Load(), stmts.Load())
}

func TestUpdaterReadBack(t *testing.T) {
	ctx := testContext(t)
	_, db := devstack.MongoDatabase(t)
	c := db.Collection("orders")
	mine, other := bson.NewObjectID(), bson.NewObjectID()
	if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "revision", Value: int64(5)}, {Key: mongox.FieldWriteID, Value: other}}); err != nil {
		t.Fatal(err)
	}
	up := mongox.NewUpdater(c, 32, "revision")
	for _, tc := range []struct {
		name    string
		id      string
		rev     int64
		tok     bson.ObjectID
		matched bool
		unknown bool
	}{
		{"its token is there", "a", 5, other, true, false},
		{"another writer won from the same revision", "a", 5, mine, false, false},
		{"the document is behind it", "a", 6, mine, false, false},
		{"the document moved on past it", "a", 4, mine, false, true},
		{"no document", "b", 2, mine, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			matched, err := up.ReadBack(ctx, tc.id, tc.rev, tc.tok)
			if matched != tc.matched || errors.Is(err, mongox.ErrOutcomeUnknown) != tc.unknown || (err != nil && !tc.unknown) {
				t.Errorf("ReadBack = %v, %v; want matched %v, unknown %v", matched, err, tc.matched, tc.unknown)
			}
		})
	}
}

func TestUpdaterRefusesAWriteThatKeepsItsRevision(t *testing.T) {
	_, db := devstack.MongoDatabase(t)
	up := mongox.NewUpdater(db.Collection("orders"), 32, "revision")
	if _, err := up.UpdateOne(testContext(t), "a", 3, bson.D{{Key: "revision", Value: int64(3)}}); err == nil {
		t.Error("an update that does not raise the revision was accepted")
	}
	if _, err := up.UpdateOne(testContext(t), "a", 3, bson.D{{Key: "by", Value: "x"}}); err == nil {
		t.Error("an update that sets no revision was accepted")
	}
}
