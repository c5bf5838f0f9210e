package mongox_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/errs"
	"github.com/pizzashop/pizzashop/pkg/mongox"
	"github.com/pizzashop/pizzashop/pkg/mongox/mongoxtest"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

var (
	errNotFound = errs.New(errs.KindNotFound, "PIZZA_NOT_FOUND", "no such pizza")
	errExists   = errs.New(errs.KindAlreadyExists, "PIZZA_EXISTS", "a pizza with this name exists")
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// driverErrors produces real driver errors from FerretDB.
type driverErrors struct {
	noDocuments  error
	duplicate    error
	duplicateID  error
	disconnected error
	timeout      error
}

func produce(t *testing.T) driverErrors {
	t.Helper()
	ctx := testContext(t)
	_, db := devstack.MongoDatabase(t)
	pizzas := db.Collection("pizzas")
	unique := mongo.IndexModel{Keys: bson.D{{Key: "name", Value: 1}}, Options: options.Index().SetUnique(true)}
	bySize := mongo.IndexModel{Keys: bson.D{{Key: "size", Value: 1}, {Key: "name", Value: 1}}}
	// Declaring indexes that exist, as every restart does, is fine.
	for i := range 3 {
		if err := mongox.EnsureIndexes(ctx, pizzas, unique, bySize); err != nil {
			t.Fatalf("EnsureIndexes #%d: %v", i+1, err)
		}
	}
	if _, err := pizzas.InsertOne(ctx, bson.D{{Key: "_id", Value: "p1"}, {Key: "name", Value: "Margherita"}}); err != nil {
		t.Fatalf("InsertOne: %v", err)
	}
	var d driverErrors
	d.noDocuments = pizzas.FindOne(ctx, bson.D{{Key: "_id", Value: "nope"}}).Err()
	_, d.duplicate = pizzas.InsertOne(ctx, bson.D{{Key: "_id", Value: "p2"}, {Key: "name", Value: "Margherita"}})
	_, d.duplicateID = pizzas.InsertOne(ctx, bson.D{{Key: "_id", Value: "p1"}, {Key: "name", Value: "Marinara"}})
	expired, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	d.timeout = pizzas.FindOne(expired, bson.D{}).Err()

	c, err := mongox.Connect(devstack.Mongo(t), 2)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if err := c.Disconnect(ctx); err != nil {
		t.Fatalf("Disconnect: %v", err)
	}
	d.disconnected = c.Database(db.Name()).Collection("pizzas").FindOne(ctx, bson.D{}).Err()

	for name, err := range map[string]error{"no documents": d.noDocuments, "duplicate": d.duplicate,
		"duplicate id": d.duplicateID, "timeout": d.timeout, "disconnected": d.disconnected} {
		if err == nil {
			t.Fatalf("the store gave no error for the %s case", name)
		}
	}
	return d
}

func TestTranslate(t *testing.T) {
	d := produce(t)
	other := fmt.Errorf("decode pizza: %w", io.ErrUnexpectedEOF)
	tests := []struct {
		name      string
		err       error
		notFound  error
		exists    error
		want      error            // errors.Is(got, want)
		is        func(error) bool // instead of want, for driver errors that are not comparable
		wantKind  errs.Kind
		keepCause bool // the driver error stays in the chain
	}{
		{name: "nil", err: nil, notFound: errNotFound, exists: errExists, want: nil},
		{name: "no documents", err: d.noDocuments, notFound: errNotFound, exists: errExists, want: errNotFound, wantKind: errs.KindNotFound},
		{name: "no documents, wrapped", err: fmt.Errorf("get: %w", d.noDocuments), notFound: errNotFound, want: errNotFound, wantKind: errs.KindNotFound},
		{name: "no documents left alone", err: d.noDocuments, want: mongo.ErrNoDocuments, wantKind: errs.KindInternal, keepCause: true},
		{name: "duplicate on a unique index", err: d.duplicate, notFound: errNotFound, exists: errExists, want: errExists, wantKind: errs.KindAlreadyExists},
		{name: "duplicate _id", err: d.duplicateID, exists: errExists, want: errExists, wantKind: errs.KindAlreadyExists},
		{name: "duplicate left alone", err: d.duplicate, notFound: errNotFound, is: mongo.IsDuplicateKeyError, wantKind: errs.KindInternal},
		{name: "client disconnected", err: d.disconnected, notFound: errNotFound, exists: errExists, want: mongox.ErrUnavailable, wantKind: errs.KindUnavailable, keepCause: true},
		{name: "timeout", err: d.timeout, notFound: errNotFound, exists: errExists, want: mongox.ErrUnavailable, wantKind: errs.KindUnavailable, keepCause: true},
		{name: "other", err: other, notFound: errNotFound, exists: errExists, want: io.ErrUnexpectedEOF, wantKind: errs.KindInternal, keepCause: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mongox.Translate(tt.err, tt.notFound, tt.exists)
			switch {
			case tt.err == nil:
				if got != nil {
					t.Errorf("Translate(nil) = %v, want nil", got)
				}
				return
			case tt.is != nil && !tt.is(got):
				t.Errorf("Translate(%v) = %v, want the driver error back", tt.err, got)
			case tt.is == nil && !errors.Is(got, tt.want):
				t.Errorf("Translate(%v) = %v, want it to match %v", tt.err, got, tt.want)
			}
			if k := errs.KindOf(got); k != tt.wantKind {
				t.Errorf("KindOf(Translate(%v)) = %v, want %v", tt.err, k, tt.wantKind)
			}
			if tt.keepCause && !errors.Is(got, tt.err) {
				t.Errorf("Translate(%v) = %v, lost the driver error", tt.err, got)
			}
		})
	}
}

