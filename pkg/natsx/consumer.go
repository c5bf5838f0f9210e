package natsx

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/errs"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// DeadLetterStream holds messages that failed every delivery, under
// "deadletter.<consumer>", with headers saying where they came from and why
// they failed. An operator lists and replays them with `pizzashop deadletters`.
var DeadLetterStream = jetstream.StreamConfig{
	Name:        "DEADLETTER",
	Description: "Messages that kept failing, kept for inspection and replay",
	Subjects:    []string{"deadletter.>"},
	MaxAge:      30 * 24 * time.Hour,
}

// Headers set on dead letters.
const (
	HeaderDLStream     = "Pizzashop-Dl-Stream"
	HeaderDLSubject    = "Pizzashop-Dl-Subject"
	HeaderDLSequence   = "Pizzashop-Dl-Sequence"
	HeaderDLConsumer   = "Pizzashop-Dl-Consumer"
	HeaderDLError      = "Pizzashop-Dl-Error"
	HeaderDLDeliveries = "Pizzashop-Dl-Deliveries"
	HeaderDLMsgID      = "Pizzashop-Dl-Msg-Id"
)

// Handler handles one message. Returning nil acks it; an error makes it
// redelivered with backoff, or dead-lettered at the last attempt. Wrap
// errors that no retry can fix with Permanent.
type Handler func(ctx context.Context, msg jetstream.Msg) error

type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// Permanent marks err as one that retrying cannot fix (a message that does
// not decode, say): the message goes to the dead-letter stream at once.
func Permanent(err error) error { return permanent{err} }

// ConsumerConfig describes a durable consumer.
type ConsumerConfig struct {
	Stream         string
	Durable        string
	FilterSubjects []string
	// MaxDeliver bounds the failed attempts at one message before it is
	// dead-lettered; default 5. Attempts are counted by the process that
	// makes them, not by the server, whose count of deliveries also grows
	// while a message waits unhandled behind an outage.
	MaxDeliver int
	// Backoff is the delay before each redelivery; the last value repeats.
	// Default 500ms, 1s, 2s, 5s.
	Backoff []time.Duration
	// AckWait is how long a delivery may take before it is redelivered,
	// which is also how soon the work of a consumer that died resumes
	// elsewhere; default 5s. A message held through an outage keeps
	// telling the server it is in progress.
	AckWait time.Duration
	// Workers is how many messages are handled at once; default
	// DefaultWorkers. Messages of one entity (the last token of the
	// subject: the order or ticket id) always go to the same worker, so
	// they are handled one at a time and in the order they came.
	Workers int
}

// DefaultWorkers is how many messages a consumer handles at once unless
// told otherwise. Handlers spend most of their time waiting on the store,
// and the stores send concurrent writes together (mongox.Inserter,
// mongox.Updater): with 8 workers a burst of orders left the kitchen's
// consumer behind, sending groups of 3 and reading back orders that had
// fallen out of the recent-orders cache; with 32 it keeps up, at a third
// less CPU per order (docs/capacity.md).
const DefaultWorkers = 32

