package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
)

// Publisher sends one encoded event and returns once it is stored.
type Publisher interface {
	PublishRaw(ctx context.Context, subject, eventID, eventType string, data []byte) (duplicate bool, err error)
}

// AsyncPublisher is a Publisher that can also send without waiting: wait
// returns once JetStream has stored the event. The relay uses it when the
// publisher has it, so many events are on the wire at once instead of one
// round trip each.
type AsyncPublisher interface {
	Publisher
	PublishRawAsync(ctx context.Context, subject, eventID, eventType string, data []byte) (wait func(context.Context) (duplicate bool, err error), err error)
}

// Relay publishes the outbox entries of the documents in its collections.
//
// Writers hand it the entries of each write (Written): it publishes them
// from memory, many at once, and clears the outboxes of the documents
// whose entries JetStream acknowledged a little later, many in one bulk
// write, after the document has settled; a document written again
// meanwhile needs only one clear. So an event costs no store read and, in a
// busy shop, a fraction of a store write.
//
// Scans of the collections for pending entries, which on the embedded store
// read every document, run only at start (what a crash left behind), at
// shutdown and every interval (default 5 minutes: what another replica that
// crashed and never came back left behind).
type Relay struct {
	pub      Publisher
	colls    []*mongo.Collection
	log      *slog.Logger
	wake     chan struct{}
	interval time.Duration
	settle   time.Duration
	batch    int32

	mu     sync.Mutex
	queue  []job            // written and not yet published
	clears map[docKey]clear // published, to clear once settled
	scan   bool
	acked  ackedSet

	published atomic.Int64
	lag       metric.Float64Histogram
}

// job is one write a writer told the relay about: the document, its
// revision after the write, and every entry its outbox holds at that
// revision.
type job struct {
	c       *mongo.Collection
	id      any
	rev     int64
	entries []Entry
}

type docKey struct {
	c  *mongo.Collection
	id any
}

type clear struct {
	rev int64
	due time.Time
}

// Option configures a Relay.
type Option func(*Relay)

// WithInterval sets how often the relay scans its collections for
// entries nobody told it about: those of another replica that crashed and
// never came back (a crash of this process is covered by the scan at the
// next start). Scans read every document on the embedded store.
func WithInterval(d time.Duration) Option {
	return func(r *Relay) {
		if d > 0 {
			r.interval = d
		}
	}
}

// WithSettle sets how long the relay waits after publishing a document's
// entries before clearing its outbox, so that a document written again
// soon after (an order accepted right after it was placed) is cleared once.
func WithSettle(d time.Duration) Option { return func(r *Relay) { r.settle = d } }

// maxClearBatch bounds the statements of one bulk clear: FerretDB holds a
// connection per statement until the command ends.
const maxClearBatch = 32

// NewRelay returns a relay for the outboxes of colls.
func NewRelay(pub Publisher, log *slog.Logger, colls []*mongo.Collection, opts ...Option) *Relay {
	r := &Relay{pub: pub, colls: colls, log: log, wake: make(chan struct{}, 1), interval: 5 * time.Minute,
		settle: time.Second, batch: 100, clears: map[docKey]clear{}, acked: newAckedSet(1 << 16)}
	for _, o := range opts {
		o(r)
	}
	// A no-op histogram is returned alongside any error, so it is safe to use.
	r.lag, _ = otel.Meter("github.com/pizzashop/pizzashop/pkg/outbox").Float64Histogram("pizzashop.outbox.lag",
		metric.WithUnit("s"), metric.WithDescription("Time from a change being stored to its event being acknowledged by JetStream"))
	return r
}

// maxQueue bounds the writes held in memory while JetStream is away; past
// it the relay forgets them and scans the store once JetStream is back.
const maxQueue = 100_000