func TestIsDuplicate(t *testing.T) {
	d := produce(t)
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"unique index", d.duplicate, true},
		{"_id", d.duplicateID, true},
		{"wrapped", fmt.Errorf("insert: %w", d.duplicate), true},
		{"no documents", d.noDocuments, false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		if got := mongox.IsDuplicate(tt.err); got != tt.want {
			t.Errorf("IsDuplicate(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestPing(t *testing.T) {
	ctx := testContext(t)
	c, err := mongox.Connect(devstack.Mongo(t), 2)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if err := mongox.Ping(c)(ctx); err != nil {
		t.Errorf("Ping() = %v, want nil", err)
	}
	if err := c.Disconnect(ctx); err != nil {
		t.Fatalf("Disconnect: %v", err)
	}
	if err := mongox.Ping(c)(ctx); err == nil {
		t.Error("Ping() on a disconnected client = nil, want an error")
	}
}

func TestConnectBadURI(t *testing.T) {
	if _, err := mongox.Connect("not-a-mongo-uri", 2); err == nil {
		t.Error("Connect(bad URI) = nil error, want an error")
	}
}

func TestEnsureIndexesGivesUp(t *testing.T) {
	_, db := devstack.MongoDatabase(t)
	ctx, cancel := context.WithTimeout(testContext(t), 300*time.Millisecond)
	defer cancel()
	// Two indexes of one name over different keys: refused every time.
	err := mongox.EnsureIndexes(ctx, db.Collection("x"),
		mongo.IndexModel{Keys: bson.D{{Key: "a", Value: 1}}, Options: options.Index().SetName("same")},
		mongo.IndexModel{Keys: bson.D{{Key: "b", Value: 1}}, Options: options.Index().SetName("same")})
	if err == nil {
		t.Error("EnsureIndexes(conflicting indexes) = nil, want an error once the context ends")
	}
}

// TestConnectBoundsEveryCall checks that a store that hangs, keeping its
// connections open without answering, fails calls within the timeout as
// ErrUnavailable, and that calls work again once it answers.
func TestConnectBoundsEveryCall(t *testing.T) {
	stall, uri := mongoxtest.StallIn(t, devstack.Mongo(t))
	// The database and its first document are made without the short
	// timeout: creating a collection can take FerretDB longer than 500ms
	// on a loaded machine.
	_, db := devstack.MongoDatabase(t)
	if _, err := db.Collection("things").InsertOne(testContext(t), bson.D{{Key: "_id", Value: "a"}, {Key: "n", Value: 1}}); err != nil {
		t.Fatalf("InsertOne without the short timeout: %v", err)
	}
	const timeout = 500 * time.Millisecond
	c, err := mongox.Connect(uri, 4, mongox.WithTimeout(timeout))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	coll := c.Database(db.Name()).Collection("things")
	ctx := context.Background() // no deadline: the client's timeout applies
	// Every kind of call the stores make works with the timeout set. A
	// call may run out of its 500ms on a loaded machine and is tried
	// again; any other error, or only timeouts for 10s, fails.
	works := func(name string, call func(attempt int) error) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for attempt := 0; ; attempt++ {
			err := call(attempt)
			if err == nil {
				return
			}
			if !mongo.IsTimeout(err) || time.Now().After(deadline) {
				t.Fatalf("%s on a store that answers: %v", name, err)
			}
		}
	}
	works("InsertOne", func(attempt int) error {
		// A new id each attempt: one that timed out may have been made.
		_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("w%d", attempt)}, {Key: "n", Value: 1}})
		return err
	})
	works("UpdateOne", func(int) error {
		_, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 2}}}})
		return err
	})
	works("Find", func(int) error {
		cur, err := coll.Find(ctx, bson.D{{Key: "n", Value: 2}})
		if err == nil {
			_ = cur.Close(ctx)
		}
		return err
	})
	works("CountDocuments", func(int) error { _, err := coll.CountDocuments(ctx, bson.D{}); return err })

	stall.Stall()
	for _, call := range []struct {
		name string
		run  func() error
	}{
		{"FindOne", func() error { return coll.FindOne(ctx, bson.D{{Key: "_id", Value: "a"}}).Err() }},
		{"InsertOne", func() error { _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "b"}}); return err }},
		{"Ping", func() error { return mongox.Ping(c)(ctx) }},
	} {
		begin := time.Now()
		err := call.run()
		took := time.Since(begin)
		if err == nil {
			t.Errorf("%s on a stalled store = nil, want an error", call.name)
			continue
		}
		if call.name != "Ping" {
			if got := mongox.Translate(err, nil, nil); !errors.Is(got, mongox.ErrUnavailable) {
				t.Errorf("Translate(%s on a stalled store: %v) = %v, want ErrUnavailable", call.name, err, got)
			}
		}
		if took > timeout+time.Second {
			t.Errorf("%s on a stalled store took %v, want about %v", call.name, took, timeout)
		}
	}
	stall.Resume()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "a"}}).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("FindOne after the store answers again = %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
