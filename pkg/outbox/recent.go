package outbox

import (
	"sync"
)

// Recent keeps the documents a store wrote last, as it wrote them, so that
// the next change of one of them starts from memory instead of a read: an
// order accepted a few milliseconds after it was placed costs one write,
// not a read and a write. The write stays guarded by the revision, so a
// copy made stale by another replica's write only costs a retry from a
// fresh read; and a change that a stale copy refuses is tried again from a
// fresh read before the refusal stands. It is for writes only: reads that
// answer callers go to the store, which another replica may have changed.
//
// A nil *Recent keeps nothing.
type Recent[T any] struct {
	clone func(T) T

	mu   sync.Mutex
	docs map[any]recentDoc[T]
	ring []any
	next int
}

type recentDoc[T any] struct {
	v  T
	st State
}

// NewRecent keeps up to n documents; clone copies one deeply, as a change
// must not reach the kept copy.
func NewRecent[T any](n int, clone func(T) T) *Recent[T] {
	return &Recent[T]{clone: clone, docs: make(map[any]recentDoc[T], n), ring: make([]any, n)}
}

// Put keeps v, document id as written with outbox state st.
func (r *Recent[T]) Put(id any, v T, st State) {
	if r == nil {
		return
	}
	v = r.clone(v)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.docs[id]; !ok {
		if old := r.ring[r.next]; old != nil {
			delete(r.docs, old)
		}
		r.ring[r.next] = id
		r.next = (r.next + 1) % len(r.ring)
	}
	r.docs[id] = recentDoc[T]{v, st}
}

// get returns a copy of document id, if kept.
func (r *Recent[T]) get(id any) (T, State, bool) {
	var zero T
	if r == nil {
		return zero, State{}, false
	}
	r.mu.Lock()
	d, ok := r.docs[id]
	r.mu.Unlock()
	if !ok {
		return zero, State{}, false
	}
	return r.clone(d.v), d.st, true
}

// drop forgets document id: the copy was stale.
func (r *Recent[T]) drop(id any) {
	if r == nil {
		return
	}
	r.mu.Lock()
	delete(r.docs, id)
	r.mu.Unlock()
}