// Written tells the relay that document id of c is now at revision rev and
// its outbox holds entries. It never blocks; the relay publishes them at
// once.
func (r *Relay) Written(c *mongo.Collection, id any, rev int64, entries []Entry) {
	if len(entries) == 0 {
		return
	}
	r.mu.Lock()
	if len(r.queue) < maxQueue {
		r.queue = append(r.queue, job{c, id, rev, entries})
	} else {
		r.scan = true
	}
	r.mu.Unlock()
	r.poke()
}

// Notify asks the relay to scan every collection for pending entries now.
// It never blocks.
func (r *Relay) Notify() {
	r.mu.Lock()
	r.scan = true
	r.mu.Unlock()
	r.poke()
}

func (r *Relay) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Published is how many entries this relay has published that JetStream
// did not already have.
func (r *Relay) Published() int64 { return r.published.Load() }

// Run publishes pending entries until ctx ends, then makes one last short
// attempt so that changes stored by the final requests go out before a
// redeploy. Failures are logged and retried with backoff. Scans run beside
// the fast path, so a slow scan of a large collection never holds it up.
func (r *Relay) Run(ctx context.Context) error {
	scans := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Go(func() { r.scanLoop(ctx, scans) })
	r.Notify() // a first scan picks up what an earlier run left behind
	backoff := 100 * time.Millisecond
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	tick := time.NewTicker(min(r.settle, 100*time.Millisecond) + time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			err := r.publishQueued(fctx)
			if err == nil {
				err = r.clearSettled(fctx, true)
			}
			if err == nil {
				_, err = r.Flush(fctx)
			}
			if err != nil {
				r.log.Warn("outbox relay: final flush incomplete; the next start sends the rest", "err", err)
			}
			return nil
		case <-r.wake:
		case <-retry.C:
		case <-tick.C:
		}
		r.mu.Lock()
		if r.scan {
			r.scan = false
			select {
			case scans <- struct{}{}:
			default: // one is queued already
			}
		}
		r.mu.Unlock()
		err := r.publishQueued(ctx)
		if err == nil {
			err = r.clearSettled(ctx, false)
		}
		switch {
		case err == nil:
			backoff = 100 * time.Millisecond
		case ctx.Err() != nil:
			// Shutting down: the final pass above has the last word.
		default:
			r.log.Warn("outbox relay: will retry", "err", err, "in", backoff)
			retry.Reset(backoff)
			backoff = min(2*backoff, 30*time.Second)
		}
	}
}

// scanLoop scans every collection when asked and every interval.
func (r *Relay) scanLoop(ctx context.Context, asked <-chan struct{}) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	const firstBackoff = 100 * time.Millisecond
	backoff := firstBackoff
	for {
		select {
		case <-ctx.Done():
			return
		case <-asked:
		case <-t.C:
		}
		for {
			_, err := r.Flush(ctx)
			if err == nil || ctx.Err() != nil {
				break
			}
			r.log.Warn("outbox relay: scan failed; will retry", "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
		}
		backoff = firstBackoff
	}
}

// ackTimeout bounds the wait for JetStream's answers to one round of
// publishes; what is not answered by then is sent again.
const ackTimeout = 5 * time.Second

// sent is one publish under way.
type sent struct {
	job   *job
	entry Entry
	wait  func(context.Context) (bool, error)
}

