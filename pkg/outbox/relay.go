package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

// StoredChecker is a Publisher that can tell whether JetStream holds an
// event as the last message on its subject. A relay that has one asks it
// before publishing again what a scan finds, so that plain subscribers do
// not see an event twice.
type StoredChecker interface {
	Stored(ctx context.Context, subject, eventID string) (bool, error)
}

// StreamEnsurer is a Publisher that can declare again the streams it
// declared, when NATS lost them: it came back without its storage, or
// someone deleted one. Until then every publish into them fails. A relay
// that has one does it before retrying publishes that found no stream.
type StreamEnsurer interface {
	// StreamMissing reports whether err, from a publish, says that no
	// stream holds the subject.
	StreamMissing(err error) bool
	// EnsureStreams declares again the streams NATS lost; declared says
	// whether there were any.
	EnsureStreams(ctx context.Context) (declared bool, err error)
}

// Relay publishes the outbox entries of the documents in its collections.
//
// Writers tell it of each write (it is their Tracker): it publishes the
// entries from memory, many at once, and costs the store no read and no
// write per event. Its mark, stored about once a second while writes come
// in, says how far every write it was told of is published; the relay that
// starts under the same name after a crash publishes again what the
// documents written since then hold, and so does any relay for a mark that
// stopped moving (a replica that never came back), looked for every
// interval.
//
// Its memory is bounded while the store or JetStream is away: past
// maxQueue writes waiting for JetStream, or maxUnsure documents whose
// writes have an unknown outcome, it forgets them and holds its mark
// instead for the same range scan a restart runs, once the outage is over.
type Relay struct {
	pub        Publisher
	colls      []*mongo.Collection
	log        *slog.Logger
	wake       chan struct{}
	interval   time.Duration
	staleAfter time.Duration
	name       string
	marks      *mongo.Collection
	paused     bool
	grace      time.Duration // see unknownGrace
	maxUnsure  int           // see maxUnsure

	// ready is closed once the mark is stored: no write may begin before,
	// or a crash could leave it outside every range a relay looks at.
	ready chan struct{}

	mu       sync.Mutex
	stopped  bool                // Run is ending: no write may begin
	queue    []job               // written and not yet published
	unsure   map[docKey]unsure   // documents of writes whose outcome is not known
	open     map[time.Time]int   // stamps of the writes not yet published
	last     time.Time           // latest stamp handed out or promised
	floor    time.Time           // when not zero: documents from here on need a scan
	floorN   int                 // bumped whenever floor moves
	floorAt  time.Time           // the scan from floor waits until then (see collapseLocked)
	rescanAt time.Time           // when not zero: the scan from the last run's mark is owed again then (see registerOnce)
	acked    ackedSet            // ids JetStream has acknowledged lately
	saved    mark                // the mark as last stored
	others   []mark              // every relay's mark, as last read
	othersT  time.Time           // when others was read
	gone     map[string]struct{} // stale marks being taken over

	published atomic.Int64
	lag       metric.Float64Histogram
}

// job is one write a writer told the relay about: the document, its
// revision after the write, every entry its outbox may hold unpublished,
// and the write's stamp.
type job struct {
	c       *mongo.Collection
	id      any
	rev     int64
	entries []Entry
	at      time.Time
}

// docKey names a document.
type docKey struct {
	c  *mongo.Collection
	id any
}

// Option configures a Relay.
type Option func(*Relay)

// WithInterval sets how often the relay looks for marks that stopped
// moving: those of a replica that crashed and never came back (a crash of
// this process is covered when it starts again under its name).
func WithInterval(d time.Duration) Option {
	return func(r *Relay) {
		if d > 0 {
			r.interval = d
		}
	}
}

// WithName sets the name the relay keeps its mark under. A process that
// restarts under the same name picks up at once what its last run left;
// the default is a random name, whose mark another relay takes over once
// it is stale.
func WithName(name string) Option {
	return func(r *Relay) {
		if name != "" {
			r.name = name
		}
	}
}

// WithStaleAfter sets how long a mark may stand still, while its relay
// would store it every beat, before other relays take it over.
func WithStaleAfter(d time.Duration) Option {
	return func(r *Relay) {
		if d > 0 {
			r.staleAfter = d
		}
	}
}

