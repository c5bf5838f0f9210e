package outbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

// mark is a relay's promise, stored in MarksCollection: every write it was
// told of that began before Upto has its entries in JetStream. Beat is when
// the relay last stored it.
type mark struct {
	Name string    `bson:"_id"`
	Upto time.Time `bson:"upto"`
	Beat time.Time `bson:"beat"`
}

const (
	// markEvery is how often, at most, a relay stores its mark: one small
	// write a second however many orders go through.
	markEvery = time.Second
	// beatEvery is how often, at least, it stores it while nothing moves,
	// so other relays can tell it is alive.
	beatEvery = 10 * time.Second
)

// register reads the mark the last run under this name left, holds the new
// mark at it until the scans from there are done (one at once, one after
// the grace, see registerOnce), and stores the new mark. It retries until
// the store answers or ctx ends.
func (r *Relay) register(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		err := r.registerOnce(ctx)
		if err == nil {
			return nil
		}
		r.log.Warn("outbox relay: cannot store its mark yet; will retry", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (r *Relay) registerOnce(ctx context.Context) error {
	var prev mark
	err := r.marks.FindOne(ctx, bson.D{{Key: "_id", Value: r.name}}).Decode(&prev)
	switch {
	case isNoDocuments(err):
	case err != nil:
		return fmt.Errorf("outbox: read mark %s: %w", r.name, err)
	default:
		// Scanned at once, so the work the last run left resumes now, and
		// again once its writes cannot be on their way any more: one sent
		// just before a crash may land in the store after the first scan
		// (a slow primary finishes what a dead client sent), with a stamp
		// from before the mark this run will store.
		r.mu.Lock()
		r.lowerFloorLocked(prev.Upto.UTC())
		r.rescanAt = time.Now().Add(r.grace)
		r.mu.Unlock()
	}
	return r.storeMark(ctx, true)
}

// storeMark stores the mark when it moved (at most every markEvery), when
// beatEvery has passed, or when force is true.
func (r *Relay) storeMark(ctx context.Context, force bool) error {
	now := time.Now().UTC().Truncate(time.Millisecond)
	r.mu.Lock()
	saved := r.saved
	r.mu.Unlock()
	since := now.Sub(saved.Beat)
	if !force && since < markEvery {
		return nil // the relay loop asks after every write: most go no further
	}
	u := r.upto()
	if !force && u.Equal(saved.Upto) && since < beatEvery {
		return nil
	}
	m := mark{Name: r.name, Upto: u, Beat: now}
	_, err := r.marks.UpdateOne(ctx, bson.D{{Key: "_id", Value: r.name}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "upto", Value: m.Upto}, {Key: "beat", Value: m.Beat}}}},
		options.UpdateOne().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("outbox: store mark %s: %w", r.name, err)
	}
	r.mu.Lock()
	r.saved = m
	r.mu.Unlock()
	return nil
}

// everyMark returns the earliest mark of every relay of the database, read
// at most once a second.
func (r *Relay) everyMark(ctx context.Context) (time.Time, bool) {
	r.mu.Lock()
	ms, readAt := r.others, r.othersT
	r.mu.Unlock()
	if time.Since(readAt) > markEvery {
		var err error
		if ms, err = r.readMarks(ctx); err != nil {
			return time.Time{}, false
		}
		r.mu.Lock()
		r.others, r.othersT = ms, time.Now()
		r.mu.Unlock()
	}
	if len(ms) == 0 {
		return time.Time{}, false
	}
	floor := ms[0].Upto
	for _, m := range ms[1:] {
		if m.Upto.Before(floor) {
			floor = m.Upto
		}
	}
	return floor, true
}

func (r *Relay) readMarks(ctx context.Context) ([]mark, error) {
	cur, err := r.marks.Find(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("outbox: read marks: %w", err)
	}
	var ms []mark
	if err := cur.All(ctx, &ms); err != nil {
		return nil, fmt.Errorf("outbox: read marks: %w", err)
	}
	return ms, nil
}

// scanFloor publishes what the documents written since the floor hold: what
// the last run under this name left unpublished (scanned twice, see
// registerOnce), or what the relay forgot while JetStream was away, or
// while the store did not answer. In the last case it waits until no write
// it forgot can still be on its way (the relay loop asks again then).
func (r *Relay) scanFloor(ctx context.Context) error {
	r.mu.Lock()
	from, n, at := r.floor, r.floorN, r.floorAt
	r.mu.Unlock()
	if from.IsZero() || time.Now().Before(at) {
		return nil
	}
	if _, err := r.scanFrom(ctx, from); err != nil {
		return err
	}
	r.mu.Lock()
	switch {
	case !r.rescanAt.IsZero():
		// The first scan from the last run's mark: the floor stays there
		// for the second, once that run's writes cannot be on their way.
		r.floorAt = later(r.floorAt, r.rescanAt)
		r.rescanAt = time.Time{}
	case r.floorN == n:
		r.floor, r.floorAt = time.Time{}, time.Time{}
	}
	r.mu.Unlock()
	return nil
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// takeOverStale publishes, for every other relay's mark that stood still
// for staleAfter, what the documents written since it hold, then deletes
// the mark (unless its relay stored it again meanwhile).
func (r *Relay) takeOverStale(ctx context.Context) error {
	ms, err := r.readMarks(ctx)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.Name == r.name || time.Since(m.Beat) < r.staleAfter {
			continue
		}
		r.log.Info("outbox relay: taking over a stale mark", "mark", m.Name, "upto", m.Upto, "beat", m.Beat)
		if _, err := r.scanFrom(ctx, m.Upto); err != nil {
			return err
		}
		if _, err := r.marks.DeleteOne(ctx, bson.D{{Key: "_id", Value: m.Name}, {Key: "beat", Value: m.Beat}}); err != nil {
			return fmt.Errorf("outbox: delete stale mark %s: %w", m.Name, err)
		}
	}
	return nil
}

