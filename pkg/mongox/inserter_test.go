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

func TestInserterGroupsConcurrentInserts(t *testing.T) {
	ctx := testContext(t)
	var commands, docs atomic.Int64
	monitor := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		if e.CommandName == "insert" {
			commands.Add(1)
			if arr, ok := e.Command.Lookup("documents").ArrayOK(); ok {
				vals, _ := arr.Values()
				docs.Add(int64(len(vals)))
			}
		}
	}}
	client, err := mongo.Connect(options.Client().ApplyURI(devstack.Mongo(t)).SetMonitor(monitor))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	_, db := devstack.MongoDatabase(t)
	c := client.Database(db.Name()).Collection("orders")
	// Ten documents are there already: inserting them again must fail for
	// their callers only.
	for i := range 10 {
		if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprint("o", i)}, {Key: "n", Value: -1}}); err != nil {
			t.Fatal(err)
		}
	}
	commands.Store(0)
	docs.Store(0)

	in := mongox.NewInserter(c, 32)
	const callers = 200
	start := make(chan struct{})
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			<-start
			errs[i] = in.InsertOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprint("o", i)}, {Key: "n", Value: i}})
		})
	}
	close(start)
	wg.Wait()

	for i, err := range errs {
		switch {
		case i < 10 && !mongox.IsDuplicate(err):
			t.Errorf("insert of existing o%d = %v, want a duplicate key error", i, err)
		case i >= 10 && err != nil:
			t.Errorf("insert of new o%d = %v, want nil", i, err)
		}
	}
	n, err := c.CountDocuments(ctx, bson.D{})
	if err != nil || n != callers {
		t.Fatalf("documents stored = %d, %v; want %d", n, err, callers)
	}
	var first bson.M
	if err := c.FindOne(ctx, bson.D{{Key: "_id", Value: "o3"}}).Decode(&first); err != nil || first["n"] != int32(-1) {
		t.Errorf("o3 = %v, %v; want the first insert kept (n -1)", first, err)
	}
	if got := commands.Load(); got >= callers {
		t.Errorf("%d insert commands for %d concurrent inserts, want them grouped", got, callers)
	}
	t.Logf("%d concurrent inserts in %d commands (%d documents sent)", callers, commands.Load(), docs.Load())
}

func TestInserterCallerGivesUp(t *testing.T) {
	_, db := devstack.MongoDatabase(t)
	in := mongox.NewInserter(db.Collection("orders"), 8)
	ctx, cancel := context.WithCancel(testContext(t))
	cancel()
	if err := in.InsertOne(ctx, bson.D{{Key: "_id", Value: "late"}}); err == nil {
		// The insert may have been quick enough; the contract is only that
		// a caller whose context ended is not kept waiting.
		t.Log("insert answered before the cancelled context was noticed")
	}
	// The inserter keeps working for the next caller.
	if err := in.InsertOne(testContext(t), bson.D{{Key: "_id", Value: "next"}}); err != nil {
		t.Fatalf("insert after a caller gave up = %v", err)
	}
}

func TestInserterDropsWhatItsCallerGaveUp(t *testing.T) {
	stall, db := mongoxtest.StalledDatabase(t, 4)
	c := db.Collection("orders")
	in := mongox.NewInserter(c, 8)

	stall.Stall()
	first := make(chan error, 1)
	go func() { first <- in.InsertOne(testContext(t), bson.D{{Key: "_id", Value: "first"}}) }()
	time.Sleep(100 * time.Millisecond) // the first is on its way, and hangs
	ctx, cancel := context.WithTimeout(testContext(t), 200*time.Millisecond)
	defer cancel()
	if err := in.InsertOne(ctx, bson.D{{Key: "_id", Value: "given up"}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("an insert whose caller gave up = %v, want its context's error", err)
	}
	stall.Resume()
	if err := <-first; err != nil {
		t.Fatalf("the first insert after the store came back = %v", err)
	}
	// Once the inserter has sent everything it holds, the given-up insert
	// must not be among it.
	if err := in.InsertOne(testContext(t), bson.D{{Key: "_id", Value: "later"}}); err != nil {
		t.Fatalf("a later insert = %v", err)
	}
	n, err := c.CountDocuments(testContext(t), bson.D{{Key: "_id", Value: "given up"}})
	if err != nil || n != 0 {
		t.Errorf("documents of the insert given up = %d, %v; want 0", n, err)
	}
}