// Consume runs a durable consumer until ctx ends, then drains it: messages
// being handled finish and are acked. Each message is handled in the trace
// of the request that published it. When NATS loses the consumer (someone
// deleted it or its stream, or NATS came back without its storage), Consume
// declares it again, and its stream if EnsureStream declared that here, and
// goes on. A consumer declared again starts after the last message it
// finished (see ackFloor) when its stream still holds that message, rather
// than at the start of the stream; when the stream was created again or
// lost messages since, it starts at the stream's first message. Consume
// declares a consumer that exists as it is, from where it stands.
func (b *Bus) Consume(ctx context.Context, cfg ConsumerConfig, h Handler) error {
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = 5
	}
	if len(cfg.Backoff) == 0 {
		cfg.Backoff = []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second}
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = 5 * time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if err := b.EnsureStream(ctx, DeadLetterStream); err != nil {
		return err
	}
	first, err := b.declareConsumer(ctx, cfg, nil)
	if err != nil {
		return err
	}
	// The consumer in use, declared again whenever NATS lost it.
	var current atomic.Pointer[declared]
	current.Store(first)
	tracer := otel.Tracer(tracerName)
	// No-op instruments come back with any error, so they are safe to use.
	handled, _ := otel.Meter(tracerName).Float64Histogram("pizzashop.events.handle.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to handle one event, by consumer and outcome (ack, retry, dead_letter)"))
	// The attribute sets of the outcomes, built once, not per message.
	outcomes := map[string]metric.MeasurementOption{}
	for _, o := range []string{"ack", "retry", "dead_letter"} {
		outcomes[o] = metric.WithAttributeSet(attribute.NewSet(
			attribute.String("consumer", cfg.Durable), attribute.String("outcome", o)))
	}
	outcome := func(ctx context.Context, start time.Time, result string) {
		handled.Record(ctx, time.Since(start).Seconds(), outcomes[result])
	}
	stopGauges, redelivered := consumerMetrics(ctx, func() jetstream.Consumer { return current.Load().cons }, cfg.Durable)
	defer stopGauges()
	var fails failureCounts
	handle := func(q queued) {
		m := q.m
		start := time.Now()
		mctx := ContextFrom(ctx, m.Headers())
		mctx, span := tracer.Start(mctx, "process "+spanDestination(m.Subject()), trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("messaging.system", "nats"),
				attribute.String("messaging.destination.name", m.Subject()),
				attribute.String("messaging.consumer.group.name", cfg.Durable),
				attribute.String("messaging.message.id", m.Headers().Get(jetstream.MsgIDHeader))))
		defer span.End()
		err := b.handleTransient(ctx, mctx, cfg, m, h)
		md := q.md
		if err == nil {
			_ = m.Ack()
			if md != nil {
				fails.forget(md.Sequence.Stream)
				q.floor.finished(md.Sequence.Stream)
			}
			outcome(mctx, start, "ack")
			return
		}
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		n := 1
		if md != nil {
			n = int(md.NumDelivered)
		}
		if n > 1 {
			redelivered()
		}
		if transient(err) {
			// Only when the consumer stops mid-outage: hand the message
			// back for the next run; an outage is not the message's fault.
			_ = m.Nak()
			outcome(mctx, start, "retry")
			return
		}
		// The server's count of deliveries also grows while a message
		// waits, unhandled, behind one held through an outage, and across
		// restarts: only failed attempts count against MaxDeliver.
		failed := 1
		if md != nil {
			failed = fails.add(md.Sequence.Stream)
		}
		var p permanent
		if errors.As(err, &p) || failed >= cfg.MaxDeliver {
			if derr := b.deadLetter(context.WithoutCancel(mctx), cfg, m, md, n, err); derr != nil {
				b.log.ErrorContext(mctx, "dead-letter failed; will retry", "subject", m.Subject(), "err", derr)
				_ = m.NakWithDelay(cfg.Backoff[len(cfg.Backoff)-1])
				return
			}
			b.log.WarnContext(mctx, "message dead-lettered", "subject", m.Subject(), "consumer", cfg.Durable, "deliveries", n, "err", err)
			_ = m.Term()
			if md != nil {
				fails.forget(md.Sequence.Stream)
				q.floor.finished(md.Sequence.Stream)
			}
			outcome(mctx, start, "dead_letter")
			return
		}
		delay := cfg.Backoff[min(failed-1, len(cfg.Backoff)-1)]
		b.log.WarnContext(mctx, "message failed; will redeliver", "subject", m.Subject(), "consumer", cfg.Durable, "delivery", n, "in", delay, "err", err)
		_ = m.NakWithDelay(delay)
		outcome(mctx, start, "retry")
	}
	// Workers finish what is queued for them once stopping closes. The
	// queues are never closed: a delivery racing a stop that timed out
	// could still be sent to one, and is then redelivered after AckWait.
	queues := make([]chan queued, cfg.Workers)
	stopping := make(chan struct{})
	var workers sync.WaitGroup
	for i := range queues {
		q := make(chan queued, workerQueue(cfg.Workers))
		queues[i] = q
		workers.Go(func() {
			for {
				select {
				case m := <-q:
					handle(m)
				case <-stopping:
					for {
						select {
						case m := <-q:
							handle(m)
						default:
							return
						}
					}
				}
			}
		})
	}
	stop := func() {
		close(stopping)
		workers.Wait()
	}
	// dispatch hands the messages of a declaration of the consumer to
	// the workers, recording each in its floor as received.
	dispatch := func(floor *ackFloor) jetstream.MessageHandler {
		return func(m jetstream.Msg) {
			md, err := m.Metadata()
			if err != nil {
				md = nil
			}
			floor.received(md)
			select {
			case queues[workerOf(m.Subject(), len(queues))] <- queued{m, md, floor}:
			case <-stopping:
				_ = m.Nak()
			}
		}
	}
	// The server's ack floor is read now and then for a consumer whose
	// floor cannot be tracked here.
	sampling, every := make(chan struct{}), floorSample
	var sampler sync.WaitGroup
	defer sampler.Wait()
	defer close(sampling)
	sampler.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-sampling:
				return
			case <-t.C:
			}
			d := current.Load()
			if !d.floor.incomplete() {
				continue
			}
			ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
			info, err := d.cons.Info(ictx)
			cancel()
			if err == nil {
				d.floor.sampled(info)
			}
		}
	})
	wait := redeclareFirst
	for {
		// Any trouble pulling may mean that NATS lost the consumer: a pull
		// for one it no longer has gets no responders, and no heartbeat.
		trouble := make(chan struct{}, 1)
		d := current.Load()
		cons := d.cons
		cc, err := cons.Consume(dispatch(d.floor),
			// A small client buffer, two messages a worker: few messages
			// wait in the client, running down their AckWait, behind one
			// held through an outage.
			jetstream.PullMaxMessages(max(16, 2*cfg.Workers)),
			// A pull waiting on a NATS node that died is given up after
			// 5 s, not the default 30, so work moves on to a live node soon.
			jetstream.PullExpiry(5*time.Second),
			jetstream.ConsumeErrHandler(func(jetstream.ConsumeContext, error) {
				select {
				case trouble <- struct{}{}:
				default:
				}
			}))
		if err != nil {
			stop()
			return fmt.Errorf("consume %s: %w", cfg.Durable, err)
		}
		began := time.Now()
		if !consumerLost(ctx, cc, cons, trouble) {
			cc.Drain()
			select {
			case <-cc.Closed():
			case <-time.After(10 * time.Second):
				cc.Stop()
			}
			stop()
			return nil
		}
		// NATS deleted the consumer, or came back without it (without its
		// storage, or someone deleted it): declare it again, and its
		// stream if this process declared that, and go on from the
		// message after the floor when the stream still has it. Messages
		// being handled are acked in vain, and delivered again unless
		// they finish before the consumer is declared; handlers are
		// idempotent.
		cc.Stop()
		if b.Conn.IsClosed() {
			stop()
			return fmt.Errorf("consume %s: %w", cfg.Durable, nats.ErrConnectionClosed)
		}
		if time.Since(began) > time.Minute {
			wait = redeclareFirst
		}
		b.log.WarnContext(ctx, "consumer lost; declaring it again", "consumer", cfg.Durable, "stream", cfg.Stream, "in", wait)
		select {
		case <-ctx.Done():
			stop()
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, redeclareMax)
		next, err := b.declareConsumer(ctx, cfg, d.floor)
		if err != nil {
			stop() // ctx ended
			return nil
		}
		// A stream declared again numbers its messages from 1.
		fails.reset()
		current.Store(next)
	}
}

