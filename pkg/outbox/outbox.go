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
//	revision   int64    bumped by every write of the document
//	outbox     []Entry  the events of its latest writes, published or not
//	outbox_at  date     when the latest write that added events began
//
// Published entries are not cleared document by document, which would cost
// a second write for every write. Each relay keeps instead a mark, one small
// document in outbox_marks: every write it was told of that began before the
// mark's time has its events in JetStream. After a crash, the relay that
// starts under the same name (or, for one that never comes back, any relay
// once the mark is stale) publishes again what the documents written since
// the mark hold: an indexed range query on outbox_at, run at once and
// again after the grace a write of unknown outcome gets (30 s), since a
// write the dead run sent may land after the first. A write drops the
// entries it finds in a document once they are known to be published, so an
// outbox holds a few entries at most.
//
// A write whose answer was lost may have landed or not: the relay reads its
// document back once it can no longer be on its way, holding the mark at
// it meanwhile, and keeps one such read per document however often callers
// retry. Its memory is bounded through outages: past 100,000 writes waiting
// for JetStream, or 10,000 documents waiting for a read back, it forgets
// them and holds its mark at the earliest instead, then runs the same range
// query from there once the outage is over. Nothing is lost; the events
// wait for the scan.
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
	FieldAt       = "outbox_at"
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
