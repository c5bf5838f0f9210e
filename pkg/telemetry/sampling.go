package telemetry

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// samplerFromEnv is the shop's sampler: OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG, read as the OpenTelemetry SDK reads them
// (always_on, always_off, traceidratio, parentbased_always_on,
// parentbased_always_off, parentbased_traceidratio; the ratio is the
// argument). Unset, it is the SDK's default, parent-based always on. A value
// the SDK would refuse gives what the SDK falls back to, and the error.
func samplerFromEnv() (sdktrace.Sampler, error) {
	name := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER")))
	arg := strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER_ARG"))
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio":
		return traceIDRatio(arg)
	case "parentbased_traceidratio":
		s, err := traceIDRatio(arg)
		return sdktrace.ParentBased(s), err
	default:
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER=%q is not supported; sampling parent-based, always on", name)
	}
}

// traceIDRatio is the ratio sampler for OTEL_TRACES_SAMPLER_ARG: all traces
// when the argument is empty, or not a number from 0 to 1.
func traceIDRatio(arg string) (sdktrace.Sampler, error) {
	if arg == "" {
		return sdktrace.TraceIDRatioBased(1), nil
	}
	v, err := strconv.ParseFloat(arg, 64)
	if err != nil || v < 0 || v > 1 {
		return sdktrace.TraceIDRatioBased(1), fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER_ARG=%q is not a ratio from 0 to 1; sampling every trace", arg)
	}
	return sdktrace.TraceIDRatioBased(v), nil
}

// EdgePropagator is the propagator for a public edge, the one place where
// requests come from outside the shop. It reads traceparent as the shop's
// propagator does (no baggage, no tracestate) and keeps the caller's trace
// id and parent span, so the caller can find its request in the shop's
// traces; but the sampled flag is the shop's own, decided by the shop's
// sampler (see samplerFromEnv) as for a new trace, never the caller's.
//
// Every process behind the edge samples parent-based, so one request's
// trace is recorded whole or not at all, across calls and events. Without
// this, an anonymous caller sending "-00" would turn tracing off for its
// requests, and "-01" would have them recorded whatever ratio the shop
// chose. The decision is drawn on a fresh random trace id, not the
// caller's: a ratio sampler decides on the trace id, which the caller
// picks.
//
// The sampler is read from the environment when EdgePropagator is called;
// Setup reports a bad setting.
func EdgePropagator() propagation.TextMapPropagator {
	s, _ := samplerFromEnv()
	return edgePropagator{sampler: s}
}

type edgePropagator struct {
	traceParent
	sampler sdktrace.Sampler
}

// Extract reads traceparent from carrier into ctx, with the sampled flag
// the shop's sampler gives a new trace. A carrier without a valid
// traceparent leaves ctx as it was: the span started there is a root, which
// the sampler decides itself.
func (p edgePropagator) Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	sc := trace.SpanContextFromContext(p.traceParent.Extract(context.Background(), carrier))
	if !sc.IsValid() {
		return ctx
	}
	flags := sc.TraceFlags().WithSampled(sampledAsRoot(ctx, p.sampler, newTraceID(), "", trace.SpanKindServer))
	return trace.ContextWithRemoteSpanContext(ctx, sc.WithTraceFlags(flags))
}

// sampledAsRoot reports whether s samples a span of a new trace traceID.
func sampledAsRoot(ctx context.Context, s sdktrace.Sampler, traceID trace.TraceID, name string, kind trace.SpanKind) bool {
	res := s.ShouldSample(sdktrace.SamplingParameters{
		ParentContext: trace.ContextWithSpanContext(ctx, trace.SpanContext{}),
		TraceID:       traceID,
		Name:          name,
		Kind:          kind,
	})
	return res.Decision == sdktrace.RecordAndSample
}