// The wait before a lost consumer is declared again, doubling up to
// redeclareMax while it keeps being lost within a minute.
const (
	redeclareFirst = 250 * time.Millisecond
	redeclareMax   = 15 * time.Second
)

// declared is one declaration of a consumer: the consumer, and its floor.
type declared struct {
	cons  jetstream.Consumer
	floor *ackFloor
}

// queued is a message waiting for its worker, with its metadata (nil when
// it has none) and the floor of the declaration of the consumer it came
// from.
type queued struct {
	m     jetstream.Msg
	md    *jetstream.MsgMetadata
	floor *ackFloor
}

// declareConsumer creates or updates the durable consumer of cfg, retrying
// until NATS answers or ctx ends. When NATS lost the stream and this
// process declared it, it declares it again; a stream of another process
// is waited for.
//
// A consumer that exists keeps where it stands: its deliver policy and
// start are left as they are (NATS refuses to change them anyway). One that
// is missing starts at the stream's first message, or, when prev is the
// floor of the declaration NATS lost, after that floor if the stream still
// holds it (ackFloor.resumeAt). A start can only be given to a consumer
// created, so the consumer is created, not updated, with it: when another
// replica declared it first, it is taken as that replica made it.
func (b *Bus) declareConsumer(ctx context.Context, cfg ConsumerConfig, prev *ackFloor) (*declared, error) {
	var d *declared
	err := retry(ctx, b.log, "create consumer "+cfg.Durable, func(ctx context.Context) error {
		stream, err := b.JS.Stream(ctx, cfg.Stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			var again bool
			if again, err = b.declareAgain(ctx, cfg.Stream); err == nil && again {
				stream, err = b.JS.Stream(ctx, cfg.Stream)
			} else {
				err = errors.Join(jetstream.ErrStreamNotFound, err)
			}
		}
		if err != nil {
			return err
		}
		sinfo := stream.CachedInfo()
		ccfg := jetstream.ConsumerConfig{
			Durable:        cfg.Durable,
			FilterSubjects: cfg.FilterSubjects,
			AckPolicy:      jetstream.AckExplicitPolicy,
			DeliverPolicy:  jetstream.DeliverAllPolicy,
			AckWait:        cfg.AckWait,
			// The bound on deliveries is counted here, not by the server: a
			// message held back through an outage is redelivered by the
			// server as its AckWait passes, and must never be dropped for it.
			MaxDeliver:    -1,
			MaxAckPending: maxAckPending,
		}
		var cons jetstream.Consumer
		if seq := prev.resumeAt(sinfo); seq > 0 {
			ccfg.DeliverPolicy, ccfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq
			cons, err = stream.CreateConsumer(ctx, ccfg)
			if errors.Is(err, jetstream.ErrConsumerExists) {
				cons, err = stream.Consumer(ctx, cfg.Durable)
			} else if err == nil {
				b.log.InfoContext(ctx, "consumer declared again after the last message it finished",
					"consumer", cfg.Durable, "stream", cfg.Stream, "start_seq", seq)
			}
		} else {
			existing, cerr := stream.Consumer(ctx, cfg.Durable)
			switch {
			case cerr == nil:
				was := existing.CachedInfo().Config
				ccfg.DeliverPolicy, ccfg.OptStartSeq, ccfg.OptStartTime = was.DeliverPolicy, was.OptStartSeq, was.OptStartTime
			case !errors.Is(cerr, jetstream.ErrConsumerNotFound):
				return cerr
			}
			cons, err = stream.CreateOrUpdateConsumer(ctx, ccfg)
		}
		if err != nil {
			return err
		}
		d = &declared{cons: cons, floor: newAckFloor(sinfo.Created, cons.CachedInfo())}
		return nil
	})
	return d, err
}

