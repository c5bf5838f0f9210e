// Package natsx is the shop's JetStream bus: connecting with endless
// reconnects, declaring streams, publishing protobuf events with a message id
// and trace context in the headers, and durable consumers with bounded
// redelivery and a dead-letter stream. A consumer NATS loses is declared
// again, after the last message the process finished when the stream still
// holds it (see Bus.Consume).
package natsx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
)

// Header names the shop sets on every event besides Nats-Msg-Id and the
// W3C trace context.
const (
	// HeaderEventType is the full protobuf name of the event's message.
	HeaderEventType = "Pizzashop-Event-Type"
	// HeaderContentType says how the payload is encoded; see ContentType.
	HeaderContentType = "Content-Type"
)

// ContentType is the Content-Type of an event whose payload is the binary
// protobuf message named eventType, for example "application/protobuf;
// proto=pizzashop.order.v1.OrderStatusChanged", so that any client can tell
// what it holds and how to decode it.
func ContentType(eventType string) string { return "application/protobuf; proto=" + eventType }

// SetEventHeaders sets the headers that name an event's message on h.
func SetEventHeaders(h nats.Header, eventType string) {
	h.Set(HeaderEventType, eventType)
	h.Set(HeaderContentType, ContentType(eventType))
}

const tracerName = "github.com/pizzashop/pizzashop/pkg/natsx"

// Bus is a NATS connection with its JetStream context.
type Bus struct {
	Conn *nats.Conn
	JS   jetstream.JetStream
	log  *slog.Logger

	// published counts events by kind: the order funnel is the rate of
	// each "order.<status>".
	published metric.Int64Counter
	// kinds holds the attribute set of each event kind counted, built
	// once rather than on every publish.
	kinds sync.Map // string -> metric.MeasurementOption
	// Replicas is how many copies of a stream JetStream keeps when its
	// config does not say (the dead-letter stream); set it before use.
	Replicas int

	missedMu sync.Mutex
	missed   []func()

	streams sync.Map // stream name -> jetstream.Stream, for Stored
	// declared holds the config of every stream EnsureStream declared, so
	// that one NATS lost (it came back without its storage, or someone
	// deleted it) can be declared again as it was.
	declared sync.Map // stream name -> jetstream.StreamConfig
}

// Stored reports whether JetStream holds event eventID as the last message
// on subject. The outbox relay asks it before publishing again what a scan
// after a crash finds: JetStream would drop the repeat, but plain
// subscribers (live views) would see it. Subjects name one event of one
// order, so the last message is the one to compare.
func (b *Bus) Stored(ctx context.Context, subject, eventID string) (bool, error) {
	name, err := b.JS.StreamNameBySubject(ctx, subject)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stream of %s: %w", subject, err)
	}
	var st jetstream.Stream
	if v, ok := b.streams.Load(name); ok {
		st = v.(jetstream.Stream)
	} else {
		if st, err = b.JS.Stream(ctx, name); err != nil {
			return false, fmt.Errorf("stream %s: %w", name, err)
		}
		b.streams.Store(name, st)
	}
	m, err := st.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("last message on %s: %w", subject, err)
	}
	return m.Header.Get(jetstream.MsgIDHeader) == eventID, nil
}

// OnMissed registers fn to be called whenever plain (not JetStream)
// subscriptions may have missed messages: after a reconnect, and when the
// server cut a subscriber off as too slow. What is kept fresh by such
// messages reads itself again then.
func (b *Bus) OnMissed(fn func()) {
	b.missedMu.Lock()
	defer b.missedMu.Unlock()
	b.missed = append(b.missed, fn)
}

func (b *Bus) messagesMissed() {
	b.missedMu.Lock()
	fns := slices.Clone(b.missed)
	b.missedMu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// Connect connects to url and keeps reconnecting for as long as the process
// lives, so a NATS outage delays work instead of failing it. It returns even
// when NATS is not up yet.
func Connect(url, name string, log *slog.Logger) (*Bus, error) {
	b := &Bus{log: log}
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500*time.Millisecond),
		nats.ReconnectBufSize(-1), // never buffer publishes while down: the outbox retries them
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("nats reconnected", "url", c.ConnectedUrlRedacted())
			b.messagesMissed()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("nats async error", "subject", subj, "err", err)
			if errors.Is(err, nats.ErrSlowConsumer) {
				b.messagesMissed()
			}
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("nats connect: %w", err)
	}
	// An async publish whose answer never comes fails after a while, so the
	// outbox relay sends it again instead of waiting on it.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(3*time.Second))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	// A no-op counter comes back with any error, so it is safe to use.
	published, _ := otel.Meter(tracerName).Int64Counter("pizzashop.events.published",
		metric.WithDescription("Events stored by JetStream (duplicates not counted), by kind such as order.placed"))
	b.Conn, b.JS, b.published = nc, js, published
	return b, nil
}

