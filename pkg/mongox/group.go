package mongox

import (
	"slices"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
)

// groupTimeout bounds one grouped insert or update command when the client
// sets no timeout of its own.
const groupTimeout = 10 * time.Second

// groupQueue is the group commit under Inserter and Updater: calls queue up
// while a command is on its way, and one goroutine, started by the first
// call and gone once the queue is empty, sends them a group at a time. A
// lone call goes at once.
type groupQueue[C comparable] struct {
	// take splits the queue into the next group and what waits for a
	// later one, keeping the order of both.
	take func(queue []C) (group, rest []C)
	// send makes one group's command and answers each of its calls.
	send func(group []C)

	mu      sync.Mutex
	queue   []C
	running bool
}

// add queues c and makes sure a sender is running.
func (q *groupQueue[C]) add(c C) {
	q.mu.Lock()
	q.queue = append(q.queue, c)
	if !q.running {
		q.running = true
		go q.run()
	}
	q.mu.Unlock()
}

// remove takes c out of the queue if it is still waiting there, so it is
// never sent.
func (q *groupQueue[C]) remove(c C) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := slices.Index(q.queue, c); i >= 0 {
		q.queue = slices.Delete(q.queue, i, i+1)
	}
}

func (q *groupQueue[C]) run() {
	for {
		q.mu.Lock()
		if len(q.queue) == 0 {
			q.running = false
			q.queue = nil
			q.mu.Unlock()
			return
		}
		group, rest := q.take(q.queue)
		q.queue = rest
		q.mu.Unlock()
		q.send(group)
	}
}

// firstN is a take that groups the first n calls.
func firstN[C any](n int) func([]C) ([]C, []C) {
	return func(queue []C) ([]C, []C) {
		k := min(len(queue), n)
		return slices.Clone(queue[:k]), queue[k:]
	}
}

// refusedWrites gives each write a bulk write refused the error the driver
// reports for a single write refused the same way, by the write's index.
func refusedWrites(bwe mongo.BulkWriteException) map[int]error {
	refused := make(map[int]error, len(bwe.WriteErrors))
	for _, we := range bwe.WriteErrors {
		i := we.Index
		we.Index = 0
		refused[i] = mongo.WriteException{WriteErrors: mongo.WriteErrors{we.WriteError}, Labels: bwe.Labels}
	}
	return refused
}

// concernError is the error of a bulk write's writes that were made but
// not acknowledged by its write concern, or nil. It must not read as any
// write's own error (a duplicate key, say).
func concernError(bwe mongo.BulkWriteException) error {
	if bwe.WriteConcernError == nil {
		return nil
	}
	return mongo.WriteException{WriteConcernError: bwe.WriteConcernError, Labels: bwe.Labels}
}