// consumerLost waits until ctx ends, reporting false, or the consumer is
// lost, reporting true: its ConsumeContext closed while ctx runs (the client
// gives up when the server deleted the consumer), or, asked after trouble
// pulling, the server says it has no such consumer or stream.
func consumerLost(ctx context.Context, cc jetstream.ConsumeContext, cons jetstream.Consumer, trouble <-chan struct{}) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-cc.Closed():
			return ctx.Err() == nil
		case <-trouble:
			ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := cons.Info(ictx)
			cancel()
			if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
				return true
			}
		}
	}
}

// failureCounts counts the failed attempts at each message, by its stream
// sequence, that this process made. A message that fails here and then
// succeeds on another replica leaves its count behind; past maxCounted
// counts they are all forgotten, which only grants the messages still
// failing a few more attempts.
type failureCounts struct {
	mu sync.Mutex
	n  map[uint64]int
}

const maxCounted = 4096

// add counts a failed attempt at message seq and returns its failures.
func (f *failureCounts) add(seq uint64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == nil || len(f.n) >= maxCounted {
		f.n = map[uint64]int{}
	}
	f.n[seq]++
	return f.n[seq]
}

// reset forgets every count.
func (f *failureCounts) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n = nil
}

// forget drops the count of message seq, handled or dead-lettered.
func (f *failureCounts) forget(seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.n, seq)
}

// maxAckPending bounds the messages a consumer has been given and not yet
// acknowledged.
const maxAckPending = 256

// workerQueue is how many messages may wait for one worker: 16, or fewer
// when the workers' queues together would hold more than maxAckPending,
// so that what waits behind a message held through an outage stays small.
func workerQueue(workers int) int { return min(16, max(4, maxAckPending/workers)) }

// workerOf picks the worker for a message by the last token of its
// subject, the id of the entity it is about, so one entity's messages are
// handled in order by one worker.
func workerOf(subject string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(subject[strings.LastIndexByte(subject, '.')+1:]))
	return int(h.Sum32() % uint32(n))
}