// EnsureStream creates or updates a stream, retrying until NATS answers or
// ctx ends. A cluster that cannot place the stream yet (a node still
// starting or down) is waited for too; a refusal of the stream itself is
// returned at once. Streams use file storage and the given duplicate
// window.
func (b *Bus) EnsureStream(ctx context.Context, cfg jetstream.StreamConfig) error {
	if cfg.Storage == 0 {
		cfg.Storage = jetstream.FileStorage
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = max(1, b.Replicas)
	}
	if cfg.Duplicates == 0 {
		cfg.Duplicates = 10 * time.Minute
	}
	var refused error
	err := retry(ctx, b.log, "create stream "+cfg.Name, func(ctx context.Context) error {
		_, err := b.JS.CreateOrUpdateStream(ctx, cfg)
		if apiErr, ok := errors.AsType[*jetstream.APIError](err); ok && !clusterBusy(apiErr) {
			// The server answered and said no: retrying will not help.
			refused = fmt.Errorf("create stream %s: %w", cfg.Name, apiErr)
			return nil
		}
		return err
	})
	if refused != nil {
		return refused
	}
	if err == nil {
		b.declared.Store(cfg.Name, cfg)
	}
	return err
}

// clusterBusy reports whether a JetStream refusal says its cluster cannot
// place or handle the request yet, rather than that the request is wrong:
// nodes still meeting each other at start, a peer offline, a leader being
// elected. The same request can succeed a moment later.
func clusterBusy(err *jetstream.APIError) bool {
	switch err.ErrorCode {
	case 10004, // incomplete results
		10005, // no suitable peers for placement
		10007, // cluster not assigned to this server
		10008, // JetStream system temporarily unavailable
		10009: // cluster can not handle request
		return true
	}
	return false
}

// StreamMissing reports whether err, from a publish, says that no stream
// holds the subject: NATS came back without its storage, or someone deleted
// the stream.
func (b *Bus) StreamMissing(err error) bool {
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrStreamNotFound)
}

// EnsureStreams declares again, once each, the streams EnsureStream
// declared that NATS no longer has, as they were declared; streams it has
// are left as they are. It reports whether it declared any. Publishers call
// it when StreamMissing says a publish found no stream, before they retry.
func (b *Bus) EnsureStreams(ctx context.Context) (declared bool, err error) {
	var errs []error
	b.declared.Range(func(name, _ any) bool {
		ok, err := b.declareAgain(ctx, name.(string))
		declared = declared || ok
		if err != nil {
			errs = append(errs, err)
		}
		return true
	})
	return declared, errors.Join(errs...)
}

// declareAgain declares stream name again if NATS no longer has it and
// EnsureStream declared it here; it reports whether it did. A stream
// another process declares is left to that process.
func (b *Bus) declareAgain(ctx context.Context, name string) (bool, error) {
	v, ok := b.declared.Load(name)
	if !ok {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := b.JS.Stream(ctx, name)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return false, fmt.Errorf("stream %s: %w", name, err)
	}
	_, err = b.JS.CreateStream(ctx, v.(jetstream.StreamConfig))
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return false, nil // declared by another replica meanwhile
	}
	if err != nil {
		return false, fmt.Errorf("declare stream %s again: %w", name, err)
	}
	b.log.WarnContext(ctx, "stream lost; declared it again", "stream", name)
	return true, nil
}

// Ping reports whether the connection is up and JetStream answers.
func (b *Bus) Ping(ctx context.Context) error {
	if !b.Conn.IsConnected() {
		return fmt.Errorf("nats: not connected (%s)", b.Conn.Status())
	}
	if _, err := b.JS.AccountInfo(ctx); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	return nil
}

// Close drains the connection: subscriptions finish what they hold and
// pending publishes are flushed.
func (b *Bus) Close() {
	if err := b.Conn.Drain(); err != nil {
		b.Conn.Close()
		return
	}
	for b.Conn.IsDraining() {
		time.Sleep(10 * time.Millisecond)
	}
}

// Publish sends m to subject with eventID as its Nats-Msg-Id, so that a
// repeated publish of the same event is collapsed by JetStream. It returns
// once JetStream has stored the message; duplicate is true when the stream
// already had it.
func (b *Bus) Publish(ctx context.Context, subject, eventID string, m proto.Message) (duplicate bool, err error) {
	data, err := proto.Marshal(m)
	if err != nil {
		return false, fmt.Errorf("publish %s: marshal: %w", subject, err)
	}
	return b.PublishRaw(ctx, subject, eventID, string(proto.MessageName(m)), data)
}

// PublishRaw is Publish for an event already encoded, as kept in an outbox.
// The trace context of ctx goes into the headers.
func (b *Bus) PublishRaw(ctx context.Context, subject, eventID, eventType string, data []byte) (duplicate bool, err error) {
	ctx, span := otel.Tracer(tracerName).Start(ctx, "publish "+spanDestination(subject),
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", subject),
			attribute.String("messaging.message.id", eventID)))
	defer span.End()
	msg := nats.NewMsg(subject)
	msg.Data = data
	SetEventHeaders(msg.Header, eventType)
	otel.GetTextMapPropagator().Inject(ctx, HeaderCarrier(msg.Header))
	ack, err := b.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(eventID))
	if apiErr, ok := errors.AsType[*jetstream.APIError](err); ok && apiErr.ErrorCode == jsDuplicateInProcess {
		return true, nil
	}
	if err != nil {
		failSpan(span, err)
		return false, fmt.Errorf("publish %s: %w", subject, err)
	}
	if !ack.Duplicate {
		b.countPublished(ctx, subject)
	}
	return ack.Duplicate, nil
}

