package kitchenapi

import (
	"fmt"
	"slices"
	"testing"
	"time"

	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
)

func ticket(id string, st kitchenv1.TicketStatus, rev int64) *kitchenv1.Ticket {
	return &kitchenv1.Ticket{Id: id, Status: st, Revision: rev}
}

// The ticket statuses these tests move tickets through, in order.
const (
	queued = kitchenv1.TicketStatus_TICKET_STATUS_QUEUED
	baking = kitchenv1.TicketStatus_TICKET_STATUS_BAKING
	ready  = kitchenv1.TicketStatus_TICKET_STATUS_READY
)

func TestQueueAppliesEventsInRevisionOrder(t *testing.T) {
	q := queue{open: map[string]*kitchenv1.Ticket{}}
	steps := []struct {
		t    *kitchenv1.Ticket
		want []string // open ticket ids after the event
	}{
		{ticket("a", queued, 1), []string{"a"}},
		{ticket("b", queued, 1), []string{"a", "b"}},
		{ticket("a", ready, 3), []string{"b"}},  // a closes, skipping BAKING's event
		{ticket("a", baking, 2), []string{"b"}}, // ...which comes late: a stays closed
		{ticket("b", baking, 2), []string{"b"}}, // b moves on
		{ticket("b", queued, 1), []string{"b"}}, // b's first event again: b stays BAKING
		{ticket("c", ready, 3), []string{"b"}},  // a ticket first seen closed
		{ticket("c", queued, 1), []string{"b"}}, // and its older events
		{ticket("a", queued, 1), []string{"b"}}, // a redelivered first event
	}
	for i, st := range steps {
		q.applyLocked(st.t)
		var got []string
		for id := range q.open {
			got = append(got, id)
		}
		slices.Sort(got)
		if !slices.Equal(got, st.want) {
			t.Fatalf("after event %d (%s %s rev %d): open %v, want %v", i, st.t.GetId(), st.t.GetStatus(), st.t.GetRevision(), got, st.want)
		}
	}
	if s := q.open["b"].GetStatus(); s != baking {
		t.Errorf("b is %s, want BAKING", s)
	}
}

func TestClosedRingForgetsOldest(t *testing.T) {
	var c closedRing
	for i := range closedKept + 1 {
		c.add(string(rune('a'+i%26))+string(rune(i)), int64(i+1))
	}
	if c.revision(string(rune('a'))+string(rune(0))) != 0 {
		t.Error("the oldest closed ticket is still remembered past closedKept")
	}
	last := closedKept
	if c.revision(string(rune('a'+last%26))+string(rune(last))) != int64(last+1) {
		t.Error("the newest closed ticket is not remembered")
	}
	if len(c.revs) != closedKept {
		t.Errorf("%d remembered, want %d", len(c.revs), closedKept)
	}
}

func TestQueueRemembersClosingWhileNotRead(t *testing.T) {
	s := &Server{}
	// The queue is not read (or was dropped as stale) when x closes.
	s.ticketSeen(ticket("x", ready, 3))
	// Read later: x is not among the open tickets...
	s.queue.open = map[string]*kitchenv1.Ticket{}
	// ...and a relay publishing x's earlier step again must not open it.
	s.ticketSeen(ticket("x", baking, 2))
	if _, ok := s.queue.open["x"]; ok {
		t.Error("a repeated earlier event opened a ticket that closed while the queue was not read")
	}
}

// TestQueueHandsChangesToDisplays: a display is handed each change the
// queue applies after its snapshot, in order, closing ones too, and none
// the queue refuses as older than what it knows; one that falls too far
// behind starts over, and a fresh snapshot drops what it was handed before.
func TestQueueHandsChangesToDisplays(t *testing.T) {
	q := queue{open: map[string]*kitchenv1.Ticket{}}
	q.applyLocked(ticket("before", queued, 1)) // in the snapshot, not handed
	d := &display{changes: make(chan *kitchenv1.Ticket, 3), restart: make(chan struct{}, 1)}
	q.watchLocked(d)
	for _, tk := range []*kitchenv1.Ticket{
		ticket("a", queued, 1),
		ticket("a", queued, 1), // the same event again
		ticket("a", ready, 3),  // a closes
		ticket("a", baking, 2), // late: a stays closed
		ticket("b", queued, 1),
	} {
		q.applyLocked(tk)
	}
	var got []string
	for len(d.changes) > 0 {
		tk := <-d.changes
		got = append(got, fmt.Sprintf("%s@%d", tk.GetId(), tk.GetRevision()))
	}
	if want := []string{"a@1", "a@3", "b@1"}; !slices.Equal(got, want) {
		t.Errorf("display handed %v, want %v", got, want)
	}
	if len(d.restart) != 0 {
		t.Error("a display that kept up is told to start over")
	}

	for _, id := range []string{"c", "d", "e", "f"} {
		q.applyLocked(ticket(id, queued, 1))
	}
	if len(d.restart) != 1 {
		t.Error("a display whose buffer is full is not told to start over")
	}
	q.watchLocked(d) // its fresh snapshot
	if len(d.changes) != 0 || len(d.restart) != 0 {
		t.Errorf("after a fresh snapshot the display still has %d changes and %d restarts from before it", len(d.changes), len(d.restart))
	}

	q.unwatch(d)
	q.applyLocked(ticket("g", queued, 1))
	if len(d.changes) != 0 {
		t.Error("a display is handed a change after unwatch")
	}
}

// TestQueueStaleRestartsDisplays: when events may have been missed, the
// displays were not handed them either.
func TestQueueStaleRestartsDisplays(t *testing.T) {
	s := &Server{}
	s.queue.open = map[string]*kitchenv1.Ticket{}
	d := newDisplay()
	s.queue.watchLocked(d)
	s.QueueStale()
	if len(d.restart) != 1 {
		t.Error("QueueStale does not have an open display start over")
	}
}

// TestQueueUnknownBefore: which events the kitchen checks against the
// store before they may open a ticket. An event from before the queue's
// read, of a ticket the read did not return, is one (a repeat after a
// crash of a ticket closed since), and so is one from before a read still
// under way, whose result it would otherwise be applied on top of.
func TestQueueUnknownBefore(t *testing.T) {
	read := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	before, after := read.Add(-time.Second), read.Add(time.Second)
	q := queue{open: map[string]*kitchenv1.Ticket{"held": ticket("held", queued, 1)}, at: read}
	q.closed.add("gone", 3)
	for _, c := range []struct {
		name string
		t    *kitchenv1.Ticket
		at   time.Time
		want bool
	}{
		{"open event from before the read, ticket not read", ticket("x", queued, 1), before, true},
		{"open event from after the read", ticket("x", queued, 1), after, false},
		{"event of a ticket the queue holds", ticket("held", baking, 2), before, false},
		{"event of a ticket the queue saw close", ticket("gone", queued, 1), before, false},
		{"closing event", ticket("x", ready, 3), before, false},
	} {
		if got := q.unknownBefore(c.t, c.at); got != c.want {
			t.Errorf("%s: unknownBefore = %v, want %v", c.name, got, c.want)
		}
	}

	loading := queue{loading: make(chan struct{}), loadAt: read}
	if !loading.unknownBefore(ticket("x", queued, 1), before) {
		t.Errorf("an open event from before a read under way is not checked: it would apply on top of the read")
	}
	if loading.unknownBefore(ticket("x", queued, 1), after) {
		t.Errorf("an open event from after a read under way began is checked")
	}
	if (&queue{}).unknownBefore(ticket("x", queued, 1), before) {
		t.Errorf("an open event before any read is checked, though it is not kept")
	}
}