// WithPaused makes a relay that keeps its mark but publishes nothing: a
// fault drill for a process whose events cannot get out and which then
// dies. Its mark stays at its first write, and the next run under its name
// publishes everything since.
func WithPaused(p bool) Option { return func(r *Relay) { r.paused = p } }

// WithUnknownGrace sets how long the relay waits before it reads back the
// document of a write whose answer was lost (default 30 s).
func WithUnknownGrace(d time.Duration) Option {
	return func(r *Relay) {
		if d > 0 {
			r.grace = d
		}
	}
}

// MarksCollection is where relays keep their marks, in the database of
// their first collection.
const MarksCollection = "outbox_marks"

// NewRelay returns a relay for the outboxes of colls, which must be in one
// database.
func NewRelay(pub Publisher, log *slog.Logger, colls []*mongo.Collection, opts ...Option) *Relay {
	r := &Relay{pub: pub, colls: colls, log: log, wake: make(chan struct{}, 1), interval: 5 * time.Minute,
		staleAfter: time.Minute, name: "relay-" + NewID(), ready: make(chan struct{}), grace: unknownGrace,
		maxUnsure: maxUnsure, unsure: map[docKey]unsure{}, open: map[time.Time]int{}, acked: newAckedSet(1 << 16),
		gone: map[string]struct{}{}}
	for _, o := range opts {
		o(r)
	}
	if len(colls) > 0 {
		r.marks = colls[0].Database().Collection(MarksCollection)
	}
	// A no-op histogram is returned alongside any error, so it is safe to use.
	r.lag, _ = otel.Meter("github.com/pizzashop/pizzashop/pkg/outbox").Float64Histogram("pizzashop.outbox.lag",
		metric.WithUnit("s"), metric.WithDescription("Time from a change being stored to its event being acknowledged by JetStream"))
	return r
}

// Name is the name the relay keeps its mark under.
func (r *Relay) Name() string { return r.name }

// Begin hands out the stamp of a write about to begin and holds the mark
// back to it until the write's entries are published. It waits until the
// relay has stored its mark.
func (r *Relay) Begin(ctx context.Context) (time.Time, error) {
	select {
	case <-r.ready:
	case <-ctx.Done():
		return time.Time{}, fmt.Errorf("outbox: relay not ready: %w", ctx.Err())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return time.Time{}, errRelayStopped
	}
	at := stampNow()
	if at.Before(r.last) {
		at = r.last // the clock went back: stamps never do
	}
	r.last = at
	r.open[at]++
	return at, nil
}

// errRelayStopped refuses a write that would begin after the relay's last
// publish: nothing would publish its events, and its mark may be gone.
var errRelayStopped = errors.New("outbox: the relay has stopped; the service is shutting down")

// Done is told how a write ended. It never blocks.
func (r *Relay) Done(w Written) {
	var forgot int
	var from time.Time
	r.mu.Lock()
	switch w.Outcome {
	case NotApplied:
		r.releaseLocked(w.At)
	case Unknown:
		forgot, from = r.addUnsureLocked(docKey{w.Coll, w.ID}, unsure{first: w.At, last: w.At, now: w.At.IsZero()})
	default:
		if len(r.queue) < maxQueue {
			r.queue = append(r.queue, job{w.Coll, w.ID, w.Revision, w.Entries, w.At})
		} else {
			// Too much waits in memory (JetStream is away): forget it and
			// scan from here once JetStream is back.
			r.lowerFloorLocked(w.At)
			r.releaseLocked(w.At)
		}
	}
	r.mu.Unlock()
	if forgot > 0 {
		r.log.Warn("outbox relay: too many documents of writes of unknown outcome; will scan what was written since the earliest once the store answers",
			"documents", forgot, "from", from)
	}
	r.poke()
}

// Acked reports whether every one of entries is known to be in JetStream:
// acknowledged to this relay lately, or older than every relay's mark.
func (r *Relay) Acked(ctx context.Context, entries []Entry, at time.Time) bool {
	r.mu.Lock()
	all := true
	for _, e := range entries {
		if !r.acked.has(e.ID) {
			all = false
			break
		}
	}
	r.mu.Unlock()
	if all {
		return true
	}
	if len(entries) < keepBeforeAsking {
		// Entries of other replicas or of earlier runs: keeping a few
		// costs less than reading the marks.
		return false
	}
	floor, ok := r.everyMark(ctx)
	return ok && at.Before(floor)
}

