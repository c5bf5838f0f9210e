package mongox_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/mongox"
	"github.com/pizzashop/pizzashop/pkg/mongox/mongoxtest"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// commandCounts counts what an updater sends the store.
type commandCounts struct {
	updates, statements, finds atomic.Int64
	// repeats counts update commands that name a document twice.
	repeats atomic.Int64
}

func (c *commandCounts) reset() {
	c.updates.Store(0)
	c.statements.Store(0)
	c.finds.Store(0)
	c.repeats.Store(0)
}

// updateCommands connects to the test store counting update commands, the
// statements they carry, and finds.
func updateCommands(t *testing.T) (*mongo.Collection, *commandCounts) {
	t.Helper()
	counts := &commandCounts{}
	monitor := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		switch e.CommandName {
		case "find":
			counts.finds.Add(1)
		case "update":
			counts.updates.Add(1)
			arr, ok := e.Command.Lookup("updates").ArrayOK()
			if !ok {
				return
			}
			vals, _ := arr.Values()
			counts.statements.Add(int64(len(vals)))
			seen := map[string]bool{}
			for _, v := range vals {
				id := v.Document().Lookup("q", "_id").String()
				if seen[id] {
					counts.repeats.Add(1)
				}
				seen[id] = true
			}
		}
	}}
	client, err := mongo.Connect(options.Client().ApplyURI(devstack.Mongo(t)).SetMonitor(monitor))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	_, db := devstack.MongoDatabase(t)
	return client.Database(db.Name()).Collection("orders"), counts
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
	c, counts := updateCommands(t)
	const docs = 100
	seed(t, c, docs)
	counts.reset()

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
	readBack := counts.finds.Load()
	for i := range docs {
		id := fmt.Sprint("o", i)
		if !matched[i] || errs[i] != nil {
			t.Errorf("update of %s = %v, %v; want matched", id, matched[i], errs[i])
		}
		if by, rev := byOf(t, c, id); by != id || rev != 2 {
			t.Errorf("%s = by %q at revision %d, want by itself at 2", id, by, rev)
		}
	}
	if counts.updates.Load() >= docs {
		t.Errorf("%d update commands for %d concurrent updates, want them grouped", counts.updates.Load(), docs)
	}
	if readBack != 0 {
		t.Errorf("%d reads back after groups that all matched, want none", readBack)
	}
	t.Logf("%d concurrent updates in %d commands (%d statements)", docs, counts.updates.Load(), counts.statements.Load())
}

// Two writers race for each document from the same revision: exactly one
// of them must be told it won, and the document must hold that one's
// change. Groups then hold winners and losers, and the updater tells them
// apart by reading the documents back. Beside them, a writer per document
// that moved on already always loses: with the racing pairs woken in the
// order they were made, a group would otherwise hold every pair's first
// writer (all winners) and the next every second one (all losers).
func TestUpdaterTellsWinnersFromLosers(t *testing.T) {
	ctx := testContext(t)
	c, counts := updateCommands(t)
	const docs = 60
	seed(t, c, docs)
	moved := make([]any, docs)
	for i := range docs {
		moved[i] = bson.D{{Key: "_id", Value: fmt.Sprint("m", i)}, {Key: "revision", Value: int64(2)}, {Key: "by", Value: "moved"}}
	}
	if _, err := c.InsertMany(ctx, moved); err != nil {
		t.Fatal(err)
	}
	counts.reset()

	up := mongox.NewUpdater(c, 32, "revision")
	start := make(chan struct{})
	type result struct {
		matched bool
		err     error
	}
	results := make([][2]result, docs)
	late := make([]result, docs)
	var wg sync.WaitGroup
	for i := range docs {
		for w := range 2 {
			wg.Go(func() {
				<-start
				ok, err := up.UpdateOne(ctx, fmt.Sprint("o", i), 1, bson.D{{Key: "revision", Value: int64(2)}, {Key: "by", Value: fmt.Sprint("w", w)}})
				results[i][w] = result{ok, err}
			})
		}
		wg.Go(func() {
			<-start
			ok, err := up.UpdateOne(ctx, fmt.Sprint("m", i), 1, bson.D{{Key: "revision", Value: int64(2)}, {Key: "by", Value: "late"}})
			late[i] = result{ok, err}
		})
	}
	close(start)
	wg.Wait()
	readBack := counts.finds.Load()
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
	for i, r := range late {
		id := fmt.Sprint("m", i)
		if r.err != nil || r.matched {
			t.Errorf("%s: the write from a revision it moved past = %v, %v; want not matched", id, r.matched, r.err)
		}
		if by, rev := byOf(t, c, id); by != "moved" || rev != 2 {
			t.Errorf("%s = by %q at revision %d, want as it was, by moved at 2", id, by, rev)
		}
	}
	if counts.updates.Load() >= 3*docs {
		t.Errorf("%d update commands for %d concurrent updates, want them grouped", counts.updates.Load(), 3*docs)
	}
	if counts.repeats.Load() != 0 {
		t.Errorf("%d update commands named a document twice, want each document once per group", counts.repeats.Load())
	}
	if readBack == 0 {
		t.Error("no update was read back: no group mixed winners and losers, so the test proved nothing")
	}
	t.Logf("%d racing updates in %d commands (%d statements, %d read back)", 3*docs, counts.updates.Load(), counts.statements.Load(), readBack)
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

// An update whose caller gave up while it waited for its group is never
// sent: the caller was told it failed, and a late write would land where
// nobody expects it.
func TestUpdaterDropsWhatItsCallerGaveUp(t *testing.T) {
	stall, db := mongoxtest.StalledDatabase(t, 4)
	c := db.Collection("orders")
	seed(t, c, 2)
	up := mongox.NewUpdater(c, 32, "revision")

	stall.Stall()
	first := make(chan error, 1)
	go func() {
		_, err := up.UpdateOne(testContext(t), "o0", 1, bson.D{{Key: "revision", Value: int64(2)}, {Key: "by", Value: "first"}})
		first <- err
	}()
	time.Sleep(100 * time.Millisecond) // the first is on its way, and hangs
	ctx, cancel := context.WithTimeout(testContext(t), 200*time.Millisecond)
	defer cancel()
	if _, err := up.UpdateOne(ctx, "o1", 1, bson.D{{Key: "revision", Value: int64(2)}, {Key: "by", Value: "given up"}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("an update whose caller gave up = %v, want its context's error", err)
	}
	stall.Resume()
	if err := <-first; err != nil {
		t.Fatalf("the first update after the store came back = %v", err)
	}
	// Once the updater has sent everything it holds, the given-up update
	// must not be among it.
	if ok, err := up.UpdateOne(testContext(t), "o0", 2, bson.D{{Key: "revision", Value: int64(3)}}); !ok || err != nil {
		t.Fatalf("a later update = %v, %v", ok, err)
	}
	if by, rev := byOf(t, c, "o1"); by != "seed" || rev != 1 {
		t.Errorf("o1 = by %q at revision %d: the update given up was made", by, rev)
	}
}