// publishQueued publishes the entries of every queued write that JetStream
// has not acknowledged yet, all at once, then waits for the answers. A
// write whose entries all went out is scheduled for its clear; the rest
// go back in the queue for the retry.
func (r *Relay) publishQueued(ctx context.Context) error {
	r.mu.Lock()
	jobs := r.queue
	r.queue = nil
	r.mu.Unlock()
	if len(jobs) == 0 {
		return nil
	}
	async, _ := r.pub.(AsyncPublisher)
	var inFlight []sent
	var firstErr error
	failed := map[*job]bool{}
	for i := range jobs {
		j := &jobs[i]
		for _, e := range j.entries {
			if r.acked.has(e.ID) {
				continue
			}
			pctx := otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier(e.Trace))
			if async == nil {
				dup, err := r.pub.PublishRaw(pctx, e.Subject, e.ID, e.Type, e.Data)
				r.settled(ctx, j, e, dup, err, failed, &firstErr)
				continue
			}
			wait, err := async.PublishRawAsync(pctx, e.Subject, e.ID, e.Type, e.Data)
			if err != nil {
				r.settled(ctx, j, e, false, err, failed, &firstErr)
				continue
			}
			inFlight = append(inFlight, sent{j, e, wait})
		}
	}
	wctx, cancel := context.WithTimeout(ctx, ackTimeout)
	defer cancel()
	for _, s := range inFlight {
		dup, err := s.wait(wctx)
		r.settled(ctx, s.job, s.entry, dup, err, failed, &firstErr)
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	var retry []job
	for i := range jobs {
		j := &jobs[i]
		if failed[j] {
			retry = append(retry, *j)
			continue
		}
		k := docKey{j.c, j.id}
		if c, ok := r.clears[k]; !ok || c.rev < j.rev {
			r.clears[k] = clear{rev: j.rev, due: now.Add(r.settle)}
		}
	}
	r.queue = append(retry, r.queue...)
	return firstErr
}

// settled records the answer to one publish.
func (r *Relay) settled(ctx context.Context, j *job, e Entry, dup bool, err error, failed map[*job]bool, firstErr *error) {
	if err != nil {
		failed[j] = true
		if *firstErr == nil {
			*firstErr = fmt.Errorf("outbox: publish %s: %w", e.ID, err)
		}
		return
	}
	r.acked.add(e.ID)
	if dup {
		return // a scan and the fast path, or two replicas, sent it twice
	}
	r.published.Add(1)
	r.lag.Record(ctx, time.Since(e.CreateTime).Seconds(), metric.WithAttributes(attribute.String("collection", j.c.Name())))
}

// clearSettled clears the outboxes of the documents published at least
// settle ago (all of them when all is true), in bulk writes guarded by the
// revision whose entries were published: a document written again since
// keeps its outbox, and the relay told of that write clears it later.
func (r *Relay) clearSettled(ctx context.Context, all bool) error {
	type item struct {
		k docKey
		c clear
	}
	now := time.Now()
	byColl := map[*mongo.Collection][]item{}
	r.mu.Lock()
	for k, c := range r.clears {
		if all || !c.due.After(now) {
			byColl[k.c] = append(byColl[k.c], item{k, c})
			delete(r.clears, k)
		}
	}
	r.mu.Unlock()
	var firstErr error
	for coll, items := range byColl {
		for len(items) > 0 && firstErr == nil {
			n := min(len(items), maxClearBatch)
			models := make([]mongo.WriteModel, n)
			for i, it := range items[:n] {
				models[i] = mongo.NewUpdateOneModel().
					SetFilter(bson.D{{Key: "_id", Value: it.k.id}, {Key: FieldRevision, Value: it.c.rev}}).
					SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: FieldEntries, Value: bson.A{}}, {Key: FieldPending, Value: false}}}})
			}
			if _, err := coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false)); err != nil {
				firstErr = fmt.Errorf("outbox: clear %d documents in %s: %w", n, coll.Name(), err)
				break
			}
			items = items[n:]
		}
		// Put back what is left; a clear done twice is harmless.
		r.mu.Lock()
		for _, it := range items {
			if c, ok := r.clears[it.k]; !ok || c.rev < it.c.rev {
				r.clears[it.k] = it.c
			}
		}
		r.mu.Unlock()
	}
	return firstErr
}

// ackedSet remembers the ids of the most recent entries JetStream
// acknowledged, so that entries a writer finds still in a document's
// outbox (published, not yet cleared) are not sent again.
type ackedSet struct {
	ids  map[string]struct{}
	ring []string
	next int
}

