package kitchenapi

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	"github.com/pizzashop/pizzashop/services/kitchen/internal/kitchen"
	"google.golang.org/protobuf/proto"
)

// queue is the kitchen's open tickets (queued or baking), kept in memory for
// estimates, the queue gauge and the displays. It is read from the store at
// first use, again when ticket events may have been missed (QueueStale) and
// hourly, and kept current meanwhile by every ticket event, this replica's
// and the others'. So an order's estimate and a display that opens read
// nothing from the store.
//
// The displays follow the queue, not NATS: each gets its snapshot and is
// registered for the changes that follow in one hold of the lock, and every
// change the queue applies is handed to it under that lock. So every change
// is either in a display's snapshot or sent after it, however late the
// queue's subscription runs.
type queue struct {
	mu   sync.Mutex
	open map[string]*kitchenv1.Ticket // nil until read
	at   time.Time                    // when it was read
	// closed remembers the revisions of tickets lately closed, so that a
	// late event of an earlier step does not open them again.
	closed closedRing
	// loading is not nil while a read is under way; events that arrive
	// meanwhile wait in pending and apply on top of what was read.
	loading chan struct{}
	loadAt  time.Time // when the read under way began
	pending []*kitchenv1.Ticket
	// stale counts the calls of QueueStale: a read that began before one
	// may have missed what it says was missed, and is not kept.
	stale int
	// displays are the open display streams, handed every change applied.
	displays map[*display]struct{}
}

// queueRecount is how often the queue is read again from the store even
// when no event can have been missed: a last safety net, rare because on
// the embedded store the read goes through every ticket ever made.
const queueRecount = time.Hour

// QueueStale drops the queue kept in memory, so that it is read again from
// the store, and has every open display start over from a fresh snapshot:
// call it whenever ticket events may have been missed (NATS
// reconnected, or cut the subscriber off as too slow).
func (s *Server) QueueStale() {
	q := &s.queue
	q.mu.Lock()
	defer q.mu.Unlock()
	q.open = nil
	q.stale++
	q.restartDisplaysLocked()
}

// QueueLength returns how many tickets are queued or baking.
func (s *Server) QueueLength(ctx context.Context) (int, error) {
	n := 0
	err := s.withQueue(ctx, func(open map[string]*kitchenv1.Ticket) { n = len(open) })
	return n, err
}

