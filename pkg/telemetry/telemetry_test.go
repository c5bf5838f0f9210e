package telemetry_test

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/pizzashop/pizzashop/pkg/telemetry"
)

// scrape returns the non-comment lines of the Prometheus endpoint.
func scrape(t *testing.T, tel *telemetry.Telemetry) []string {
	t.Helper()
	rec := httptest.NewRecorder()
	tel.Metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	var lines []string
	for _, l := range strings.Split(string(body), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines
}

func setup(t testing.TB, service string) *telemetry.Telemetry {
	t.Helper()
	tel, err := telemetry.Setup(context.Background(), service, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel
}

func serviceName(t *testing.T, lines []string) string {
	t.Helper()
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, "target_info{"); ok {
			_, v, ok := strings.Cut(rest, `service_name="`)
			if ok {
				name, _, _ := strings.Cut(v, `"`)
				return name
			}
		}
	}
	t.Fatalf("no target_info with service_name in:\n%s", strings.Join(lines, "\n"))
	return ""
}

func TestServiceName(t *testing.T) {
	for _, tc := range []struct {
		name, env, attrs, want string
	}{
		{"binary name by default", "", "", "order"},
		{"OTEL_SERVICE_NAME wins", "order-eu", "", "order-eu"},
		{"OTEL_RESOURCE_ATTRIBUTES wins", "", "service.name=order-blue", "order-blue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("OTEL_SERVICE_NAME", tc.env)
			t.Setenv("OTEL_RESOURCE_ATTRIBUTES", tc.attrs)
			tel := setup(t, "order")
			if got := serviceName(t, scrape(t, tel)); got != tc.want {
				t.Errorf("service_name = %q, want %q", got, tc.want)
			}
		})
	}
}

// A server histogram recorded with the attributes otelhttp and otelgrpc
// take from the request keeps only those the server chooses: a thousand
// Host headers are one series.
func TestServerMetricsIgnoreClientAttributes(t *testing.T) {
	tel := setup(t, "gateway")
	meter := otel.Meter("test")
	httpDur, _ := meter.Float64Histogram("http.server.request.duration", metric.WithUnit("s"))
	rpcDur, _ := meter.Float64Histogram("rpc.server.call.duration", metric.WithUnit("s"))
	clientDur, _ := meter.Float64Histogram("rpc.client.call.duration", metric.WithUnit("s"))
	bodySize, _ := meter.Int64Histogram("http.server.request.body.size", metric.WithUnit("By"))
	ctx := context.Background()
	record := func(host string, port int) {
		httpDur.Record(ctx, 0.01, metric.WithAttributes(
			attribute.String("http.request.method", "GET"), attribute.String("http.route", "/v1/menu"),
			attribute.Int("http.response.status_code", 200), attribute.String("url.scheme", "http"),
			attribute.String("server.address", host), attribute.Int("server.port", port),
			attribute.String("network.protocol.version", "1.1"), attribute.String("client.address", host)))
		rpcDur.Record(ctx, 0.01, metric.WithAttributes(
			attribute.String("rpc.system.name", "grpc"), attribute.String("rpc.method", "pizzashop.menu.v1.MenuService/GetMenu"),
			attribute.String("rpc.response.status_code", "OK"),
			attribute.String("server.address", host), attribute.String("network.peer.address", host)))
		bodySize.Record(ctx, 100)
		// Client-side attributes name the configured upstream: kept.
		clientDur.Record(ctx, 0.01, metric.WithAttributes(attribute.String("server.address", "menu")))
	}
	record("localhost", 8080)
	before := scrape(t, tel)
	for i := range 1000 {
		record(fmt.Sprintf("host-%d.example", i), 1024+i)
	}
	after := scrape(t, tel)
	if len(after) != len(before) {
		t.Errorf("series after 1,000 distinct hosts = %d, want %d as before", len(after), len(before))
	}
	for _, l := range after {
		if strings.HasPrefix(l, "http_server_") || strings.HasPrefix(l, "rpc_server_") {
			for _, bad := range []string{"server_address", "server_port", "client_address", "network_peer_address", "network_protocol_version"} {
				if strings.Contains(l, bad+"=") {
					t.Fatalf("server series carries %s: %s", bad, l)
				}
			}
		}
	}
	want := `rpc_client_call_duration_seconds_count{server_address="menu"}`
	found := false
	for _, l := range after {
		found = found || strings.HasPrefix(l, want)
	}
	if !found {
		t.Errorf("no line %s: client metrics lost an attribute they should keep", want)
	}
	for _, l := range after {
		if strings.HasPrefix(l, "http_server_request_body_size") {
			t.Fatalf("body size histogram not dropped: %s", l)
		}
		if strings.Contains(l, "otel_scope_") {
			t.Fatalf("series carries scope labels: %s", l)
		}
	}
}
