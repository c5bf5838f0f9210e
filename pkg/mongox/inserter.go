package mongox

import (
	"context"
	"errors"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Inserter sends the inserts its callers make at the same time into one
// collection as one insert command, the way a database commits a group of
// transactions at once: while one command is on its way, the inserts that
// arrive wait and go together in the next, up to max documents. A lone
// insert goes at once, as it would with InsertOne; a busy shop pays one
// round trip for many documents. Each caller gets its own document's
// outcome: nil, a duplicate key error (IsDuplicate), or the command's
// error.
type Inserter struct {
	c *mongo.Collection
	q groupQueue[*insertCall]
}

type insertCall struct {
	doc any
	err chan error
}

// InsertGroup is the group size the stores use: past a few dozen
// documents a command saves little more per document.
const InsertGroup = 64

// NewInserter returns an Inserter into c that groups up to group documents
// per command.
func NewInserter(c *mongo.Collection, group int) *Inserter {
	in := &Inserter{c: c}
	in.q = groupQueue[*insertCall]{take: firstN[*insertCall](max(1, group)), send: in.send}
	return in
}

// Collection is the collection the inserter writes to.
func (in *Inserter) Collection() *mongo.Collection { return in.c }

// InsertOne inserts doc, with the documents other callers insert at the
// same time. When ctx ends first it returns ctx's error: an insert still
// waiting for its group is then never sent, and one already sent may still
// be made, within the command's timeout (10 s).
func (in *Inserter) InsertOne(ctx context.Context, doc any) error {
	call := &insertCall{doc: doc, err: make(chan error, 1)}
	in.q.add(call)
	select {
	case err := <-call.err:
		return err
	case <-ctx.Done():
		in.q.remove(call)
		return ctx.Err()
	}
}

func (in *Inserter) send(group []*insertCall) {
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	if len(group) == 1 {
		_, err := in.c.InsertOne(ctx, group[0].doc)
		group[0].err <- err
		return
	}
	docs := make([]any, len(group))
	for i, call := range group {
		docs[i] = call.doc
	}
	_, err := in.c.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) && len(bwe.WriteErrors) > 0 {
		// Some documents were refused, each with its own error; the others
		// were stored.
		refused, stored := refusedWrites(bwe), concernError(bwe)
		for i, call := range group {
			if err, ok := refused[i]; ok {
				call.err <- err
				continue
			}
			call.err <- stored
		}
		return
	}
	for _, call := range group {
		call.err <- err
	}
}
