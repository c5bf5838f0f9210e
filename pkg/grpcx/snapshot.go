package grpcx

import (
	"context"
	"sync"
	"time"
)

// Snapshots shares store reads among live streams. A stream that starts, or
// falls behind, needs the current state (the open tickets, say); when many
// ask at once, one read serves them all instead of one read, and one pooled
// store connection, per stream.
//
// Every caller gets a result read entirely after it asked, so a stream that
// subscribed to changes before asking misses nothing: a caller that arrives
// while a read is under way waits for the next one, which starts when the
// current one ends. So at most one read per key is in flight.
//
// The result is shared: callers must not change it.
type Snapshots[K comparable, T any] struct {
	load    func(ctx context.Context, key K) (T, error)
	timeout time.Duration

	mu      sync.Mutex
	running map[K]*pending[T] // keys with a read in flight, and who waits for the next
}

// pending is the read the callers that arrived during the current one wait
// for; nil when nobody does.
type pending[T any] struct{ next *flight[T] }

type flight[T any] struct {
	done chan struct{}
	val  T
	err  error
}

// NewSnapshots returns Snapshots reading with load, each read bounded by
// timeout (it serves many callers, so no caller's context bounds it).
func NewSnapshots[K comparable, T any](timeout time.Duration, load func(ctx context.Context, key K) (T, error)) *Snapshots[K, T] {
	return &Snapshots[K, T]{load: load, timeout: timeout, running: map[K]*pending[T]{}}
}

// Get returns a snapshot for key read after the call began.
func (s *Snapshots[K, T]) Get(ctx context.Context, key K) (T, error) {
	s.mu.Lock()
	var f *flight[T]
	if p, ok := s.running[key]; ok {
		if p.next == nil {
			p.next = &flight[T]{done: make(chan struct{})}
		}
		f = p.next
	} else {
		f = &flight[T]{done: make(chan struct{})}
		s.running[key] = &pending[T]{}
		go s.run(key, f)
	}
	s.mu.Unlock()
	select {
	case <-f.done:
		return f.val, f.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// run reads for f, then for whoever arrived meanwhile, until nobody waits.
func (s *Snapshots[K, T]) run(key K, f *flight[T]) {
	for f != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		f.val, f.err = s.load(ctx, key)
		cancel()
		close(f.done)

		s.mu.Lock()
		p := s.running[key]
		f, p.next = p.next, nil
		if f == nil {
			delete(s.running, key)
		}
		s.mu.Unlock()
	}
}
