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
