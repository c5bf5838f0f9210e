package grpcx_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
)

// Calls to methods the server does not serve are refused and leave no
// metric series behind (grpc-go tags them but never ends them, so otelgrpc
// records nothing): a client inventing method names cannot grow /metrics.
// Served methods are measured.
func TestUnknownMethodsAddNoSeries(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	prev := otel.GetMeterProvider()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	t.Cleanup(func() { otel.SetMeterProvider(prev) })

	e := newEnv(t)
	e.serve(t, time.Second)
	conn := e.dial(t)
	ctx := testCtx(t)
	if _, err := menuv1.NewMenuServiceClient(conn).GetMenu(ctx, &menuv1.GetMenuRequest{}); err != nil {
		t.Fatalf("GetMenu: %v", err)
	}
	for i := range 50 {
		err := conn.Invoke(ctx, fmt.Sprintf("/made.up.Service%d/Method%d", i, i), &menuv1.GetMenuRequest{}, &menuv1.GetMenuResponse{})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("made-up method %d = %v, want Unimplemented", i, err)
		}
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	methods := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if !strings.HasPrefix(m.Name, "rpc.server.") {
				continue
			}
			h, ok := m.Data.(metricdata.Histogram[float64])
			if !ok {
				continue
			}
			for _, dp := range h.DataPoints {
				v, _ := dp.Attributes.Value("rpc.method")
				methods[v.AsString()] = true
			}
		}
	}
	if !methods["pizzashop.menu.v1.MenuService/GetMenu"] {
		t.Errorf("no rpc.server series for GetMenu; methods measured: %v", methods)
	}
	for m := range methods {
		if strings.Contains(m, "made.up") {
			t.Errorf("a made-up method got a series: %s", m)
		}
	}
}
