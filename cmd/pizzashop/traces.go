package main

import (
	"context"
	_ "embed"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// The trace viewer of `make run-traces`: Jaeger v2 (built from the Go
// module proxy into .bin by make, version pinned in tools/jaeger) keeps the
// traces of every process in memory. It receives OTLP/gRPC on base+200 and
// serves its query API and our page on PIZZASHOP_TRACES_ADDR. The Jaeger
// module carries no UI assets (they are built from JavaScript sources at
// release), so the page in traceview/ lists traces and draws one as a
// waterfall from Jaeger's HTTP API.

//go:embed traceview/index.html
var traceViewPage []byte

const jaegerName = "jaeger"

// Default listen address of the trace viewer: Jaeger's usual UI port.
const defaultTracesAddr = "127.0.0.1:16686"

// otlpAddr is where Jaeger receives spans (OTLP/gRPC): base+200.
func (c shopConfig) otlpAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.basePort+200))
}

// jaegerGRPCAddr is Jaeger's own query gRPC API: base+201, unused here but
// it must listen somewhere other than its default.
func (c shopConfig) jaegerGRPCAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.basePort+201))
}

// jaegerConfig is the collector configuration of a Jaeger that keeps traces
// in memory and listens only where the launcher says: no telemetry port, no
// sampling or health endpoints of its own.
func (c shopConfig) jaegerConfig(assets string) string {
	return fmt.Sprintf(`# Written by pizzashop run: the local trace viewer.
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 20000
  jaeger_query:
    storage:
      traces: memstore
    enable_tracing: false
    ui:
      assets_path: %q
    http:
      endpoint: %q
    grpc:
      endpoint: %q
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %q
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`, assets, c.tracesAddr, c.jaegerGRPCAddr(), c.otlpAddr())
}

// startTraces writes Jaeger's configuration and the viewer page under the
// data directory, starts Jaeger and waits until its API answers, so no
// service starts before its spans have somewhere to go.
func (l *launcher) startTraces(ctx context.Context) error {
	dir := filepath.Join(l.cfg.data, "traces")
	assets := filepath.Join(dir, "ui")
	if err := os.MkdirAll(assets, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(assets, "index.html"), traceViewPage, 0o644); err != nil {
		return err
	}
	conf := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(conf, []byte(l.cfg.jaegerConfig(assets)), 0o644); err != nil {
		return err
	}
	sink, err := newLogSink(l.logDir, jaegerName, nameWidth, l.term)
	if err != nil {
		return err
	}
	c, err := startChild(jaegerName, l.cfg.jaeger, os.Environ(), sink, "--config", conf)
	if err != nil {
		sink.Close()
		return err
	}
	l.children = append(l.children, c)
	go func() {
		<-c.done
		l.exits <- c
	}()

	url := "http://" + dialAddr(l.cfg.tracesAddr) + "/api/services"
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, last := probe(ctx, client, url)
		if ok || ctx.Err() != nil {
			return nil
		}
		if c.exited() {
			<-l.exits
			return l.died(ctx, c)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("jaeger did not answer %s within 30s (%s); see %s", url, last, sink.path)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// traceEnv points the services' span exporters at Jaeger, flushing spans
// every half second so a trace shows up moments after the request.
func (c shopConfig) traceEnv() map[string]string {
	return map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + c.otlpAddr(),
		"OTEL_BSP_SCHEDULE_DELAY":     "500",
	}
}
