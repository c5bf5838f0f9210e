package edge_test

import (
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestCallerDoesNotDecideSampling checks that a caller's traceparent names
// the trace but does not decide whether the shop records it: the gateway
// samples as the shop's sampler (OTEL_TRACES_SAMPLER) would a request
// without one, and the services behind follow the flag it passes on.
func TestCallerDoesNotDecideSampling(t *testing.T) {
	const (
		traceID      = "4bf92f3577b34da6a3ce929d0e0e4736"
		callerSpanID = "00f067aa0ba902b7"
	)
	tests := []struct {
		name    string
		sampler string // OTEL_TRACES_SAMPLER; empty is the default
		flags   string // of the caller's traceparent
		sampled bool
	}{
		// An anonymous caller cannot switch the shop's tracing off...
		{"unsampled caller, shop samples all", "", "00", true},
		{"unsampled caller, shop samples all explicitly", "parentbased_always_on", "00", true},
		// ...nor force it on when the shop samples nothing.
		{"sampled caller, shop samples nothing", "parentbased_always_off", "01", false},
		{"sampled caller, shop samples all", "", "01", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Both the provider and the gateway read the sampler from here.
			t.Setenv("OTEL_TRACES_SAMPLER", tt.sampler)
			t.Setenv("OTEL_TRACES_SAMPLER_ARG", "")
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
			otel.SetTracerProvider(tp)
			otel.SetTextMapPropagator(propagation.TraceContext{})
			t.Cleanup(func() {
				otel.SetTracerProvider(prevTP)
				otel.SetTextMapPropagator(prevProp)
			})

			s := newStack(t)
			h := http.Header{"Traceparent": {"00-" + traceID + "-" + callerSpanID + "-" + tt.flags}}
			if resp, body := s.do(t, "GET", "/v1/orders/o-1", nil, h); resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /v1/orders/o-1: %d %s", resp.StatusCode, body)
			}

			// The call to the order service carries the caller's trace and
			// the shop's decision.
			md, calls := s.order.seen()
			if calls != 1 {
				t.Fatalf("order service saw %d calls, want 1", calls)
			}
			tp0 := md.Get("traceparent")
			if len(tp0) != 1 {
				t.Fatalf("order service got traceparent %q, want one", tp0)
			}
			parts := strings.Split(tp0[0], "-")
			wantFlags := map[bool]string{true: "01", false: "00"}[tt.sampled]
			if len(parts) != 4 || parts[1] != traceID || parts[3] != wantFlags {
				t.Errorf("order service got traceparent %q, want trace %s with flags %s", tp0[0], traceID, wantFlags)
			}

			var server, client sdktrace.ReadOnlySpan
			for _, sp := range rec.Ended() {
				switch sp.SpanKind() {
				case trace.SpanKindServer:
					server = sp
				case trace.SpanKindClient:
					client = sp
				}
			}
			if !tt.sampled {
				if n := len(rec.Ended()); n != 0 {
					t.Errorf("recorded %d spans (server %v), want none", n, server != nil)
				}
				return
			}
			if server == nil || client == nil {
				t.Fatalf("recorded server span %v, client span %v; want both", server != nil, client != nil)
			}
			if sc := server.SpanContext(); sc.TraceID().String() != traceID || !sc.IsSampled() {
				t.Errorf("server span %+v, want sampled, in trace %s", sc, traceID)
			}
			if p := server.Parent(); p.SpanID().String() != callerSpanID || !p.IsRemote() {
				t.Errorf("server span's parent %+v, want the caller's span %s", p, callerSpanID)
			}
			if sc := client.SpanContext(); sc.TraceID().String() != traceID || !sc.IsSampled() || client.Parent().SpanID() != server.SpanContext().SpanID() {
				t.Errorf("client span %+v under %+v, want sampled, under the server span", sc, client.Parent())
			}
			if want := "00-" + traceID + "-" + client.SpanContext().SpanID().String() + "-01"; tp0[0] != want {
				t.Errorf("order service got traceparent %q, want %q", tp0[0], want)
			}
		})
	}
}