// keepBeforeAsking is how many entries of unknown fate a document may
// carry before a write asks the marks whether they are published.
const keepBeforeAsking = 8

func (r *Relay) releaseLocked(at time.Time) {
	if at.IsZero() {
		return
	}
	if n := r.open[at]; n > 1 {
		r.open[at] = n - 1
	} else {
		delete(r.open, at)
	}
}

func (r *Relay) lowerFloorLocked(at time.Time) {
	if r.floor.IsZero() || at.Before(r.floor) {
		r.floor = at
	}
	r.floorN++
}

// upto is the relay's mark: every write it was told of that began before
// it has its entries in JetStream. Every stamp handed out later is at or
// after it.
func (r *Relay) upto() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	u := stampNow()
	if u.Before(r.last) {
		u = r.last
	}
	r.last = u
	for at := range r.open {
		if at.Before(u) {
			u = at
		}
	}
	if !r.floor.IsZero() && r.floor.Before(u) {
		u = r.floor
	}
	return u
}

// maxQueue bounds the writes held in memory while JetStream is away; past
// it the relay forgets them and scans the store once JetStream is back.
const maxQueue = 100_000

func (r *Relay) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Pending is how many writes the relay was told of whose entries are not
// yet all acknowledged. The writes of unknown outcome to one document count
// as one.
func (r *Relay) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.open {
		n += c
	}
	return n
}

// Published is how many entries this relay has published that JetStream
// did not already have.
func (r *Relay) Published() int64 { return r.published.Load() }

// Run publishes what writers hand it until ctx ends, then makes one last
// short attempt so that changes stored by the final requests go out before
// a redeploy. Failures are logged and retried with backoff. Scans run
// beside the fast path, so a slow scan of a large collection never holds
// it up.
func (r *Relay) Run(ctx context.Context) error {
	if err := r.register(ctx); err != nil {
		return nil // ctx ended before the store answered
	}
	close(r.ready)
	scans := make(chan struct{}, 1)
	var wg sync.WaitGroup
	if !r.paused {
		wg.Go(func() {
			if err := r.drainLegacy(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("outbox relay: documents from before marks not drained; the next start tries again", "err", err)
			}
			r.scanLoop(ctx, scans)
		})
	}
	scans <- struct{}{} // what the last run under this name left behind
	backoff := 100 * time.Millisecond
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	tick := time.NewTicker(markEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			r.finish(ctx)
			return nil
		case <-r.wake:
		case <-retry.C:
		case <-tick.C:
		}
		err := r.recheck(ctx)
		if err == nil {
			err = r.publishQueued(ctx)
		}
		r.mu.Lock()
		needScan := !r.floor.IsZero() && len(r.queue) == 0 && !time.Now().Before(r.floorAt)
		r.mu.Unlock()
		if needScan && err == nil {
			select {
			case scans <- struct{}{}:
			default: // one is queued already
			}
		}
		// Not cancelled by the shutdown: a store of the mark abandoned on
		// its way could land after finish deletes the mark.
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), markTimeout)
		merr := r.storeMark(mctx, false)
		cancel()
		if err == nil {
			err = merr
		}
		switch {
		case err == nil:
			backoff = 100 * time.Millisecond
		case ctx.Err() != nil:
			// Shutting down: the final pass has the last word.
		default:
			if r.ensureStreams(ctx, err) {
				backoff = 100 * time.Millisecond // the stream is back: no outage to wait out
			}
			r.log.Warn("outbox relay: will retry", "err", err, "in", backoff)
			retry.Reset(backoff)
			backoff = min(2*backoff, 30*time.Second)
		}
	}
}

