package natsx

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ackFloor is where a consumer stands in its stream, as far as this process
// knows: the stream sequence at and below which every message the consumer
// was given has been acknowledged or terminated. When NATS loses the
// consumer while its stream keeps its messages (someone deleted the
// consumer), Consume declares it again from the message after the floor,
// not from the start of the stream, which may hold a day of events.
//
// There is one ackFloor for each declaration of the consumer. While every
// delivery of the consumer since it was declared came to this process, and
// nothing was left unacknowledged from before, the floor is tracked here as
// messages are received and finished: it is the highest sequence received,
// or the one below the oldest received and unfinished (failed, being
// handled, waiting for its worker). Once a delivery is missed (another
// replica shares the durable, or the client dropped one), the messages this
// process was never given may be unfinished, so the floor is instead the
// server's own ack floor, read when the consumer was declared and every
// floorSample after that: older, but true for every replica.
type ackFloor struct {
	// created is when the stream was created, as it said when the
	// consumer was declared: a stream created again numbers its messages
	// anew, and the floor means nothing in it.
	created time.Time
	// consumerCreated identifies the declaration of the consumer, so that
	// a sample of another declaration's ack floor is not taken for this one.
	consumerCreated time.Time

	mu sync.Mutex
	// complete: every delivery since the declaration came here, in
	// order, and open holds every message received and not finished.
	complete bool
	next     uint64              // consumer sequence of the next delivery, while complete
	top      uint64              // highest stream sequence received, or the floor at declaration
	open     map[uint64]struct{} // stream sequences received and not finished, while complete
	server   uint64              // the server's ack floor, last seen
}

// maxOpen bounds the messages tracked as unfinished. There are at most
// maxAckPending of them, and a few more on their way, unless the process
// misses acknowledgements; past maxOpen the floor falls back on the
// server's.
const maxOpen = 4 * maxAckPending

// floorSample is how often the server's ack floor is read for a consumer
// whose floor cannot be tracked here (more than one replica consumes it).
var floorSample = 10 * time.Second

// newAckFloor starts the floor of a consumer just declared on a stream
// created at streamCreated.
func newAckFloor(streamCreated time.Time, info *jetstream.ConsumerInfo) *ackFloor {
	f := &ackFloor{created: streamCreated}
	if info == nil {
		return f
	}
	f.consumerCreated = info.Created
	f.server = info.AckFloor.Stream
	// Messages given out and unacknowledged before this declaration (by a
	// process that stopped, or another replica) are unknown here.
	if info.NumAckPending == 0 {
		f.complete = true
		f.next = info.Delivered.Consumer + 1
		f.top = info.AckFloor.Stream
		f.open = map[uint64]struct{}{}
	}
	return f
}

// received records the delivery of a message, with its metadata (nil when
// it has none).
func (f *ackFloor) received(md *jetstream.MsgMetadata) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.complete {
		return
	}
	// Every delivery, redeliveries too, takes the consumer's next
	// sequence: a gap is a delivery made elsewhere.
	if md == nil || md.Sequence.Consumer != f.next || len(f.open) >= maxOpen {
		f.complete, f.open = false, nil
		return
	}
	f.next++
	f.open[md.Sequence.Stream] = struct{}{}
	f.top = max(f.top, md.Sequence.Stream)
}

// finished records that message seq was acknowledged or terminated.
func (f *ackFloor) finished(seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.open, seq)
}

// incomplete reports whether the floor is the server's, to be sampled.
func (f *ackFloor) incomplete() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.complete
}

// sampled records the server's view of the consumer.
func (f *ackFloor) sampled(info *jetstream.ConsumerInfo) {
	if !info.Created.Equal(f.consumerCreated) {
		return // declared again meanwhile
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.server = max(f.server, info.AckFloor.Stream)
}

// floor is the stream sequence at and below which every message of the
// consumer was acknowledged or terminated; 0 when none is known.
func (f *ackFloor) floor() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.complete {
		return f.server
	}
	floor := f.top
	for seq := range f.open {
		floor = min(floor, seq-1)
	}
	return floor
}

// resumeAt is the stream sequence a consumer declared again is to start
// at, given the stream as it is now; 0 to start at the stream's first
// message. It is the one after the floor while the stream still holds it:
// not when the stream was created again (NATS came back without its
// storage and numbers messages from 1 again) or lost messages after the
// floor (purged, or expired), which start from the beginning.
func (f *ackFloor) resumeAt(stream *jetstream.StreamInfo) uint64 {
	if f == nil || stream == nil {
		return 0
	}
	floor := f.floor()
	if floor == 0 || !stream.Created.Equal(f.created) ||
		stream.State.LastSeq < floor || stream.State.FirstSeq > floor+1 {
		return 0
	}
	return floor + 1
}
