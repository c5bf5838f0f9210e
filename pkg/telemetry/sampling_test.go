package telemetry_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pizzashop/pizzashop/pkg/telemetry"
)

// TestEdgePropagatorSamplesAsTheShop checks that at the public edge the
// caller's traceparent keeps its trace id and parent span, but the sampled
// flag is what the shop's sampler gives a new trace.
func TestEdgePropagatorSamplesAsTheShop(t *testing.T) {
	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		spanID  = "00f067aa0ba902b7"
	)
	tests := []struct {
		sampler, arg string
		flags        string
		sampled      bool
	}{
		{"", "", "00", true},
		{"", "", "01", true},
		{"parentbased_always_on", "", "00", true},
		{"always_on", "", "00", true},
		{"parentbased_always_off", "", "01", false},
		{"always_off", "", "01", false},
		{"parentbased_traceidratio", "0", "01", false},
		{"traceidratio", "0", "01", false},
		{"parentbased_traceidratio", "1", "00", true},
		// What the SDK falls back to: parent-based always on, every trace.
		{"no_such_sampler", "", "00", true},
		{"parentbased_traceidratio", "lots", "00", true},
	}
	for _, tt := range tests {
		t.Setenv("OTEL_TRACES_SAMPLER", tt.sampler)
		t.Setenv("OTEL_TRACES_SAMPLER_ARG", tt.arg)
		prop := telemetry.EdgePropagator()
		carrier := propagation.MapCarrier{
			"traceparent": "00-" + traceID + "-" + spanID + "-" + tt.flags,
			"tracestate":  "card=4111111111111111",
			"baggage":     "email=ann%40example.com",
		}
		sc := trace.SpanContextFromContext(prop.Extract(context.Background(), carrier))
		if sc.TraceID().String() != traceID || sc.SpanID().String() != spanID || !sc.IsRemote() ||
			sc.IsSampled() != tt.sampled || sc.TraceState().Len() != 0 {
			t.Errorf("OTEL_TRACES_SAMPLER=%q ARG=%q, caller flags %s: extracted %+v; want remote %s-%s, sampled %v, no trace state",
				tt.sampler, tt.arg, tt.flags, sc, traceID, spanID, tt.sampled)
		}
	}
}

// TestEdgePropagatorRatioIgnoresCallersTraceID checks that a caller cannot
// pick a trace id the ratio sampler would always take: the edge draws its
// decision on a trace id of its own.
func TestEdgePropagatorRatioIgnoresCallersTraceID(t *testing.T) {
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
	t.Setenv("OTEL_TRACES_SAMPLER_ARG", "0.000000001")
	prop := telemetry.EdgePropagator()
	// Its low 63 bits are 0: below the bound of any ratio above 0.
	carrier := propagation.MapCarrier{"traceparent": "00-4bf92f3577b34da60000000000000000-00f067aa0ba902b7-01"}
	for range 100 {
		if sc := trace.SpanContextFromContext(prop.Extract(context.Background(), carrier)); sc.IsSampled() {
			t.Fatalf("extracted %+v: sampled a trace the shop samples one in a billion of", sc)
		}
	}
}

// TestEdgePropagatorWithoutTraceparent checks that a request without a
// traceparent is left for the sampler to decide as a root.
func TestEdgePropagatorWithoutTraceparent(t *testing.T) {
	ctx := telemetry.EdgePropagator().Extract(context.Background(), propagation.MapCarrier{"traceparent": "garbage"})
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		t.Errorf("extracted %+v from a bad traceparent, want nothing", sc)
	}
}
