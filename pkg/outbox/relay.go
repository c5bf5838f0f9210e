package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.opentelemetry.io/otel"
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

	published atomic.Int64
}

// Option configures a Relay.
type Option func(*Relay)

// WithInterval sets how often the relay polls when not notified.
func WithInterval(d time.Duration) Option { return func(r *Relay) { r.interval = d } }

// NewRelay returns a relay for the outboxes of colls.
func NewRelay(pub Publisher, log *slog.Logger, colls []*mongo.Collection, opts ...Option) *Relay {
	r := &Relay{pub: pub, colls: colls, log: log, wake: make(chan struct{}, 1), interval: time.Second, batch: 100}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Notify asks the relay to look for pending entries now. It never blocks.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Published is how many entries this relay has published.
func (r *Relay) Published() int64 { return r.published.Load() }

// Run publishes pending entries until ctx ends, then makes one last short
// attempt so that changes stored by the final requests go out before a
// redeploy. Failures are logged and retried with backoff.
func (r *Relay) Run(ctx context.Context) error {
	backoff := r.interval
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if _, err := r.Flush(fctx); err != nil {
				r.log.Warn("outbox relay: final flush incomplete; the next start sends the rest", "err", err)
			}
			return nil
		case <-r.wake:
		case <-t.C:
		}
		_, err := r.Flush(ctx)
		switch {
		case err == nil:
			backoff = r.interval
		case ctx.Err() != nil:
			return nil
		default:
			r.log.Warn("outbox relay: will retry", "err", err, "in", backoff)
			backoff = min(2*backoff, 30*time.Second)
		}
		t.Reset(backoff)
	}
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
			if _, err := r.pub.PublishRaw(pctx, e.Subject, e.ID, e.Type, e.Data); err != nil {
				return n, fmt.Errorf("outbox: publish %s: %w", e.ID, err)
			}
			sent[e.ID] = true
			n++
			r.published.Add(1)
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
