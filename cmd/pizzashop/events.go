package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/pizzashop/pizzashop/pkg/config"
	"github.com/pizzashop/pizzashop/pkg/natsx"

	// The event messages, registered so that events decode by their type.
	_ "github.com/pizzashop/pizzashop/proto/pizzashop/delivery/v1"
	_ "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	_ "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	_ "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
)

// eventSubjects are the subjects tail follows when given none: every
// stream's (the catalogue at /docs lists them).
var eventSubjects = []string{"menu.>", "order.>", "kitchen.>", "delivery.>", "deadletter.>"}

// runEvents prints events decoded to JSON, with their headers.
//
//	pizzashop events tail [SUBJECT]   live events, one JSON object a line
//	pizzashop events get STREAM SEQ   one stored event
//
// The payload is decoded by the message its Content-Type header names
// (falling back to Pizzashop-Event-Type); one it cannot decode is printed
// as base64 with the reason.
func runEvents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return usageErrorf("events: want \"tail [SUBJECT]\" or \"get STREAM SEQ\"")
	}
	verb, rest := args[0], args[1:]
	fs := newFlagSet("events "+verb, "pizzashop events tail [SUBJECT] | get STREAM SEQ [--nats URL] [--indent]", stderr)
	url := fs.String("nats", defaultNATSURL(), natsFlagUsage)
	indent := fs.Bool("indent", verb == "get", "indent the JSON (default for get)")
	count := fs.Int("count", 0, "tail: stop after this many events (0: until interrupted)")
	// Flags may come before or after the arguments.
	pos, err := parseArgs(fs, rest)
	if err != nil {
		return err
	}
	var (
		stream string
		seq    uint64
	)
	switch verb {
	case "tail":
		if len(pos) > 1 {
			return usageErrorf("events tail: want at most one SUBJECT, got %q", pos)
		}
		if *count < 0 {
			return usageErrorf("events tail: --count %d: want 0 or more", *count)
		}
	case "get":
		if len(pos) != 2 {
			return usageErrorf("events get: want STREAM SEQ, for example: events get ORDER 12")
		}
		n, err := strconv.ParseUint(pos[1], 10, 64)
		if err != nil || n == 0 {
			return usageErrorf("events get: %q is not a stream sequence number (1 or more)", pos[1])
		}
		stream, seq = pos[0], n
	default:
		return usageErrorf("events: unknown verb %q: want tail or get", verb)
	}

	nc, err := nats.Connect(natsURL(*url), nats.Name("pizzashop events"), nats.Timeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", config.RedactURL(*url), err)
	}
	defer nc.Close()
	out := eventWriter{w: stdout, indent: *indent}
	if verb == "get" {
		return getEvent(ctx, nc, stream, seq, out)
	}
	subjects := eventSubjects
	if len(pos) == 1 {
		subjects = pos
	}
	return tailEvents(ctx, nc, subjects, *count, out, stderr)
}

func getEvent(ctx context.Context, nc *nats.Conn, stream string, seq uint64, out eventWriter) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("no stream %q (the shop's are MENU, ORDER, KITCHEN, DELIVERY and DEADLETTER)", stream)
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	m, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("stream %s has no message %d (deleted, expired or not written yet)", stream, seq)
	}
	if err != nil {
		return fmt.Errorf("stream %s message %d: %w", stream, seq, err)
	}
	ev := decodeEvent(m.Subject, m.Header, m.Data)
	ev.Stream, ev.Seq, ev.Time = stream, m.Sequence, m.Time.UTC().Format(time.RFC3339Nano)
	return out.write(ev)
}

func tailEvents(ctx context.Context, nc *nats.Conn, subjects []string, count int, out eventWriter, stderr io.Writer) error {
	msgs := make(chan *nats.Msg, 256)
	var subs []*nats.Subscription
	for _, s := range subjects {
		sub, err := nc.ChanSubscribe(s, msgs)
		if err != nil {
			return fmt.Errorf("subscribe %q: %w", s, err)
		}
		defer func() { _ = sub.Unsubscribe() }()
		subs = append(subs, sub)
	}
	// A burst faster than the output can take is dropped by NATS (this is
	// a live view, not a consumer); say so rather than leave a silent gap.
	reported := 0
	sayDropped := func() {
		n := 0
		for _, sub := range subs {
			d, _ := sub.Dropped()
			n += d
		}
		if n > reported {
			fmt.Fprintf(stderr, "pizzashop events: %d events dropped in all: the output could not keep up (events get STREAM SEQ reads any of them back)\n", n)
			reported = n
		}
	}
	defer sayDropped()
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	fmt.Fprintf(stderr, "following %s (Ctrl-C to stop)\n", strings.Join(subjects, " "))
	for n := 0; count == 0 || n < count; n++ {
		select {
		case <-ctx.Done():
			return nil
		case m := <-msgs:
			if err := out.write(decodeEvent(m.Subject, m.Header, m.Data)); err != nil {
				return err
			}
			sayDropped()
		}
	}
	return nil
}

// event is what the command prints for one message.
type event struct {
	Stream  string              `json:"stream,omitempty"`
	Seq     uint64              `json:"seq,omitempty"`
	Time    string              `json:"time,omitempty"`
	Subject string              `json:"subject"`
	Headers map[string][]string `json:"headers"`
	Type    string              `json:"type,omitempty"`
	Event   json.RawMessage     `json:"event,omitempty"`
	// DataBase64 and Error are set when the payload could not be decoded.
	DataBase64 string `json:"data_base64,omitempty"`
	Error      string `json:"error,omitempty"`
}

// decodeEvent decodes data by the message its headers name.
func decodeEvent(subject string, h nats.Header, data []byte) event {
	ev := event{Subject: subject, Headers: map[string][]string(h)}
	if ev.Headers == nil {
		ev.Headers = map[string][]string{}
	}
	name, err := eventType(h)
	ev.Type = name
	if err == nil {
		ev.Event, err = decodePayload(name, data)
	}
	if err != nil {
		ev.Error = err.Error()
		ev.DataBase64 = base64.StdEncoding.EncodeToString(data)
	}
	return ev
}

// eventType returns the message name an event's headers give.
func eventType(h nats.Header) (string, error) {
	if ct := h.Get(natsx.HeaderContentType); ct != "" {
		media, params, err := mime.ParseMediaType(ct)
		if err != nil {
			return "", fmt.Errorf("header %s %q: %w", natsx.HeaderContentType, ct, err)
		}
		if media != "application/protobuf" || params["proto"] == "" {
			return "", fmt.Errorf("header %s %q is not application/protobuf; proto=<message>", natsx.HeaderContentType, ct)
		}
		return params["proto"], nil
	}
	if t := h.Get(natsx.HeaderEventType); t != "" {
		return t, nil
	}
	return "", fmt.Errorf("no %s or %s header: cannot tell what the payload is", natsx.HeaderContentType, natsx.HeaderEventType)
}

// decodePayload decodes data as the protobuf message name into protojson.
func decodePayload(name string, data []byte) (json.RawMessage, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(name))
	if err != nil {
		return nil, fmt.Errorf("unknown message type %q", name)
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("payload is not a %s: %w", name, err)
	}
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	// protojson varies its spacing on purpose; settle it.
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// eventWriter prints events as JSON, one a line or indented.
type eventWriter struct {
	w      io.Writer
	indent bool
}

func (o eventWriter) write(ev event) error {
	enc := json.NewEncoder(o.w)
	enc.SetEscapeHTML(false)
	if o.indent {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(ev)
}
