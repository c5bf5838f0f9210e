package edge_test

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestSpansRedactCardNumbers: a card number a client puts in a path is
// refused, and never reaches the traces the gateway exports, as it never
// reaches the access log.
func TestSpansRedactCardNumbers(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	s := newStack(t)
	const card = "4111111111111111"
	for _, path := range []string{"/v1/orders/" + card, "/v1/orders/" + card + ":watch", "/v1/nothing/" + card, "/v1/orders/4111-1111-1111-1111"} {
		s.do(t, "GET", path, nil, nil)
	}
	ended := rec.Ended()
	if len(ended) == 0 {
		t.Fatal("no spans recorded")
	}
	for _, sp := range ended {
		if strings.Contains(sp.Name(), "4111") {
			t.Errorf("span name %q holds the card number", sp.Name())
		}
		for _, kv := range sp.Attributes() {
			if v := kv.Value.Emit(); strings.Contains(strings.ReplaceAll(v, "-", ""), card) {
				t.Errorf("span %q attribute %s = %q holds the card number", sp.Name(), kv.Key, v)
			}
		}
	}
}
