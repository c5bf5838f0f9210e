package mongox

import (
	"context"
	"errors"
	"sync"
	"time"

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
	c   *mongo.Collection
	max int

	mu      sync.Mutex
	queue   []*insertCall
	running bool
}

type insertCall struct {
	doc any
	err chan error
}

// InsertGroup is the group size the stores use: past a few dozen
// documents a command saves little more per document.
const InsertGroup = 64

// groupTimeout bounds one grouped insert or update command when the client sets no
// timeout of its own.
const groupTimeout = 10 * time.Second

// NewInserter returns an Inserter into c that groups up to group documents
// per command.
func NewInserter(c *mongo.Collection, group int) *Inserter {
	return &Inserter{c: c, max: max(1, group)}
}

// Collection is the collection the inserter writes to.
func (in *Inserter) Collection() *mongo.Collection { return in.c }

// InsertOne inserts doc, with the documents other callers insert at the
// same time. When ctx ends first it returns ctx's error, and the insert may
// still be made.
func (in *Inserter) InsertOne(ctx context.Context, doc any) error {
	call := &insertCall{doc: doc, err: make(chan error, 1)}
	in.mu.Lock()
	in.queue = append(in.queue, call)
	if !in.running {
		in.running = true
		go in.run()
	}
	in.mu.Unlock()
	select {
	case err := <-call.err:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run sends what is queued, a group at a time, until the queue is empty.
func (in *Inserter) run() {
	for {
		in.mu.Lock()
		n := min(len(in.queue), in.max)
		if n == 0 {
			in.running = false
			in.queue = nil
			in.mu.Unlock()
			return
		}
		group := append([]*insertCall(nil), in.queue[:n]...)
		in.queue = in.queue[n:]
		in.mu.Unlock()
		in.send(group)
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
		// were stored, and answer nil, or the write concern's error, which
		// must not read as any other document's duplicate key.
		refused := map[int]mongo.WriteError{}
		for _, we := range bwe.WriteErrors {
			refused[we.Index] = we.WriteError
		}
		var stored error
		if bwe.WriteConcernError != nil {
			stored = mongo.WriteException{WriteConcernError: bwe.WriteConcernError, Labels: bwe.Labels}
		}
		for i, call := range group {
			if we, ok := refused[i]; ok {
				we.Index = 0
				call.err <- mongo.WriteException{WriteErrors: mongo.WriteErrors{we}, Labels: bwe.Labels}
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
