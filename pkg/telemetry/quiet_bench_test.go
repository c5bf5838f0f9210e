package telemetry_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// BenchmarkSpanWithoutExporter is one span of a process that exports
// none, with the attributes an event consumer gives it.
func BenchmarkSpanWithoutExporter(b *testing.B) {
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	b.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	setup(b, "quiet")
	tracer := otel.Tracer("bench")
	ctx, root := tracer.Start(context.Background(), "root")
	defer root.End()
	b.ReportAllocs()
	for b.Loop() {
		_, span := tracer.Start(ctx, "process order.placed", trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", "order.placed.1")))
		span.SetAttributes(attribute.String("k", "v"))
		span.End()
	}
}
