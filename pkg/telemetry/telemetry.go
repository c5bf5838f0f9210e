// Package telemetry sets up OpenTelemetry for one process: traces go to an
// OTLP collector when OTEL_EXPORTER_OTLP_ENDPOINT is set (without one, trace
// context is carried but spans are not recorded), metrics are served
// in Prometheus format, and W3C traceparent is the propagator (neither
// baggage nor tracestate is propagated). Spans are sampled by
// OTEL_TRACES_SAMPLER, parent-based by default; at the public edge the
// caller's sampled flag is replaced by the shop's decision (EdgePropagator).
//
// The service name is OTEL_SERVICE_NAME (or service.name in
// OTEL_RESOURCE_ATTRIBUTES) when set, else the binary's own name. Server
// metrics keep only attributes the server chooses (method, route, status):
// nothing a client sends, such as the Host header, becomes a label, so no
// client can add series.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Telemetry is the process's tracer and meter providers.
type Telemetry struct {
	// Metrics serves the Prometheus scrape endpoint.
	Metrics  http.Handler
	shutdown []func(context.Context) error
}

// Setup installs global tracer and meter providers and the W3C propagator.
// Call Shutdown before the process exits to flush spans.
func Setup(ctx context.Context, service, version string) (*Telemetry, error) {
	res, err := newResource(ctx, service, version)
	if err != nil {
		return nil, err
	}
	t := &Telemetry{}

	exporting := os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	// EdgePropagator reads the same sampler: the gateway decides a request
	// that brings a traceparent as one that does not.
	sampler, serr := samplerFromEnv()
	if exporting {
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: otlp exporter: %w", err)
		}
		// The SDK reads OTEL_TRACES_SAMPLER again here, and reports a bad one.
		tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithSampler(sampler), sdktrace.WithBatcher(exp))
		t.shutdown = append(t.shutdown, tp.Shutdown)
		otel.SetTracerProvider(tp)
	} else {
		if serr != nil {
			otel.Handle(serr)
		}
		// Spans would go nowhere: carry trace context without recording.
		otel.SetTracerProvider(&quietProvider{sampler: sampler})
	}
	// W3C trace context only. The shop reads no baggage, and baggage from
	// a caller (any client of the gateway or of a service) would travel
	// with every call and be stored in every event's outbox entry and
	// NATS headers: whatever it held, an email address or a card number.
	// The same goes for tracestate; see traceParent.
	otel.SetTextMapPropagator(traceParent{})

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Metric names are unique across the shop's instrumentation scopes, so
	// the scope labels on every series would only add bytes.
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(exp), sdkmetric.WithView(boundedView)}
	if !exporting {
		// An exemplar names a trace; with no spans recorded there is none
		// to find.
		mopts = append(mopts, sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter))
	}
	mp := sdkmetric.NewMeterProvider(mopts...)
	t.shutdown = append(t.shutdown, mp.Shutdown)
	otel.SetMeterProvider(mp)
	t.Metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return t, nil
}

// traceParent is the W3C trace context propagator without tracestate: a
// caller's trace continues (trace id, parent span id, sampled flag), but
// its tracestate, free text the shop never reads, is dropped on the way in
// rather than carried by every span of the request and stored with every
// event the request causes.
type traceParent struct{ propagation.TraceContext }

// Extract reads traceparent from carrier into ctx, without its tracestate.
// A carrier without a valid traceparent leaves ctx as it was.
func (p traceParent) Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	sc := trace.SpanContextFromContext(p.TraceContext.Extract(context.Background(), carrier))
	if !sc.IsValid() {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc.WithTraceState(trace.TraceState{}))
}

// newResource names the process: the SDK's defaults, then service as the
// name and version, then OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME,
// which win, so a deployment can rename a process without rebuilding it.
func newResource(ctx context.Context, service, version string) (*resource.Resource, error) {
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName(service), semconv.ServiceVersion(version)),
		resource.WithFromEnv(),
		resource.WithSchemaURL(semconv.SchemaURL),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	return res, nil
}

// serverAttrs are the only attributes server-side HTTP and gRPC metrics
// keep. Each value is chosen by the server from a fixed set: the method
// (otelhttp folds unknown ones into _OTHER), the route pattern, the status.
// Left out are the attributes a client decides, chiefly server.address and
// server.port, which otelhttp takes from the Host header: one request with
// a new Host would otherwise add a series to every server histogram.
var serverAttrs = []attribute.Key{
	"http.request.method", "http.route", "http.response.status_code", "url.scheme", "error.type",
	"rpc.system", "rpc.system.name", "rpc.service", "rpc.method", "rpc.grpc.status_code", "rpc.response.status_code",
}

// boundedView keeps only serverAttrs on every server-side HTTP and gRPC
// instrument, whatever instrumentation library version records them. It
// drops the HTTP body size histograms: per route and status they were two
// thirds of the gateway's series, and no dashboard reads them.
func boundedView(i sdkmetric.Instrument) (sdkmetric.Stream, bool) {
	if !strings.HasPrefix(i.Name, "http.server.") && !strings.HasPrefix(i.Name, "rpc.server.") {
		return sdkmetric.Stream{}, false
	}
	s := sdkmetric.Stream{Name: i.Name, Description: i.Description, Unit: i.Unit, AttributeFilter: keepServerAttrs}
	if strings.HasSuffix(i.Name, ".body.size") {
		s.Aggregation = sdkmetric.AggregationDrop{}
	}
	return s, true
}

var keepServerAttrs = attribute.NewAllowKeysFilter(serverAttrs...)

// Shutdown flushes and stops the providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range t.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}