// handleTransient runs h, and while h fails because something it needs is
// briefly down (errs.KindUnavailable, a deadline), keeps the message and
// retries it in place with backoff. An outage of the store thus pauses the
// consumer instead of spending the message's deliveries and dead-lettering
// it; the consumer catches up when the store is back. It gives up only when
// the consumer stops, returning the last error.
func (b *Bus) handleTransient(ctx, mctx context.Context, cfg ConsumerConfig, m jetstream.Msg, h Handler) error {
	wait := cfg.Backoff[0]
	for warned := false; ; {
		err := h(context.WithoutCancel(mctx), m)
		if err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		if !warned {
			b.log.WarnContext(mctx, "dependency unavailable; holding the message until it is back", "subject", m.Subject(), "consumer", cfg.Durable, "err", err)
			warned = true
		}
		_ = m.InProgress()
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func transient(err error) bool {
	return errs.KindOf(err) == errs.KindUnavailable || errors.Is(err, context.DeadlineExceeded)
}

func (b *Bus) deadLetter(ctx context.Context, cfg ConsumerConfig, m jetstream.Msg, md *jetstream.MsgMetadata, n int, cause error) error {
	dl := nats.NewMsg("deadletter." + cfg.Durable)
	dl.Data = m.Data()
	for k, v := range m.Headers() {
		if k != jetstream.MsgIDHeader {
			dl.Header[k] = v
		}
	}
	seq := uint64(0)
	if md != nil {
		seq = md.Sequence.Stream
	}
	dl.Header.Set(HeaderDLStream, cfg.Stream)
	dl.Header.Set(HeaderDLSubject, m.Subject())
	dl.Header.Set(HeaderDLSequence, strconv.FormatUint(seq, 10))
	dl.Header.Set(HeaderDLConsumer, cfg.Durable)
	dl.Header.Set(HeaderDLDeliveries, strconv.Itoa(n))
	dl.Header.Set(HeaderDLMsgID, m.Headers().Get(jetstream.MsgIDHeader))
	msg := cause.Error()
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	dl.Header.Set(HeaderDLError, msg)
	id := jetstream.WithMsgID(fmt.Sprintf("dl-%s-%s-%d", cfg.Stream, cfg.Durable, seq))
	_, err := b.JS.PublishMsg(ctx, dl, id)
	if b.StreamMissing(err) {
		// NATS lost the dead-letter stream: declare it again and retry.
		if declared, derr := b.declareAgain(ctx, DeadLetterStream.Name); derr != nil || !declared {
			return errors.Join(err, derr)
		}
		_, err = b.JS.PublishMsg(ctx, dl, id)
	}
	return err
}

// consumerMetrics reports, per durable consumer, the messages waiting for
// it and those delivered but not yet acknowledged (read from the server at
// each scrape of cons, the consumer in use), and counts redeliveries. It
// returns the function that unregisters the gauges and the one that counts
// a redelivery.
func consumerMetrics(ctx context.Context, cons func() jetstream.Consumer, durable string) (stop func(), redelivered func()) {
	meter := otel.Meter(tracerName)
	attrs := metric.WithAttributes(attribute.String("consumer", durable))
	// No-op instruments come back with any error, so they are safe to use.
	counter, _ := meter.Int64Counter("pizzashop.events.redelivered",
		metric.WithDescription("Deliveries of an event after its first, by consumer: each a failure or an expired AckWait"))
	counter.Add(ctx, 0, attrs) // the series exists before the first redelivery
	pending, _ := meter.Int64ObservableGauge("pizzashop.consumer.pending",
		metric.WithDescription("Events on the stream not yet delivered to the consumer"))
	ackPending, _ := meter.Int64ObservableGauge("pizzashop.consumer.ack_pending",
		metric.WithDescription("Events delivered to the consumer and not yet acknowledged"))
	reg, err := meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		info, err := cons().Info(ictx)
		if err != nil {
			return nil // NATS is down: no value rather than a stale one
		}
		o.ObserveInt64(pending, int64(info.NumPending), attrs)
		o.ObserveInt64(ackPending, int64(info.NumAckPending), attrs)
		return nil
	}, pending, ackPending)
	stop = func() {}
	if err == nil {
		stop = func() { _ = reg.Unregister() }
	}
	return stop, func() { counter.Add(ctx, 1, attrs) }
}
