package mongox

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Updater sends the guarded updates its callers make at the same time into
// one collection as one unordered bulk write, as Inserter does for inserts:
// while one write is on its way, the updates that arrive wait and go
// together in the next, up to max of them, at most one per document. A lone
// update goes at once as a plain update.
//
// A guarded update changes a document only if its revision field still has
// the value the caller read, and sets a higher one. A bulk write reports
// only how many documents matched in all, so each update of a group also
// stamps the document with a token of its own (FieldWriteID). When fewer
// matched than were sent, the updater reads the group's documents back by
// _id: the token tells which updates landed. When a document has moved on
// past an update's revision since, and carries another token, the update's
// fate cannot be told: its caller gets ErrOutcomeUnknown, as it would get a
// network error, and must treat the write as possibly made (outbox.Update
// reads the document again and retries).
type Updater struct {
	c        *mongo.Collection
	revision string
	q        groupQueue[*updateCall]
}

// FieldWriteID is the field a grouped update stamps with its token.
const FieldWriteID = "write_id"

// UpdateGroup is the group size the stores use. The embedded store holds a
// connection per statement of a bulk write until the write ends, so groups
// stay well under its pool; past a few dozen a group saves little more.
const UpdateGroup = 32

// ErrOutcomeUnknown: a grouped update may or may not have been made.
var ErrOutcomeUnknown = errors.New("mongox: the update's outcome is unknown")

type updateCall struct {
	id   any
	was  int64
	rev  int64
	set  bson.D
	tok  bson.ObjectID
	done chan updateResult
}

type updateResult struct {
	matched bool
	err     error
}

// NewUpdater returns an Updater into c that groups up to group updates per
// write, guarded by the int64 field revision.
func NewUpdater(c *mongo.Collection, group int, revision string) *Updater {
	u := &Updater{c: c, revision: revision}
	u.q = groupQueue[*updateCall]{take: onePerDocument(max(1, group)), send: u.send}
	return u
}

// Collection is the collection the updater writes to.
func (u *Updater) Collection() *mongo.Collection { return u.c }

// UpdateOne applies set to document id if its revision field is still was,
// and reports whether it did. set must set the revision field to a value
// above was. When ctx ends first it returns ctx's error: an update still
// waiting for its group is then never sent, and one already sent may still
// be made, within the write's timeout (10 s).
func (u *Updater) UpdateOne(ctx context.Context, id any, was int64, set bson.D) (bool, error) {
	rev, ok := Int64Field(set, u.revision)
	if !ok || rev <= was {
		return false, fmt.Errorf("mongox: update of %v must set %s above %d", id, u.revision, was)
	}
	call := &updateCall{id: id, was: was, rev: rev, set: set, done: make(chan updateResult, 1)}
	u.q.add(call)
	select {
	case r := <-call.done:
		return r.matched, r.err
	case <-ctx.Done():
		// An update still queued is taken out, so it is never made; one
		// already sent ends within its write's timeout.
		u.q.remove(call)
		return false, ctx.Err()
	}
}

// onePerDocument is the take of the updater's queue: up to n updates, one
// per document. A later update of a document already in the group waits for
// the next one, so a document's updates keep their order.
func onePerDocument(n int) func([]*updateCall) ([]*updateCall, []*updateCall) {
	return func(queue []*updateCall) (group, rest []*updateCall) {
		in := make(map[any]bool, min(len(queue), n))
		for _, call := range queue {
			if len(group) == n || in[call.id] {
				rest = append(rest, call)
				continue
			}
			in[call.id] = true
			group = append(group, call)
		}
		return group, rest
	}
}

func (u *Updater) filter(call *updateCall) bson.D {
	return bson.D{{Key: "_id", Value: call.id}, {Key: u.revision, Value: call.was}}
}

func (u *Updater) send(group []*updateCall) {
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	if len(group) == 1 {
		call := group[0]
		res, err := u.c.UpdateOne(ctx, u.filter(call), bson.D{{Key: "$set", Value: call.set}})
		call.done <- updateResult{matched: err == nil && res.MatchedCount == 1, err: err}
		return
	}
	models := make([]mongo.WriteModel, len(group))
	for i, call := range group {
		call.tok = bson.NewObjectID()
		set := append(call.set[:len(call.set):len(call.set)], bson.E{Key: FieldWriteID, Value: call.tok})
		models[i] = mongo.NewUpdateOneModel().SetFilter(u.filter(call)).SetUpdate(bson.D{{Key: "$set", Value: set}})
	}
	res, err := u.c.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
	var bwe mongo.BulkWriteException
	switch {
	case err == nil && res.MatchedCount == int64(len(group)):
		for _, call := range group {
			call.done <- updateResult{matched: true}
		}
		return
	case err == nil && res.MatchedCount == 0:
		for _, call := range group {
			call.done <- updateResult{}
		}
		return
	case errors.As(err, &bwe) && len(bwe.WriteErrors) > 0:
		// Some updates were refused, each with its own error; the others
		// may have been made.
		refused := refusedWrites(bwe)
		var unsure []*updateCall
		for i, call := range group {
			if err, ok := refused[i]; ok {
				call.done <- updateResult{err: err}
				continue
			}
			unsure = append(unsure, call)
		}
		if err := concernError(bwe); err != nil {
			for _, call := range unsure {
				call.done <- updateResult{err: err}
			}
			return
		}
		group = unsure
	case err != nil:
		for _, call := range group {
			call.done <- updateResult{err: err}
		}
		return
	}
	u.readBack(ctx, group)
}

// readBack tells each update of group whether it was made, from its token
// in the document. Each document is read by _id, which every store finds
// through its index, and the reads go at once.
func (u *Updater) readBack(ctx context.Context, group []*updateCall) {
	projection := options.FindOne().SetProjection(bson.D{{Key: u.revision, Value: 1}, {Key: FieldWriteID, Value: 1}})
	var wg sync.WaitGroup
	for _, call := range group {
		wg.Go(func() { call.done <- u.outcome(ctx, call, projection) })
	}
	wg.Wait()
}

func (u *Updater) outcome(ctx context.Context, call *updateCall, projection *options.FindOneOptionsBuilder) updateResult {
	var doc bson.Raw
	err := u.c.FindOne(ctx, bson.D{{Key: "_id", Value: call.id}}, projection).Decode(&doc)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return updateResult{}
	case err != nil:
		return updateResult{err: fmt.Errorf("%w: reading it back: %w", ErrOutcomeUnknown, err)}
	}
	tok, _ := doc.Lookup(FieldWriteID).ObjectIDOK()
	rev, _ := doc.Lookup(u.revision).AsInt64OK()
	switch {
	case tok == call.tok:
		return updateResult{matched: true}
	case rev <= call.rev:
		// Revisions only grow: at or below this update's, with another
		// token, the document was never at this update.
		return updateResult{}
	}
	// Past this update, with another token: the document was there
	// already (a stale copy), or got there after this update. The caller
	// reads it again.
	return updateResult{err: fmt.Errorf("%w: %v moved on to %s %d", ErrOutcomeUnknown, call.id, u.revision, rev)}
}