// countPublished counts one event stored under subject by its kind.
func (b *Bus) countPublished(ctx context.Context, subject string) {
	kind := eventKind(subject)
	opt, ok := b.kinds.Load(kind)
	if !ok {
		opt, _ = b.kinds.LoadOrStore(kind, metric.WithAttributeSet(attribute.NewSet(attribute.String("event", kind))))
	}
	b.published.Add(ctx, 1, opt.(metric.MeasurementOption))
}

// spanDestination is what span names call subject: the subject without
// the entity id (its last token) when it names one, as
// "order.placed.<id>" does, so a trace backend sees one operation per kind
// of event and not one per order; "menu.changed" stays itself. The full
// subject is the span's messaging.destination.name.
func spanDestination(subject string) string {
	if strings.Count(subject, ".") >= 2 {
		return eventKind(subject)
	}
	return subject
}

// eventKind is a subject without its last token, the entity id:
// "order.placed.<id>" is "order.placed". The server names every subject,
// so the kinds are a small fixed set.
func eventKind(subject string) string {
	if i := strings.LastIndexByte(subject, '.'); i > 0 {
		return subject[:i]
	}
	return subject
}

// PublishRawAsync is PublishRaw without waiting: it sends the event and
// returns at once; wait returns when JetStream has stored it (duplicate
// true when the stream already had it) or ctx ends. Many events on the wire
// at once cost a fraction of one round trip each.
func (b *Bus) PublishRawAsync(ctx context.Context, subject, eventID, eventType string, data []byte) (wait func(context.Context) (duplicate bool, err error), err error) {
	ctx, span := otel.Tracer(tracerName).Start(ctx, "publish "+spanDestination(subject),
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", subject),
			attribute.String("messaging.message.id", eventID)))
	msg := nats.NewMsg(subject)
	msg.Data = data
	SetEventHeaders(msg.Header, eventType)
	otel.GetTextMapPropagator().Inject(ctx, HeaderCarrier(msg.Header))
	fut, err := b.JS.PublishMsgAsync(msg, jetstream.WithMsgID(eventID))
	if err != nil {
		failSpan(span, err)
		span.End()
		return nil, fmt.Errorf("publish %s: %w", subject, err)
	}
	return func(ctx context.Context) (bool, error) {
		defer span.End()
		select {
		case ack := <-fut.Ok():
			if !ack.Duplicate {
				b.countPublished(ctx, subject)
			}
			return ack.Duplicate, nil
		case err := <-fut.Err():
			if apiErr, ok := errors.AsType[*jetstream.APIError](err); ok && apiErr.ErrorCode == jsDuplicateInProcess {
				// A cluster is storing the same event from an earlier
				// send right now: stored, as a duplicate would be.
				return true, nil
			}
			failSpan(span, err)
			return false, fmt.Errorf("publish %s: %w", subject, err)
		case <-ctx.Done():
			failSpan(span, ctx.Err())
			return false, fmt.Errorf("publish %s: %w", subject, ctx.Err())
		}
	}, nil
}

// failSpan records err on a publish span and marks it failed, so the trace
// shows where the event got stuck.
func failSpan(span trace.Span, err error) {
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// jsDuplicateInProcess is JetStream's answer to a message whose id a
// clustered stream is storing at that moment.
const jsDuplicateInProcess jetstream.ErrorCode = 10158

// HeaderCarrier carries W3C trace context in NATS headers. It keeps header
// keys exactly as given, which propagation.HeaderCarrier does not.
type HeaderCarrier nats.Header

var _ propagation.TextMapCarrier = HeaderCarrier{}

// Get returns the first value of key.
func (c HeaderCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set replaces the values of key.
func (c HeaderCarrier) Set(key, value string) { c[key] = []string{value} }

// Keys lists the header keys.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// ContextFrom returns ctx with the remote span context carried by h.
func ContextFrom(ctx context.Context, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, HeaderCarrier(h))
}

// retryNote is how often retry says again that it is still trying.
var retryNote = time.Minute

// retry calls f until it succeeds or ctx ends, backing off from 100 ms to
// 5 s. It warns from the third failure on, and again every retryNote, so
// that a wait that does not end (a cluster short of nodes for a stream's
// replicas, say) keeps showing in the log with its reason.
func retry(ctx context.Context, log *slog.Logger, what string, f func(context.Context) error) error {
	wait := 100 * time.Millisecond
	var noted time.Time
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, errors.Join(err, ctx.Err()))
		}
		if attempt >= 3 && time.Since(noted) >= retryNote {
			log.Warn("still retrying", "what", what, "attempts", attempt, "err", err)
			noted = time.Now()
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}