func newAckedSet(n int) ackedSet {
	return ackedSet{ids: make(map[string]struct{}, n), ring: make([]string, n)}
}

// has and add are called from the Run goroutine only.
func (a *ackedSet) has(id string) bool {
	_, ok := a.ids[id]
	return ok
}

func (a *ackedSet) add(id string) {
	if a.has(id) {
		return
	}
	if old := a.ring[a.next]; old != "" {
		delete(a.ids, old)
	}
	a.ring[a.next] = id
	a.ids[id] = struct{}{}
	a.next = (a.next + 1) % len(a.ring)
}

type pendingDoc struct {
	ID       any     `bson:"_id"`
	Revision int64   `bson:"revision"`
	Outbox   []Entry `bson:"outbox"`
}

// Flush publishes every pending entry once and clears the published ones.
// It returns how many entries it published.
func (r *Relay) Flush(ctx context.Context) (int, error) {
	total := 0
	for _, c := range r.colls {
		for {
			n, more, err := r.flushBatch(ctx, c)
			total += n
			if err != nil {
				return total, err
			}
			if !more {
				break
			}
		}
	}
	return total, nil
}

func (r *Relay) flushBatch(ctx context.Context, c *mongo.Collection) (n int, more bool, err error) {
	cur, err := c.Find(ctx, bson.D{{Key: FieldPending, Value: true}},
		options.Find().SetLimit(int64(r.batch)).SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: FieldRevision, Value: 1}, {Key: FieldEntries, Value: 1}}))
	if err != nil {
		return 0, false, fmt.Errorf("outbox: find pending in %s: %w", c.Name(), err)
	}
	var docs []pendingDoc
	if err := cur.All(ctx, &docs); err != nil {
		return 0, false, fmt.Errorf("outbox: read pending in %s: %w", c.Name(), err)
	}
	for _, d := range docs {
		k, err := r.flushDoc(ctx, c, d)
		n += k
		if err != nil {
			return n, false, err
		}
	}
	return n, len(docs) == int(r.batch), nil
}

// flushDoc publishes a document's entries in order, then clears them if the
// document did not change meanwhile; if it did, it starts over with the new
// version, skipping entries it already sent.
func (r *Relay) flushDoc(ctx context.Context, c *mongo.Collection, d pendingDoc) (int, error) {
	sent := map[string]bool{}
	n := 0
	for attempt := 0; ; attempt++ {
		for _, e := range d.Outbox {
			if sent[e.ID] {
				continue
			}
			pctx := otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier(e.Trace))
			dup, err := r.pub.PublishRaw(pctx, e.Subject, e.ID, e.Type, e.Data)
			if err != nil {
				return n, fmt.Errorf("outbox: publish %s: %w", e.ID, err)
			}
			sent[e.ID] = true
			if dup {
				continue // a scan and the fast path, or two replicas, sent it twice
			}
			n++
			r.published.Add(1)
			r.lag.Record(ctx, time.Since(e.CreateTime).Seconds(), metric.WithAttributes(attribute.String("collection", c.Name())))
		}
		res, err := c.UpdateOne(ctx,
			bson.D{{Key: "_id", Value: d.ID}, {Key: FieldRevision, Value: d.Revision}},
			bson.D{{Key: "$set", Value: bson.D{{Key: FieldEntries, Value: bson.A{}}, {Key: FieldPending, Value: false}}}})
		if err != nil {
			return n, fmt.Errorf("outbox: clear %v: %w", d.ID, err)
		}
		if res.MatchedCount == 1 {
			return n, nil
		}
		// Changed since we read it: read it again.
		var fresh pendingDoc
		err = c.FindOne(ctx, bson.D{{Key: "_id", Value: d.ID}}).Decode(&fresh)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("outbox: reread %v: %w", d.ID, err)
		}
		d = fresh
		if attempt > 100 {
			return n, fmt.Errorf("outbox: document %v keeps changing", d.ID)
		}
	}
}
