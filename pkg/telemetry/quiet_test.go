package telemetry_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// TestTraceContextWithoutExporter checks what a process without an OTLP
// endpoint does with trace context: it records no span, yet every span
// has IDs in the right trace, as the SDK's default sampler would give
// them, so traceparent headers and trace_id log fields still join up.
func TestTraceContextWithoutExporter(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	setup(t, "quiet")
	tracer := otel.Tracer("test")
	prop := otel.GetTextMapPropagator()

	ctx, root := tracer.Start(context.Background(), "root")
	rsc := root.SpanContext()
	if root.IsRecording() || !rsc.IsValid() || !rsc.IsSampled() {
		t.Fatalf("root span: recording %v, context %+v; want not recording, valid and sampled", root.IsRecording(), rsc)
	}
	_, child := tracer.Start(ctx, "child")
	if sc := child.SpanContext(); sc.TraceID() != rsc.TraceID() || sc.SpanID() == rsc.SpanID() || !sc.IsSampled() {
		t.Errorf("child span context %+v, want root's trace %s, a new span ID, sampled", sc, rsc.TraceID())
	}
	carrier := propagation.MapCarrier{}
	prop.Inject(ctx, carrier)
	if want := "00-" + rsc.TraceID().String() + "-" + rsc.SpanID().String() + "-01"; carrier["traceparent"] != want {
		t.Errorf("traceparent = %q, want %q", carrier["traceparent"], want)
	}

	for _, tt := range []struct {
		traceparent string
		sampled     bool
	}{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", false},
	} {
		// The propagator drops a caller's tracestate (TestTraceStateIsNotPropagated);
		// a parent that has one passes it on, as the SDK does.
		ts, err := trace.ParseTraceState("shop=1")
		if err != nil {
			t.Fatal(err)
		}
		parent := trace.SpanContextFromContext(prop.Extract(context.Background(), propagation.MapCarrier{"traceparent": tt.traceparent}))
		remote := trace.ContextWithRemoteSpanContext(context.Background(), parent.WithTraceState(ts))
		_, span := tracer.Start(remote, "handle")
		sc := span.SpanContext()
		if sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sc.SpanID().String() == "00f067aa0ba902b7" ||
			sc.IsSampled() != tt.sampled || sc.TraceState().Get("shop") != "1" || sc.IsRemote() {
			t.Errorf("span under %s: context %+v; want its trace, a new local span ID, sampled %v, its trace state", tt.traceparent, sc, tt.sampled)
		}
		_, fresh := tracer.Start(remote, "new root", trace.WithNewRoot())
		if fresh.SpanContext().TraceID() == sc.TraceID() || !fresh.SpanContext().IsValid() {
			t.Errorf("WithNewRoot span context %+v, want a new trace", fresh.SpanContext())
		}
	}
}

// TestQuietRootFollowsSampler checks that without an exporter a new trace
// is still sampled as OTEL_TRACES_SAMPLER says, as the gateway's
// EdgePropagator decides a request with a traceparent: the services behind
// a quiet gateway record the traces the shop chose, whichever the request.
func TestQuietRootFollowsSampler(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	for _, tt := range []struct {
		sampler string
		sampled bool
	}{
		{"", true},
		{"parentbased_always_off", false},
		{"always_off", false},
	} {
		t.Setenv("OTEL_TRACES_SAMPLER", tt.sampler)
		setup(t, "quiet")
		ctx, root := otel.Tracer("test").Start(context.Background(), "root")
		_, child := otel.Tracer("test").Start(ctx, "child")
		if sc := root.SpanContext(); !sc.IsValid() || sc.IsSampled() != tt.sampled || child.SpanContext().IsSampled() != tt.sampled {
			t.Errorf("OTEL_TRACES_SAMPLER=%q: root %+v, child %+v; want valid, sampled %v", tt.sampler, sc, child.SpanContext(), tt.sampled)
		}
	}
}
