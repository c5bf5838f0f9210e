package telemetry

import (
	"context"
	"encoding/binary"
	"math/rand/v2"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// quietProvider is the tracer provider of a process that exports no spans
// (no OTLP endpoint is set). The SDK would build every span, attributes
// and all, only to drop it at End: a tenth of a service's CPU. A quiet span
// is not recorded but is otherwise what the SDK's span would be: a new
// span ID in the parent's trace, with the parent's flags and trace state,
// or at the root a new trace, sampled as the sampler decides. So trace
// context still flows through every call and event, logs still carry
// trace_id, and a process that does export records its part of the same
// trace.
type quietProvider struct {
	embedded.TracerProvider
	// sampler decides roots; nil samples every one.
	sampler sdktrace.Sampler
}

func (p *quietProvider) Tracer(string, ...trace.TracerOption) trace.Tracer {
	return quietTracer{provider: p}
}

type quietTracer struct {
	embedded.Tracer
	provider *quietProvider
}

// Start decides as a parent-based SDK sampler would: a child follows its
// parent, a root is the sampler's.
func (t quietTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	parent := trace.SpanContextFromContext(ctx)
	if parent.IsValid() && len(opts) > 0 {
		if cfg := trace.NewSpanStartConfig(opts...); cfg.NewRoot() {
			parent = trace.SpanContext{}
		}
	}
	var cfg trace.SpanContextConfig
	if parent.IsValid() {
		cfg = trace.SpanContextConfig{TraceID: parent.TraceID(), TraceFlags: parent.TraceFlags(), TraceState: parent.TraceState()}
	} else {
		cfg.TraceID = newTraceID()
		if t.provider.sampler == nil || sampledAsRoot(ctx, t.provider.sampler, cfg.TraceID, name, trace.SpanKindUnspecified) {
			cfg.TraceFlags = trace.FlagsSampled
		}
	}
	cfg.SpanID = newSpanID()
	s := &quietSpan{sc: trace.NewSpanContext(cfg), provider: t.provider}
	return trace.ContextWithSpan(ctx, s), s
}

// quietSpan records nothing and carries its span context.
type quietSpan struct {
	embedded.Span
	sc       trace.SpanContext
	provider *quietProvider
}

func (s *quietSpan) SpanContext() trace.SpanContext        { return s.sc }
func (s *quietSpan) TracerProvider() trace.TracerProvider  { return s.provider }
func (*quietSpan) IsRecording() bool                       { return false }
func (*quietSpan) End(...trace.SpanEndOption)              {}
func (*quietSpan) AddEvent(string, ...trace.EventOption)   {}
func (*quietSpan) AddLink(trace.Link)                      {}
func (*quietSpan) RecordError(error, ...trace.EventOption) {}
func (*quietSpan) SetStatus(codes.Code, string)            {}
func (*quietSpan) SetName(string)                          {}
func (*quietSpan) SetAttributes(...attribute.KeyValue)     {}

func newTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		binary.BigEndian.PutUint64(id[:8], rand.Uint64())
		binary.BigEndian.PutUint64(id[8:], rand.Uint64())
	}
	return id
}

func newSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		binary.BigEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}
