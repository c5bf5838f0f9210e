package telemetry_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// A client's baggage header goes no further than the process it reached:
// the shop reads no baggage, and what a caller puts there (an email
// address, a card number) would otherwise travel with every call and be
// stored in each event's outbox entry and NATS headers. Trace context
// still flows.
func TestBaggageIsNotPropagated(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	setup(t, "order")
	prop := otel.GetTextMapPropagator()

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	incoming := propagation.MapCarrier{
		"traceparent": "00-" + traceID + "-00f067aa0ba902b7-01",
		"baggage":     "email=ann%40example.com,card=4111111111111111",
	}
	ctx := prop.Extract(context.Background(), incoming)
	if b := baggage.FromContext(ctx); b.Len() != 0 {
		t.Errorf("extracted baggage %q from a request, want none", b.String())
	}
	if sc := trace.SpanContextFromContext(ctx); sc.TraceID().String() != traceID {
		t.Fatalf("extracted trace %s, want %s", sc.TraceID(), traceID)
	}

	// Baggage set in this process is not sent on either.
	m, err := baggage.NewMember("email", "ann%40example.com")
	if err != nil {
		t.Fatal(err)
	}
	b, err := baggage.New(m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, span := otel.Tracer("test").Start(baggage.ContextWithBaggage(ctx, b), "handle")
	defer span.End()
	outgoing := propagation.MapCarrier{}
	prop.Inject(ctx, outgoing)
	if v, ok := outgoing["baggage"]; ok {
		t.Errorf("injected baggage %q, want none", v)
	}
	if outgoing["traceparent"] == "" {
		t.Errorf("injected no traceparent: %v", outgoing)
	}
}

// A caller's tracestate header goes no further either: it is free text
// (up to 32 entries of 256 characters) that the shop does not read, and
// every span of the request, and every event it causes, would carry it
// into the outbox entries and NATS headers. The trace itself continues.
func TestTraceStateIsNotPropagated(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	setup(t, "order")
	prop := otel.GetTextMapPropagator()

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, flags := range []string{"01", "00"} {
		incoming := propagation.MapCarrier{
			"traceparent": "00-" + traceID + "-00f067aa0ba902b7-" + flags,
			"tracestate":  "card=4111111111111111,email=ann@example.com",
		}
		ctx := prop.Extract(context.Background(), incoming)
		sc := trace.SpanContextFromContext(ctx)
		if sc.TraceID().String() != traceID || !sc.IsRemote() || sc.IsSampled() != (flags == "01") {
			t.Fatalf("extracted %+v, want remote trace %s, flags %s", sc, traceID, flags)
		}
		if sc.TraceState().Len() != 0 {
			t.Errorf("extracted trace state %q, want none", sc.TraceState().String())
		}
		ctx, span := otel.Tracer("test").Start(ctx, "handle")
		outgoing := propagation.MapCarrier{}
		prop.Inject(ctx, outgoing)
		span.End()
		if v, ok := outgoing["tracestate"]; ok {
			t.Errorf("injected tracestate %q, want none", v)
		}
		if want := "00-" + traceID + "-" + span.SpanContext().SpanID().String() + "-" + flags; outgoing["traceparent"] != want {
			t.Errorf("injected traceparent %q, want %q", outgoing["traceparent"], want)
		}
	}
	// Nothing to extract leaves the context as it was.
	base, parent := otel.Tracer("test").Start(context.Background(), "parent")
	defer parent.End()
	if got := trace.SpanContextFromContext(prop.Extract(base, propagation.MapCarrier{})); !got.Equal(parent.SpanContext()) {
		t.Errorf("Extract of an empty carrier changed the span context to %+v", got)
	}
}