// scanned is the part of a document a scan reads.
type scanned struct {
	ID     any     `bson:"_id"`
	Outbox []Entry `bson:"outbox"`
}

// scanFrom publishes every entry, not known to be acknowledged, of the
// documents whose outbox_at is at or after from. It returns how many
// entries JetStream did not have yet. On MongoDB it is a range query on
// the outbox_at index; the embedded store reads every document.
func (r *Relay) scanFrom(ctx context.Context, from time.Time) (int, error) {
	n := 0
	for _, c := range r.colls {
		cur, err := c.Find(ctx, bson.D{{Key: FieldAt, Value: bson.D{{Key: "$gte", Value: from}}}},
			options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: FieldEntries, Value: 1}}))
		if err != nil {
			return n, fmt.Errorf("outbox: scan %s from %s: %w", c.Name(), from.Format(time.RFC3339Nano), err)
		}
		for cur.Next(ctx) {
			var d scanned
			if err := cur.Decode(&d); err != nil {
				_ = cur.Close(ctx)
				return n, fmt.Errorf("outbox: scan %s: %w", c.Name(), err)
			}
			for _, e := range d.Outbox {
				if r.isAcked(e.ID) {
					continue
				}
				published, err := r.republish(ctx, c, e)
				if err != nil {
					_ = cur.Close(ctx)
					return n, err
				}
				if published {
					n++
				}
			}
		}
		err = cur.Err()
		_ = cur.Close(ctx)
		if err != nil {
			return n, fmt.Errorf("outbox: scan %s: %w", c.Name(), err)
		}
	}
	return n, nil
}

func isNoDocuments(err error) bool { return errors.Is(err, mongo.ErrNoDocuments) }

// legacyPending is the field, and legacyIndex the index on it, that
// documents written before relays kept marks used for "outbox not yet
// cleared".
const (
	legacyPending = "outbox_pending"
	legacyIndex   = "outbox_pending_1"
)

// drainLegacy publishes what documents stored before relays kept marks
// still hold unpublished (flagged outbox_pending), once: a collection made
// then still has the index on that flag, and loses it when done, so later
// starts skip this. On the embedded store the query reads every document.
func (r *Relay) drainLegacy(ctx context.Context) error {
	for _, c := range r.colls {
		specs, err := c.Indexes().ListSpecifications(ctx)
		if err != nil {
			return fmt.Errorf("outbox: list indexes of %s: %w", c.Name(), err)
		}
		if !slices.ContainsFunc(specs, func(s mongo.IndexSpecification) bool { return s.Name == legacyIndex }) {
			continue
		}
		cur, err := c.Find(ctx, bson.D{{Key: legacyPending, Value: true}},
			options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: FieldEntries, Value: 1}}))
		if err != nil {
			return fmt.Errorf("outbox: find pending in %s: %w", c.Name(), err)
		}
		var docs []scanned
		if err := cur.All(ctx, &docs); err != nil {
			return fmt.Errorf("outbox: read pending in %s: %w", c.Name(), err)
		}
		n := 0
		for _, d := range docs {
			for _, e := range d.Outbox {
				published, err := r.republish(ctx, c, e)
				if err != nil {
					return err
				}
				if published {
					n++
				}
			}
		}
		if err := c.Indexes().DropOne(ctx, legacyIndex); err != nil {
			return fmt.Errorf("outbox: drop index %s of %s: %w", legacyIndex, c.Name(), err)
		}
		r.log.Info("outbox relay: published what documents from before marks held", "collection", c.Name(), "documents", len(docs), "published", n)
	}
	return nil
}

// republish publishes e, an entry a scan found in a document of c, unless
// JetStream is known to hold it already. It reports whether JetStream did
// not have it.
func (r *Relay) republish(ctx context.Context, c *mongo.Collection, e Entry) (bool, error) {
	if sc, ok := r.pub.(StoredChecker); ok {
		if stored, err := sc.Stored(ctx, e.Subject, e.ID); err == nil && stored {
			return r.acknowledged(ctx, c, e, true), nil
		}
		// On an error, publishing is the safe answer: JetStream drops a
		// repeat.
	}
	pctx := otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier(e.Trace))
	dup, err := r.pub.PublishRaw(pctx, e.Subject, e.ID, e.Type, e.Data)
	if err != nil {
		return false, fmt.Errorf("outbox: publish %s: %w", e.ID, err)
	}
	return r.acknowledged(ctx, c, e, dup), nil
}
