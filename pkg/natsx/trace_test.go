package natsx_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// attr returns the string attribute key of s.
func attr(s sdktrace.ReadOnlySpan, key attribute.Key) string {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value.AsString()
		}
	}
	return ""
}

// Span names are the subject without the entity id, so that a trace
// backend sees one operation per kind of event, not one per order; the
// full subject stays in messaging.destination.name. Each process span is a
// child of the publish span of its message.
func TestSpanNamesLeaveOutTheEntity(t *testing.T) {
	rec := useTracing(t)
	bus, _ := newBus(t)
	ctx, parent := otel.Tracer("test").Start(testContext(t), "place order")
	defer parent.End()

	for _, id := range []string{"o1", "o2"} {
		if _, err := bus.PublishRaw(ctx, "test.placed."+id, "evt-"+id, "test.Event", []byte(id)); err != nil {
			t.Fatalf("PublishRaw(%s): %v", id, err)
		}
	}
	wait, err := bus.PublishRawAsync(ctx, "test.placed.o3", "evt-o3", "test.Event", []byte("o3"))
	if err != nil {
		t.Fatalf("PublishRawAsync: %v", err)
	}
	if _, err := wait(ctx); err != nil {
		t.Fatalf("PublishRawAsync wait: %v", err)
	}
	handled := &recorder{}
	consume(t, bus, config(3), handled.handle)
	eventually(t, "three messages are handled", func() bool { return len(handled.all()) >= 3 })
	eventually(t, "three process spans end", func() bool {
		n := 0
		for _, s := range rec.Ended() {
			if s.SpanKind() == trace.SpanKindConsumer {
				n++
			}
		}
		return n >= 3
	})

	publishes := map[string]sdktrace.ReadOnlySpan{} // by message id
	var processes []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.SpanKind() {
		case trace.SpanKindProducer:
			publishes[attr(s, "messaging.message.id")] = s
			if s.Name() != "publish test.placed" {
				t.Errorf("publish span of %s named %q, want %q", attr(s, "messaging.destination.name"), s.Name(), "publish test.placed")
			}
		case trace.SpanKindConsumer:
			processes = append(processes, s)
			if s.Name() != "process test.placed" {
				t.Errorf("process span of %s named %q, want %q", attr(s, "messaging.destination.name"), s.Name(), "process test.placed")
			}
		}
	}
	if len(publishes) != 3 {
		t.Fatalf("%d publish spans, want 3", len(publishes))
	}
	for _, p := range processes {
		id := attr(p, "messaging.message.id")
		pub, ok := publishes[id]
		if !ok {
			t.Errorf("process span of message %q has no publish span", id)
			continue
		}
		if want := "test.placed." + id[len("evt-"):]; attr(p, "messaging.destination.name") != want || attr(pub, "messaging.destination.name") != want {
			t.Errorf("message %s: destination %q (process), %q (publish), want %q", id,
				attr(p, "messaging.destination.name"), attr(pub, "messaging.destination.name"), want)
		}
		if p.Parent().SpanID() != pub.SpanContext().SpanID() || p.SpanContext().TraceID() != parent.SpanContext().TraceID() {
			t.Errorf("process span of %s: parent %s in trace %s, want the publish span %s in trace %s", id,
				p.Parent().SpanID(), p.SpanContext().TraceID(), pub.SpanContext().SpanID(), parent.SpanContext().TraceID())
		}
	}
}

// A publish that fails ends its span with an error status, so the trace
// shows where the event got stuck.
func TestPublishFailureSetsSpanStatus(t *testing.T) {
	rec := useTracing(t)
	bus, _ := newBus(t)
	ctx, cancel := context.WithTimeout(testContext(t), 2*time.Second)
	defer cancel()
	if _, err := bus.PublishRaw(ctx, "nostream.sync.1", "evt-1", "t", []byte("x")); err == nil {
		t.Fatal("PublishRaw to a subject no stream holds = nil error, want an error")
	}
	wait, err := bus.PublishRawAsync(ctx, "nostream.async.2", "evt-2", "t", []byte("x"))
	if err == nil {
		if _, err = wait(ctx); err == nil {
			t.Fatal("PublishRawAsync to a subject no stream holds: wait = nil error, want an error")
		}
	}
	got := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		if s.SpanKind() == trace.SpanKindProducer {
			got[attr(s, "messaging.destination.name")] = s
		}
	}
	for _, subject := range []string{"nostream.sync.1", "nostream.async.2"} {
		s, ok := got[subject]
		if !ok {
			t.Errorf("no ended publish span for %s", subject)
			continue
		}
		if s.Status().Code != codes.Error {
			t.Errorf("publish span of %s: status %v, want Error", subject, s.Status())
		}
	}
}