// snapshot returns up to limit open tickets in arrival order for display
// d, and has d handed every change applied after them, until unwatch.
func (s *Server) snapshot(ctx context.Context, d *display, limit int) ([]*kitchenv1.Ticket, error) {
	var out []*kitchenv1.Ticket
	err := s.withQueue(ctx, func(open map[string]*kitchenv1.Ticket) {
		out = make([]*kitchenv1.Ticket, 0, len(open))
		for _, t := range open {
			out = append(out, t)
		}
		s.queue.watchLocked(d)
	})
	slices.SortFunc(out, func(a, b *kitchenv1.Ticket) int {
		return cmp.Or(a.GetOrderTime().AsTime().Compare(b.GetOrderTime().AsTime()), cmp.Compare(a.GetId(), b.GetId()))
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, err
}

// withQueue calls fn with the open tickets, read from the store first when
// they are not known or are due again. fn must not keep the map.
func (s *Server) withQueue(ctx context.Context, fn func(map[string]*kitchenv1.Ticket)) error {
	q := &s.queue
	for {
		q.mu.Lock()
		if q.open != nil && s.now().Sub(q.at) <= queueRecount {
			fn(q.open)
			q.mu.Unlock()
			return nil
		}
		if wait := q.loading; wait != nil {
			q.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		done := make(chan struct{})
		q.loading, q.loadAt, q.pending = done, s.now(), nil
		stale := q.stale
		q.mu.Unlock()

		read, err := s.store.Open(ctx, []kitchen.Status{kitchen.StatusQueued, kitchen.StatusBaking})

		q.mu.Lock()
		q.loading = nil
		close(done)
		pending := q.pending
		q.pending = nil
		if err != nil {
			// A queue read before (an hourly read failed) is still good
			// with the events that arrived meanwhile.
			if q.open != nil {
				for _, t := range pending {
					q.applyLocked(t)
				}
			}
			q.mu.Unlock()
			return err
		}
		if q.stale != stale {
			q.mu.Unlock()
			continue // events may have been missed during the read: read again
		}
		open := make(map[string]*kitchenv1.Ticket, len(read))
		for _, t := range read {
			open[t.ID] = toProto(t)
		}
		q.open, q.at = open, s.now()
		for _, t := range pending {
			q.applyLocked(t)
		}
		// The displays were sent the queue this read replaces, which may
		// differ from it by more than the events above (the read is there
		// to heal what events missed): they start over from this one.
		q.restartDisplaysLocked()
		q.mu.Unlock()
	}
}

// TicketChanged keeps the queue current with a ticket event of any
// replica: pass every kitchen.<status>.<id> message.
func (s *Server) TicketChanged(data []byte) {
	var ev kitchenv1.TicketStatusChanged
	if proto.Unmarshal(data, &ev) != nil || ev.GetTicket().GetId() == "" {
		return
	}
	t := ev.GetTicket()
	if s.queue.unknownBefore(t, ev.GetOccurTime().AsTime()) {
		// An event that would open a ticket the queue, read after it,
		// does not hold: most often one a relay published again after a
		// crash, of a ticket that has closed since (and this kitchen,
		// restarted, has forgotten closing). The store says where it is;
		// when it does not answer, the event applies as it came.
		if cur := s.newerInStore(context.Background(), t); cur != nil {
			t = cur
		}
	}
	s.ticketSeen(t)
}

// replayCheckTimeout bounds the store read that checks an event from
// before the queue was read.
const replayCheckTimeout = time.Second

// newerInStore returns ticket t as the store has it now when that is past
// t's revision, else nil: also when the store does not answer within
// replayCheckTimeout, and the caller then goes on with t as it came.
func (s *Server) newerInStore(ctx context.Context, t *kitchenv1.Ticket) *kitchenv1.Ticket {
	ctx, cancel := context.WithTimeout(ctx, replayCheckTimeout)
	defer cancel()
	cur, err := s.store.Get(ctx, t.GetId())
	if err != nil || cur.Revision <= t.GetRevision() {
		return nil
	}
	return toProto(cur)
}

// unknownBefore reports whether t, a change made at at, would open a
// ticket that the queue knows nothing of although the queue was read, or
// is being read, from a start after at.
func (q *queue) unknownBefore(t *kitchenv1.Ticket, at time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !kitchen.Status(t.GetStatus()).Open() || q.closed.revision(t.GetId()) != 0 {
		return false
	}
	switch {
	case q.loading != nil:
		return at.Before(q.loadAt)
	case q.open != nil:
		_, known := q.open[t.GetId()]
		return !known && at.Before(q.at)
	}
	return false // not read yet: an open event is not kept (ticketSeen)
}

// ticketSeen records a ticket as it now is.
func (s *Server) ticketSeen(t *kitchenv1.Ticket) {
	q := &s.queue
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.loading != nil:
		q.pending = append(q.pending, t)
	case q.open != nil:
		q.applyLocked(t)
	case !kitchen.Status(t.GetStatus()).Open() && q.closed.revision(t.GetId()) < t.GetRevision():
		// Not read yet: the first read sees the ticket as it is, but a
		// repeat of an earlier event (a relay publishing again) must not
		// open it afterwards.
		q.closed.add(t.GetId(), t.GetRevision())
	}
}

// applyLocked puts t in the queue, or takes it out, unless what the queue
// knows of it is newer, and hands it to the displays when it does.
func (q *queue) applyLocked(t *kitchenv1.Ticket) {
	id, rev := t.GetId(), t.GetRevision()
	if cur, ok := q.open[id]; ok && cur.GetRevision() >= rev {
		return
	}
	if q.closed.revision(id) >= rev {
		return
	}
	if kitchen.Status(t.GetStatus()).Open() {
		q.open[id] = t
	} else {
		delete(q.open, id)
		q.closed.add(id, rev)
	}
	for d := range q.displays {
		select {
		case d.changes <- t:
		default:
			d.startOver() // too far behind to wait for
		}
	}
}

// display is an open display stream as the queue knows it.
type display struct {
	// changes gets every ticket the queue applies after the display's
	// snapshot, as applied (closed ones too: the display must see a
	// ticket leave).
	changes chan *kitchenv1.Ticket
	// restart says the display must start over from a fresh snapshot: it
	// fell displayBuffer changes behind, or the queue was read again, or
	// dropped as missing events.
	restart chan struct{}
}

func newDisplay() *display {
	return &display{changes: make(chan *kitchenv1.Ticket, displayBuffer), restart: make(chan struct{}, 1)}
}

func (d *display) startOver() {
	select {
	case d.restart <- struct{}{}:
	default: // already told
	}
}

// watchLocked registers d for the changes applied from now on, which
// follow the snapshot it is being given: what d was handed before, and
// any call to start over, predate that snapshot and are dropped.
func (q *queue) watchLocked(d *display) {
	for len(d.changes) > 0 { // only d's stream, here, receives from it
		<-d.changes
	}
	select {
	case <-d.restart:
	default:
	}
	if q.displays == nil {
		q.displays = make(map[*display]struct{})
	}
	q.displays[d] = struct{}{}
}

// unwatch ends what watchLocked began, when d's stream ends.
func (q *queue) unwatch(d *display) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.displays, d)
}

func (q *queue) restartDisplaysLocked() {
	for d := range q.displays {
		d.startOver()
	}
}

// closedRing remembers the revision at which the most recent tickets
// closed.
type closedRing struct {
	revs map[string]int64
	ring []string
	next int
}

// closedKept is how many closed tickets the queue remembers: far more than
// events can be late by.
const closedKept = 4096

func (c *closedRing) revision(id string) int64 { return c.revs[id] }

func (c *closedRing) add(id string, rev int64) {
	if c.revs == nil {
		c.revs, c.ring = make(map[string]int64, closedKept), make([]string, closedKept)
	}
	if _, ok := c.revs[id]; !ok {
		if old := c.ring[c.next]; old != "" {
			delete(c.revs, old)
		}
		c.ring[c.next] = id
		c.next = (c.next + 1) % len(c.ring)
	}
	c.revs[id] = rev
}
