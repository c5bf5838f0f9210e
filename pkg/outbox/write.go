package outbox

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/pizzashop/pizzashop/pkg/mongox"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Write applies set to document id if it is still at the revision of st,
// and adds events to its outbox in the same write. set must include the
// new revision. It reports whether the document matched; false means it
// changed since it was read, and the caller should read it again and retry.
//
// The entries st holds stay in the outbox unless tr knows them published,
// and outbox_at never moves back, so a relay that takes over after a crash
// finds in range every document with an entry it may not have published.
func Write(ctx context.Context, c *mongo.Collection, tr Tracker, id any, st State, set bson.D, events ...Entry) (bool, error) {
	_, ok, err := write(ctx, collectionUpdater{c}, tr, id, st, set, events)
	return ok, err
}

// write is Write through up that also returns the document's outbox state
// after it.
func write(ctx context.Context, up Updater, tr Tracker, id any, st State, set bson.D, events []Entry) (State, bool, error) {
	rev, ok := mongox.Int64Field(set, FieldRevision)
	if !ok || rev <= st.Revision {
		return State{}, false, fmt.Errorf("outbox: write of %v must set %s above %d", id, FieldRevision, st.Revision)
	}
	if len(events) == 0 {
		matched, err := up.UpdateOne(ctx, id, st.Revision, set)
		if err != nil {
			return State{}, false, err
		}
		return State{Revision: rev, Outbox: st.Outbox, At: st.At}, matched, nil
	}
	at, err := tr.Begin(ctx)
	if err != nil {
		return State{}, false, err
	}
	kept := st.Outbox
	if len(kept) > 0 && tr.Acked(ctx, kept, st.At) {
		kept = nil
	}
	stamp := at
	if len(kept) > 0 && st.At.After(stamp) {
		stamp = st.At // a writer whose clock runs ahead left entries here
	}
	entries := append(slices.Clip(kept), events...)
	set = append(slices.Clip(set), bson.E{Key: FieldEntries, Value: entries}, bson.E{Key: FieldAt, Value: stamp})
	matched, err := up.UpdateOne(ctx, id, st.Revision, set)
	w := Written{At: at, Coll: up.Collection(), ID: id, Revision: rev, Entries: entries}
	switch {
	case err != nil:
		w.Outcome = Unknown
	case !matched:
		w.Outcome = NotApplied
	}
	tr.Done(w)
	if err != nil {
		return State{}, false, err
	}
	return State{Revision: rev, Outbox: entries, At: stamp}, matched, nil
}

// Updater makes one guarded update: document id gets set if its revision
// is still was. A collection (through Write and Update) makes it alone; a
// mongox.Updater sends concurrent updates together.
type Updater interface {
	UpdateOne(ctx context.Context, id any, was int64, set bson.D) (matched bool, err error)
	Collection() *mongo.Collection
}

type collectionUpdater struct{ c *mongo.Collection }

func (cu collectionUpdater) UpdateOne(ctx context.Context, id any, was int64, set bson.D) (bool, error) {
	res, err := cu.c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: FieldRevision, Value: was}}, bson.D{{Key: "$set", Value: set}})
	if err != nil {
		return false, err
	}
	return res.MatchedCount == 1, nil
}

func (cu collectionUpdater) Collection() *mongo.Collection { return cu.c }

// Inserter stores one new document: a collection (through Insert), or a
// mongox.Inserter that sends concurrent inserts together.
type Inserter interface {
	InsertOne(ctx context.Context, doc any) error
	Collection() *mongo.Collection
}

// Insert stores a new document whose outbox holds events: doc builds it
// with the stamp to keep in outbox_at. The error is InsertOne's; a
// duplicate key error means the document exists and nothing was written.
func Insert(ctx context.Context, c *mongo.Collection, tr Tracker, id any, rev int64, events []Entry, doc func(at time.Time) any) error {
	return InsertWith(ctx, collectionInserter{c}, tr, id, rev, events, doc)
}

// InsertWith is Insert through ins.
func InsertWith(ctx context.Context, ins Inserter, tr Tracker, id any, rev int64, events []Entry, doc func(at time.Time) any) error {
	if len(events) == 0 {
		return ins.InsertOne(ctx, doc(time.Time{}))
	}
	at, err := tr.Begin(ctx)
	if err != nil {
		return err
	}
	// The outcome must be known for the tracker, so the wait outlives a
	// caller that gives up (the store's own timeout bounds it).
	err = ins.InsertOne(context.WithoutCancel(ctx), doc(at))
	w := Written{At: at, Coll: ins.Collection(), ID: id, Revision: rev, Entries: events}
	switch {
	case mongox.IsDuplicate(err):
		w.Outcome = NotApplied
		// The document there may be this write's own twin, stored by an
		// attempt whose answer was lost: have its entries published now
		// rather than when that attempt's relay reads it back.
		defer tr.Done(Written{Coll: ins.Collection(), ID: id, Outcome: Unknown})
	case err != nil:
		w.Outcome = Unknown
	}
	tr.Done(w)
	return err
}

type collectionInserter struct{ c *mongo.Collection }

func (ci collectionInserter) InsertOne(ctx context.Context, doc any) error {
	_, err := ci.c.InsertOne(ctx, doc)
	return err
}

func (ci collectionInserter) Collection() *mongo.Collection { return ci.c }