// finish publishes what is still queued, then stores the mark, or deletes
// it when nothing is left to look for.
func (r *Relay) finish(ctx context.Context) {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	err := r.recheck(fctx)
	if err == nil {
		err = r.publishQueued(fctx)
	}
	if err != nil {
		r.log.Warn("outbox relay: final publish incomplete; the next start under this name sends the rest", "err", err, "name", r.name)
	}
	r.mu.Lock()
	clean := len(r.open) == 0 && r.floor.IsZero() && len(r.queue) == 0 && len(r.unsure) == 0
	r.mu.Unlock()
	if clean {
		_, err = r.marks.DeleteOne(fctx, bson.D{{Key: "_id", Value: r.name}})
	} else {
		err = r.storeMark(fctx, true)
	}
	if err != nil {
		r.log.Warn("outbox relay: final mark not stored", "err", err, "name", r.name)
	}
}

// scanLoop scans when asked and every interval looks for stale marks.
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
			err := r.scanFloor(ctx)
			if err == nil {
				err = r.takeOverStale(ctx)
			}
			if err == nil || ctx.Err() != nil {
				break
			}
			if r.ensureStreams(ctx, err) {
				backoff = firstBackoff
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

// ensureStreams declares the streams again when err says that a publish
// found none, and reports whether it declared any.
func (r *Relay) ensureStreams(ctx context.Context, err error) bool {
	se, ok := r.pub.(StreamEnsurer)
	if !ok || !se.StreamMissing(err) {
		return false
	}
	declared, eerr := se.EnsureStreams(ctx)
	if eerr != nil {
		r.log.Warn("outbox relay: no stream for the events, and declaring it again failed", "err", eerr)
	}
	return declared
}

// markTimeout bounds one store of the mark.
const markTimeout = 5 * time.Second

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
// has not acknowledged yet, many at once, then waits for the answers. A
// document has one entry on its way at a time: its next goes in the next
// wave, once JetStream has stored the one before, so a send lost on its way
// can never be overtaken by a later one. A write whose entries all went out
// no longer holds the mark back; the rest go back in the queue for the
// retry.
func (r *Relay) publishQueued(ctx context.Context) error {
	if r.paused {
		return nil
	}
	r.mu.Lock()
	jobs := r.queue
	r.queue = nil
	r.mu.Unlock()
	if len(jobs) == 0 {
		return nil
	}
	async, _ := r.pub.(AsyncPublisher)
	var firstErr error
	failed := map[*job]bool{}
	// A document whose entry failed sends nothing more this round: its
	// later entries wait for the retry, so they never overtake it.
	held := map[docKey]bool{}
	for more := true; more; {
		more = false
		var inFlight []sent
		busy := map[docKey]bool{} // documents with an entry on its way
		for i := range jobs {
			j := &jobs[i]
			k := docKey{j.c, j.id}
			for _, e := range j.entries {
				if r.isAcked(e.ID) {
					continue
				}
				if held[k] {
					failed[j] = true
					break
				}
				if busy[k] {
					more = true // after the entry on its way is stored
					break
				}
				pctx := otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier(e.Trace))
				if async == nil {
					dup, err := r.pub.PublishRaw(pctx, e.Subject, e.ID, e.Type, e.Data)
					r.settled(ctx, j, e, dup, err, failed, &firstErr)
					held[k] = err != nil
					continue
				}
				wait, err := async.PublishRawAsync(pctx, e.Subject, e.ID, e.Type, e.Data)
				if err != nil {
					r.settled(ctx, j, e, false, err, failed, &firstErr)
					held[k] = true
					continue
				}
				inFlight = append(inFlight, sent{j, e, wait})
				busy[k] = true
			}
		}
		r.awaitSent(ctx, inFlight, held, failed, &firstErr)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var retry []job
	for i := range jobs {
		j := &jobs[i]
		if failed[j] {
			retry = append(retry, *j)
			continue
		}
		r.releaseLocked(j.at)
	}
	r.queue = append(retry, r.queue...)
	return firstErr
}

// awaitSent waits for JetStream's answers to one wave of publishes.
func (r *Relay) awaitSent(ctx context.Context, inFlight []sent, held map[docKey]bool, failed map[*job]bool, firstErr *error) {
	if len(inFlight) == 0 {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, ackTimeout)
	defer cancel()
	for _, s := range inFlight {
		dup, err := s.wait(wctx)
		r.settled(ctx, s.job, s.entry, dup, err, failed, firstErr)
		if err != nil {
			held[docKey{s.job.c, s.job.id}] = true
		}
	}
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
	r.acknowledged(ctx, j.c, e, dup)
}

// acknowledged records that JetStream holds e, an entry of a document of c;
// dup says it had it already (a scan and the fast path, or two replicas,
// sent it twice). It reports whether the publish was new.
func (r *Relay) acknowledged(ctx context.Context, c *mongo.Collection, e Entry, dup bool) bool {
	r.mu.Lock()
	r.acked.add(e.ID)
	r.mu.Unlock()
	if dup {
		return false
	}
	r.published.Add(1)
	r.lag.Record(ctx, time.Since(e.CreateTime).Seconds(), metric.WithAttributes(attribute.String("collection", c.Name())))
	return true
}

func (r *Relay) isAcked(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.acked.has(id)
}

// unknownGrace is how long after a write whose answer was lost began the
// relay waits before reading its document back, holding the mark at the
// write meanwhile. A write still on its way (held by a slow store, or sent
// after its caller gave up) lands before then; read back too early, its
// entries would be missed for good.
const unknownGrace = 30 * time.Second

// maxUnsure bounds the documents the relay holds for a read back. During
// a long store outage every write has an unknown outcome; past the bound
// the relay forgets them and scans, once they are due, the documents
// written since the earliest of them (see collapseLocked).
const maxUnsure = 10_000

// unsure is a document that writes of unknown outcome went to. Callers
// retry, so a document may get many: they share one record, which holds
// the mark at the earliest of them and is read back once the latest of them
// can no longer be on its way.
//
// A request without a stamp (see InsertWith) asks for a read at once: it
// sets now. When the record also holds writes still within their grace,
// that read publishes what the document holds and leaves the record, and
// its hold, for the read back once they are due.
type unsure struct {
	first time.Time // stamp of the earliest write, held in open (zero: none)
	last  time.Time // stamp of the latest write (zero: none)
	now   bool      // a read at once was asked for
}

// settled reports whether no write of u's document can still be on its way.
func (u unsure) settled(grace time.Duration) bool {
	return u.last.IsZero() || time.Since(u.last) >= grace
}

// due reports whether u's document is to be read: at once, or once no
// write of it can still be on its way.
func (u unsure) due(grace time.Duration) bool { return u.now || u.settled(grace) }

// addUnsureLocked adds u, whose first is held in open, to the record of
// document k. The record keeps one hold, at the earlier first: the other is
// released, as the earlier one keeps the mark behind both writes. Past
// maxUnsure it forgets every record instead (see collapseLocked), and
// returns how many, and the floor they left.
func (r *Relay) addUnsureLocked(k docKey, u unsure) (forgot int, from time.Time) {
	old, ok := r.unsure[k]
	if !ok {
		if len(r.unsure) >= r.maxUnsure {
			return r.collapseLocked(u)
		}
		r.unsure[k] = u
		return 0, time.Time{}
	}
	switch {
	case u.first.IsZero():
		u.first = old.first
	case old.first.IsZero():
	case u.first.Before(old.first):
		r.releaseLocked(old.first)
	default:
		r.releaseLocked(u.first)
		u.first = old.first
	}
	if u.last.Before(old.last) {
		u.last = old.last
	}
	u.now = u.now || old.now
	r.unsure[k] = u
	return 0, time.Time{}
}

// collapseLocked forgets every document held for a read back, u's too,
// and has the documents written since the earliest of their writes scanned
// instead, as after a restart: every write that may have landed stamped its
// document at or after its own stamp, and outbox_at never moves back. The
// floor holds the mark there meanwhile, and the scan waits until the latest
// of the writes cannot be on its way any more. A record without a stamp
// asked only for an early read (see InsertWith): the write it stands for is
// tracked under its own stamp, so it is dropped.
func (r *Relay) collapseLocked(u unsure) (forgot int, from time.Time) {
	from, last := u.first, u.last
	r.releaseLocked(u.first)
	for _, o := range r.unsure {
		if !o.first.IsZero() && (from.IsZero() || o.first.Before(from)) {
			from = o.first
		}
		if o.last.After(last) {
			last = o.last
		}
		r.releaseLocked(o.first)
	}
	forgot = len(r.unsure) + 1
	clear(r.unsure)
	if from.IsZero() {
		return forgot, from
	}
	r.lowerFloorLocked(from)
	r.floorAt = later(r.floorAt, last.Add(r.grace))
	return forgot, from
}

// recheck reads back the documents of writes whose answer was lost, once
// they are due, and queues what their outboxes hold.
func (r *Relay) recheck(ctx context.Context) error {
	type read struct {
		k    docKey
		last time.Time
		// early: only the read at once is due, not the read back
		early bool
	}
	var due []read
	r.mu.Lock()
	for k, u := range r.unsure {
		if u.due(r.grace) {
			due = append(due, read{k, u.last, !u.settled(r.grace)})
		}
	}
	r.mu.Unlock()
	keys := make([]docKey, len(due))
	for i, d := range due {
		keys[i] = d.k
	}
	found, err := readBack(ctx, keys)
	if err != nil {
		return err
	}
	for _, d := range due {
		st, exists := found[d.k]
		if !exists {
			// Not among the documents read together: missing (its
			// write did not land), or an _id the batch's answer did not
			// match to it. A read of its own says which.
			err := d.k.c.FindOne(ctx, bson.D{{Key: "_id", Value: d.k.id}},
				options.FindOne().SetProjection(readBackProjection)).Decode(&st)
			if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
				return fmt.Errorf("outbox: read back %v in %s: %w", d.k.id, d.k.c.Name(), err)
			}
			exists = err == nil
		}
		r.mu.Lock()
		u, ok := r.unsure[d.k]
		if ok && d.early {
			// The read at once: publish what the document holds, with
			// no hold of its own; the record keeps its hold for its read
			// back.
			if exists {
				r.queue = append(r.queue, job{d.k.c, d.k.id, st.Revision, st.Outbox, time.Time{}})
			}
			u.now = false
			r.unsure[d.k] = u
			r.mu.Unlock()
			continue
		}
		// A write told of during the read may have landed after it: the
		// record then waits for its grace. (One with the same stamp landed
		// before the read began, its grace having passed.)
		if ok && u.last.Equal(d.last) {
			delete(r.unsure, d.k)
			if !exists { // no write landed
				r.releaseLocked(u.first)
			} else {
				r.queue = append(r.queue, job{d.k.c, d.k.id, st.Revision, st.Outbox, u.first})
			}
		}
		r.mu.Unlock()
	}
	return nil
}

