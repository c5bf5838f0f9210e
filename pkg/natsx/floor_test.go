package natsx

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// deliver records the delivery of stream message sseq as consumer delivery dseq.
func deliver(f *ackFloor, dseq, sseq uint64) {
	f.received(&jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Consumer: dseq, Stream: sseq}})
}

func TestAckFloorTracksFinishedMessages(t *testing.T) {
	created := time.Now()
	f := newAckFloor(created, &jetstream.ConsumerInfo{Created: created})
	// The consumer's filter skips stream messages 3, 4 and 6.
	for i, seq := range []uint64{1, 2, 5, 7, 8} {
		deliver(f, uint64(i+1), seq)
	}
	check := func(want uint64) {
		t.Helper()
		if got := f.floor(); got != want {
			t.Errorf("floor = %d, want %d", got, want)
		}
	}
	check(0)
	// Messages finish out of order across workers.
	f.finished(2)
	f.finished(7)
	check(0)
	f.finished(1)
	check(4)
	deliver(f, 6, 5) // a redelivery of 5, which failed
	f.finished(5)
	check(7)
	f.finished(8)
	check(8)
}

func TestAckFloorFallsBackOnTheServers(t *testing.T) {
	created := time.Now()
	tests := []struct {
		name string
		info jetstream.ConsumerInfo
		// deliveries as consumer and stream sequence pairs
		deliveries [][2]uint64
	}{
		{"delivery made elsewhere", jetstream.ConsumerInfo{}, [][2]uint64{{1, 1}, {3, 3}}},
		{"unacknowledged at declaration", jetstream.ConsumerInfo{NumAckPending: 1, Delivered: jetstream.SequenceInfo{Consumer: 2, Stream: 2}}, [][2]uint64{{3, 3}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.info.Created = created
			tt.info.AckFloor.Stream = 0
			f := newAckFloor(created, &tt.info)
			for _, d := range tt.deliveries {
				deliver(f, d[0], d[1])
				f.finished(d[1])
			}
			if got := f.floor(); got != 0 || !f.incomplete() {
				t.Errorf("floor = %d, incomplete %v; want the server's, 0", got, f.incomplete())
			}
			f.sampled(&jetstream.ConsumerInfo{Created: created, AckFloor: jetstream.SequenceInfo{Stream: 2}})
			f.sampled(&jetstream.ConsumerInfo{Created: created.Add(time.Second), AckFloor: jetstream.SequenceInfo{Stream: 9}})
			if got := f.floor(); got != 2 {
				t.Errorf("floor = %d after samples, want 2: the other declaration's is not this one's", got)
			}
		})
	}
}

func TestAckFloorBounded(t *testing.T) {
	f := newAckFloor(time.Now(), &jetstream.ConsumerInfo{AckFloor: jetstream.SequenceInfo{Stream: 3}})
	for i := range uint64(maxOpen + 1) {
		deliver(f, i+1, i+4)
	}
	if !f.incomplete() || len(f.open) != 0 {
		t.Errorf("incomplete %v with %d open; want the server's floor past %d unfinished", f.incomplete(), len(f.open), maxOpen)
	}
	if got := f.floor(); got != 3 {
		t.Errorf("floor = %d, want the server's, 3", got)
	}
}

func TestAckFloorResumeAt(t *testing.T) {
	created := time.Now()
	floorAt := func(seq uint64) *ackFloor {
		f := newAckFloor(created, &jetstream.ConsumerInfo{AckFloor: jetstream.SequenceInfo{Stream: seq}})
		return f
	}
	stream := func(created time.Time, first, last uint64) *jetstream.StreamInfo {
		return &jetstream.StreamInfo{Created: created, State: jetstream.StreamState{FirstSeq: first, LastSeq: last}}
	}
	tests := []struct {
		name   string
		floor  *ackFloor
		stream *jetstream.StreamInfo
		want   uint64
	}{
		{"stream holds the floor", floorAt(5), stream(created, 1, 10), 6},
		{"nothing after the floor yet", floorAt(5), stream(created, 1, 5), 6},
		{"purged up to the floor", floorAt(5), stream(created, 6, 5), 6},
		{"first declaration", nil, stream(created, 1, 10), 0},
		{"nothing finished", floorAt(0), stream(created, 1, 10), 0},
		{"stream created again", floorAt(5), stream(created.Add(time.Second), 1, 10), 0},
		{"stream numbers from below the floor", floorAt(5), stream(created, 1, 4), 0},
		{"messages after the floor lost", floorAt(5), stream(created, 7, 10), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.floor.resumeAt(tt.stream); got != tt.want {
				t.Errorf("resumeAt = %d, want %d", got, tt.want)
			}
		})
	}
}
