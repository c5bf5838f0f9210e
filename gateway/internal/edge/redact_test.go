package edge_test

import (
	"net/http"
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

// TestErrorsNeverQuoteCardNumbers: a body refused for its shape (a number
// where a string belongs, an unknown field) is refused without the card
// number it held being sent back, and says why.
func TestErrorsNeverQuoteCardNumbers(t *testing.T) {
	s := newStack(t)
	for _, body := range []string{
		`{"note": 4111111111111111}`,
		`{"note": 4111111111111111.5}`,
		`{"4111111111111111": "x"}`,
		`{"fulfillment": "4111111111111111"}`,
		`{"item": {"pizzaId": "margherita", "size": "SIZE_4111111111111111"}}`,
	} {
		resp, got := s.do(t, "POST", "/v1/orders", strings.NewReader(body), nil)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST /v1/orders %s = %d, want 400\n%s", body, resp.StatusCode, got)
			continue
		}
		if strings.Contains(string(got), "4111") {
			t.Errorf("POST /v1/orders %s answer quotes the card number: %s", body, got)
		}
		if st := decodeStatus(t, body, got); !strings.Contains(st.Message, "card") {
			t.Errorf("POST /v1/orders %s message = %q, want it to say a card number was refused", body, st.Message)
		}
	}
}