// readBackBatch bounds the documents one read back asks for at once.
const readBackBatch = 256

// readBackProjection reads the outbox state of a document, nothing else.
var readBackProjection = bson.D{{Key: FieldRevision, Value: 1}, {Key: FieldEntries, Value: 1}}

// readBack reads the outbox state of the documents of keys, readBackBatch
// of one collection per query (an $in on _id), so that the thousands held
// through a long store outage cost tens of round trips, not thousands,
// while the relay's publishing waits for them. A document missing from the
// answer is missing from the result.
func readBack(ctx context.Context, keys []docKey) (map[docKey]State, error) {
	type doc struct {
		ID    any `bson:"_id"`
		State `bson:",inline"`
	}
	byColl := map[*mongo.Collection][]any{}
	for _, k := range keys {
		byColl[k.c] = append(byColl[k.c], k.id)
	}
	found := make(map[docKey]State, len(keys))
	for c, ids := range byColl {
		for chunk := range slices.Chunk(ids, readBackBatch) {
			cur, err := c.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: chunk}}}},
				options.Find().SetProjection(readBackProjection))
			if err != nil {
				return nil, fmt.Errorf("outbox: read back %d documents in %s: %w", len(chunk), c.Name(), err)
			}
			var docs []doc
			if err := cur.All(ctx, &docs); err != nil {
				return nil, fmt.Errorf("outbox: read back %d documents in %s: %w", len(chunk), c.Name(), err)
			}
			for _, d := range docs {
				found[docKey{c, d.ID}] = d.State
			}
		}
	}
	return found, nil
}

// ackedSet remembers the ids of the most recent entries JetStream
// acknowledged, so that entries a writer finds in a document's outbox are
// not sent again, and may be dropped. Guarded by the relay's mu.
type ackedSet struct {
	ids  map[string]struct{}
	ring []string
	next int
}

func newAckedSet(n int) ackedSet {
	return ackedSet{ids: make(map[string]struct{}, n), ring: make([]string, n)}
}

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
