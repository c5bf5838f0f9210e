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

// Relay publishes the outbox entries of the documents in its collections.
// Notify wakes it right after a write; it also polls, to pick up what a
// crashed process or another replica left behind.
type Relay struct {
	pub      Publisher
	colls    []*mongo.Collection
	log      *slog.Logger
	wake     chan struct{}
	interval time.Duration
	batch    int32

	// written holds the documents writers named since the last pass: the
	// fast path, which reads them by _id instead of scanning.
	mu      sync.Mutex
	written []docRef
	scan    bool

	published atomic.Int64
	lag       metric.Float64Histogram
}

type docRef struct {
	c  *mongo.Collection
	id any
}

// Option configures a Relay.
type Option func(*Relay)

// WithInterval sets how often the relay scans its collections for
// entries nobody told it about: those of a process that crashed after its
// write, or of another replica. Scans are costly on the embedded store.
func WithInterval(d time.Duration) Option { return func(r *Relay) { r.interval = d } }

// NewRelay returns a relay for the outboxes of colls.
func NewRelay(pub Publisher, log *slog.Logger, colls []*mongo.Collection, opts ...Option) *Relay {
	r := &Relay{pub: pub, colls: colls, log: log, wake: make(chan struct{}, 1), interval: 10 * time.Second, batch: 100}
	for _, o := range opts {
		o(r)
	}
	// A no-op histogram is returned alongside any error, so it is safe to use.
	r.lag, _ = otel.Meter("github.com/pizzashop/pizzashop/pkg/outbox").Float64Histogram("pizzashop.outbox.lag",
		metric.WithUnit("s"), metric.WithDescription("Time from a change being stored to its event being acknowledged by JetStream"))
	return r
}

// Written tells the relay that document id of c has new entries. It never
// blocks; the relay publishes them at once.
func (r *Relay) Written(c *mongo.Collection, id any) {
	r.mu.Lock()
	r.written = append(r.written, docRef{c, id})
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
// redeploy. Failures are logged and retried with backoff. The documents
// writers name are published at once; scans for anything else run beside
// them, so a slow scan of a large collection never holds up the fast path.
func (r *Relay) Run(ctx context.Context) error {
	scans := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Go(func() { r.scanLoop(ctx, scans) })
	r.Notify() // a first scan picks up what an earlier run left behind
	backoff := 100 * time.Millisecond
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			r.mu.Lock()
			r.scan = true
			r.mu.Unlock()
			if _, err := r.pass(fctx); err != nil {
				r.log.Warn("outbox relay: final flush incomplete; the next start sends the rest", "err", err)
			}
			return nil
		case <-r.wake:
		case <-retry.C:
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
		_, err := r.pass(ctx)
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

// pass publishes what writers named since the last pass and, when a scan
// is due (only at shutdown, from Run), everything pending. On failure the
// work is kept for the retry.
func (r *Relay) pass(ctx context.Context) (int, error) {
	r.mu.Lock()
	refs, scan := r.written, r.scan
	r.written, r.scan = nil, false
	r.mu.Unlock()
	n := 0
	for i, ref := range refs {
		k, err := r.flushID(ctx, ref)
		n += k
		if err != nil {
			r.mu.Lock()
			r.written = append(refs[i:], r.written...)
			r.scan = r.scan || scan
			r.mu.Unlock()
			return n, err
		}
	}
	if !scan {
		return n, nil
	}
	k, err := r.Flush(ctx)
	if err != nil {
		r.mu.Lock()
		r.scan = true
		r.mu.Unlock()
	}
	return n + k, err
}

// flushID publishes the pending entries of one document, read by _id.
func (r *Relay) flushID(ctx context.Context, ref docRef) (int, error) {
	var d pendingDoc
	err := ref.c.FindOne(ctx, bson.D{{Key: "_id", Value: ref.id}},
		options.FindOne().SetProjection(bson.D{{Key: FieldRevision, Value: 1}, {Key: FieldEntries, Value: 1}})).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("outbox: read %v in %s: %w", ref.id, ref.c.Name(), err)
	}
	if len(d.Outbox) == 0 {
		return 0, nil // an earlier pass or another relay sent them
	}
	return r.flushDoc(ctx, ref.c, d)
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
