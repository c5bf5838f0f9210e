// Package outbox makes sure that the event a state change causes is never
// lost. The event is stored inside the changed document, in the same write
// as the change (the store has no multi-document transactions), and a Relay
// publishes it to JetStream and retries until JetStream acknowledges it. A
// crash between the write and the publish delays the event; it does not lose
// it. Events may be published more than once (after a crash, or by two
// relays); the event id sent as Nats-Msg-Id collapses the repeats, and
// consumers are idempotent besides.
//
// A document that carries an outbox has three fields besides its own:
//
//	revision        int64    bumped by every write of the document
//	outbox          []Entry  events not yet acknowledged
//	outbox_pending  bool     true while outbox is not empty
package outbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/protobuf/proto"
)

// Document field names used by the relay.
const (
	FieldRevision = "revision"
	FieldEntries  = "outbox"
	FieldPending  = "outbox_pending"
)

// Entry is one event waiting in a document for its publish.
type Entry struct {
	ID         string            `bson:"id"`
	Subject    string            `bson:"subject"`
	Type       string            `bson:"type"`
	Data       []byte            `bson:"data"`
	Trace      map[string]string `bson:"trace,omitempty"`
	CreateTime time.Time         `bson:"create_time"`
}

// NewEntry encodes m as an entry for subject. The trace context of ctx is
// kept with it, so the publish, whenever it happens, joins the trace of the
// request that caused the event.
func NewEntry(ctx context.Context, subject, eventID string, m proto.Message) (Entry, error) {
	data, err := proto.Marshal(m)
	if err != nil {
		return Entry{}, fmt.Errorf("outbox entry %s: %w", subject, err)
	}
	carrier := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, carrier)
	return Entry{
		ID:         eventID,
		Subject:    subject,
		Type:       string(proto.MessageName(m)),
		Data:       data,
		Trace:      carrier,
		CreateTime: time.Now().UTC(),
	}, nil
}

// NewID returns a random 128-bit event id in hex.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
