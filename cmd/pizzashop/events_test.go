package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/logging"
	"github.com/pizzashop/pizzashop/pkg/natsx"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
)

// lockedBuffer is a bytes.Buffer that a command writes while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestEvents(t *testing.T) {
	url := devstack.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bus, err := natsx.Connect(url, "events-test", logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	if err := bus.EnsureStream(ctx, jetstream.StreamConfig{Name: "ORDER", Subjects: []string{"order.>"}}); err != nil {
		t.Fatal(err)
	}
	cmd := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, append(args, "--nats", url), &out, &errOut)
		return out.String() + errOut.String(), err
	}

	// tail follows order events live; it says when it is listening. Its
	// context has no deadline, as when it runs from a terminal.
	var tailOut, tailErr lockedBuffer
	tailDone := make(chan error, 1)
	tailCtx, stopTail := context.WithCancel(context.Background())
	defer stopTail()
	go func() {
		tailDone <- run(tailCtx, []string{"events", "tail", "order.>", "--nats", url, "--count", "1"}, &tailOut, &tailErr)
	}()
	for !strings.Contains(tailErr.String(), "following order.>") {
		select {
		case err := <-tailDone:
			t.Fatalf("events tail ended before listening: %v\n%s", err, tailErr.String())
		case <-ctx.Done():
			t.Fatalf("events tail never said it was listening: %q", tailErr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}

	// One event, published the way the services publish them.
	ev := &orderv1.OrderStatusChanged{
		EventId:   "evt-1",
		OccurTime: timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)),
		Status:    orderv1.OrderStatus_ORDER_STATUS_PLACED,
		Order:     &orderv1.Order{Id: "o1", Note: "ring <twice>", Revision: 7},
	}
	if _, err := bus.Publish(ctx, "order.placed.o1", ev.EventId, ev); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-tailDone:
		if err != nil {
			t.Fatalf("events tail = %v", err)
		}
	case <-ctx.Done():
		t.Fatal("events tail --count 1 did not end after one event")
	}
	lines := strings.Split(strings.TrimSpace(tailOut.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("events tail printed %d lines, want 1 JSON object:\n%s", len(lines), tailOut.String())
	}
	checkEvent(t, "events tail", lines[0], "")

	// get prints the stored copy, with where it is stored.
	out, err := cmd("events", "get", "ORDER", "1")
	if err != nil {
		t.Fatalf("events get ORDER 1 = %v\n%s", err, out)
	}
	checkEvent(t, "events get ORDER 1", out, "ORDER")

	// Bad input gets an error that names the problem.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"events"}, "want \"tail [SUBJECT]\""},
		{[]string{"events", "follow"}, "unknown verb \"follow\""},
		{[]string{"events", "get", "ORDER"}, "want STREAM SEQ"},
		{[]string{"events", "get", "ORDER", "x"}, "\"x\" is not a stream sequence number"},
		{[]string{"events", "get", "ORDER", "0"}, "\"0\" is not a stream sequence number"},
		{[]string{"events", "get", "NOPE", "1"}, "no stream \"NOPE\""},
		{[]string{"events", "get", "ORDER", "99"}, "has no message 99"},
		{[]string{"events", "tail", "a.>", "b.>"}, "at most one SUBJECT"},
	} {
		out, err := cmd(tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s = %v (%q), want an error containing %q", strings.Join(tt.args, " "), err, out, tt.want)
		}
	}
}

// checkEvent checks one printed event: its headers, its type and its
// payload decoded to protojson.
func checkEvent(t *testing.T, what, printed, stream string) {
	t.Helper()
	var got struct {
		Stream  string              `json:"stream"`
		Seq     uint64              `json:"seq"`
		Subject string              `json:"subject"`
		Headers map[string][]string `json:"headers"`
		Type    string              `json:"type"`
		Event   struct {
			EventID string `json:"eventId"`
			Status  string `json:"status"`
			Order   struct {
				ID       string `json:"id"`
				Note     string `json:"note"`
				Revision string `json:"revision"`
			} `json:"order"`
		} `json:"event"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(printed), &got); err != nil {
		t.Fatalf("%s printed %q: not one JSON object: %v", what, printed, err)
	}
	const typ = "pizzashop.order.v1.OrderStatusChanged"
	if got.Error != "" || got.Type != typ || got.Subject != "order.placed.o1" {
		t.Errorf("%s: type %q, subject %q, error %q; want %s on order.placed.o1, decoded", what, got.Type, got.Subject, got.Error, typ)
	}
	for k, want := range map[string]string{
		"Content-Type":         "application/protobuf; proto=" + typ,
		"Pizzashop-Event-Type": typ,
		"Nats-Msg-Id":          "evt-1",
	} {
		if v := got.Headers[k]; len(v) != 1 || v[0] != want {
			t.Errorf("%s: header %s = %q, want %q", what, k, v, want)
		}
	}
	e := got.Event
	if e.EventID != "evt-1" || e.Status != "ORDER_STATUS_PLACED" || e.Order.ID != "o1" || e.Order.Note != "ring <twice>" || e.Order.Revision != "7" {
		t.Errorf("%s: event = %+v, want evt-1, ORDER_STATUS_PLACED, order o1 with its note and revision 7", what, e)
	}
	if stream != "" && (got.Stream != stream || got.Seq != 1) {
		t.Errorf("%s: stream %q seq %d, want %s 1", what, got.Stream, got.Seq, stream)
	}
}

func TestDecodeEventWithoutType(t *testing.T) {
	for _, tt := range []struct {
		name string
		h    nats.Header
		want string
	}{
		{"no headers", nil, "cannot tell what the payload is"},
		{"other content type", nats.Header{"Content-Type": {"application/json"}}, "is not application/protobuf"},
		{"unknown message", nats.Header{"Content-Type": {"application/protobuf; proto=x.y.Z"}}, "unknown message type \"x.y.Z\""},
		{"not that message", nats.Header{"Pizzashop-Event-Type": {"pizzashop.order.v1.OrderStatusChanged"}}, "payload is not a pizzashop.order.v1.OrderStatusChanged"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ev := decodeEvent("order.placed.o1", tt.h, []byte{0xff, 0xff})
			if !strings.Contains(ev.Error, tt.want) || ev.DataBase64 != "//8=" || ev.Event != nil {
				t.Errorf("decodeEvent = error %q, data %q, event %s; want error containing %q and the data in base64", ev.Error, ev.DataBase64, ev.Event, tt.want)
			}
		})
	}
}

// gate is a writer that holds every write until it is opened.
type gate struct{ open chan struct{} }

func (g gate) Write(p []byte) (int, error) { <-g.open; return len(p), nil }

// TestTailSaysWhatItDropped: a burst faster than the output can take is
// dropped by NATS, and tail says how many instead of leaving a silent gap.
func TestTailSaysWhatItDropped(t *testing.T) {
	url := devstack.NATS(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := gate{open: make(chan struct{})}
	var stderr lockedBuffer
	done := make(chan error, 1)
	go func() { done <- tailEvents(ctx, nc, []string{"burst.>"}, 200, eventWriter{w: out}, &stderr) }()
	for !strings.Contains(stderr.String(), "following") {
		time.Sleep(10 * time.Millisecond)
	}
	pub, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i := range 3000 {
		if err := pub.Publish(fmt.Sprintf("burst.%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // every message has reached the tail's connection
		t.Fatal(err)
	}
	close(out.open)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "events dropped") {
		t.Errorf("tail of a burst the output could not take printed %q, want how many events it dropped", stderr.String())
	}
}
