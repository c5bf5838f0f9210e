package kitchenapi_test

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/outbox"
	"github.com/pizzashop/pizzashop/services/kitchen/internal/kitchen"
	"github.com/pizzashop/pizzashop/services/kitchen/internal/kitchenapi"
)

// TestWatchTicketsCatchesUpAfterReconnect: the changes published while the
// kitchen's NATS connection was down never reach its subscriptions. An open
// display must get them anyway, from a fresh snapshot, and not show the
// kitchen an empty queue until a cook reloads the page.
func TestWatchTicketsCatchesUpAfterReconnect(t *testing.T) {
	e := newEnv(t)
	display := e.watch(t, e.cook(t))
	display.expect(t, "snapshot complete") // empty

	// A ticket made while this kitchen's connection was down: its event
	// went out, but not to this kitchen.
	e.seed(t, "lost1", 0)
	reconnects := e.bus.Conn.Stats().Reconnects
	if err := e.bus.Conn.ForceReconnect(); err != nil {
		t.Fatalf("ForceReconnect: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.bus.Conn.Stats().Reconnects == reconnects {
		if time.Now().After(deadline) {
			t.Fatal("NATS did not reconnect within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}

	display.expect(t, "lost1 TICKET_STATUS_QUEUED @1 snapshot", "snapshot complete") // a fresh snapshot
}

// TestWatchTicketsShowsChangesTheQueueAppliesLate: changes published just
// before a display opens, which the kitchen's queue has not applied yet
// when the display's snapshot is read from it (its handler is busy, or they
// come from another replica, a NATS hop away), must reach the display once
// the queue applies them. Else the display shows those tickets as they
// were until their next change, or not at all.
func TestWatchTicketsShowsChangesTheQueueAppliesLate(t *testing.T) {
	e := newEnv(t)
	ctx := testContext(t)
	e.seed(t, "start1", 0)
	e.seed(t, "reject1", 1)
	if n, err := e.srv.QueueLength(ctx); err != nil || n != 2 {
		t.Fatalf("QueueLength = %d, %v; want 2", n, err)
	}

	held, release := e.holdEvents(t)
	// Another replica makes a ticket, starts one and rejects one: its
	// relay publishes the changes, which the kitchen gets and holds.
	now := e.madeNow(t, ctx, "new1").OrderTime
	elsewhere := func(id string, move func(*kitchen.Ticket) error) {
		t.Helper()
		_, _, err := e.store.Update(ctx, id, func(tk *kitchen.Ticket) (bool, []outbox.Entry, error) {
			if err := move(tk); err != nil {
				return false, nil, err
			}
			ev, err := kitchenapi.TicketEvent(ctx, *tk)
			return true, []outbox.Entry{ev}, err
		})
		if err != nil {
			t.Fatalf("Update(%s): %v", id, err)
		}
	}
	elsewhere("start1", func(tk *kitchen.Ticket) error { return tk.Start(now, 8*time.Minute) })
	elsewhere("reject1", func(tk *kitchen.Ticket) error { return tk.Reject("out of dough", now) })
	held(3)

	// The display opens on a queue that has applied none of them.
	display := e.watch(t, e.cook(t))
	var snapshot []string
	for m := display.next(t, 10*time.Second); !m.GetSnapshotComplete(); m = display.next(t, 10*time.Second) {
		snapshot = append(snapshot, says(m))
	}
	if want := []string{"start1 TICKET_STATUS_QUEUED @1 snapshot", "reject1 TICKET_STATUS_QUEUED @1 snapshot"}; !slices.Equal(snapshot, want) {
		t.Fatalf("snapshot = %q, want %q", snapshot, want)
	}

	release()
	// Each change gets the 10 s every other wait of these tests gets: a
	// shorter one only measures how busy the machine is.
	var got []string
	for range 3 {
		m := display.within(t, 10*time.Second)
		if m == nil {
			break
		}
		got = append(got, says(m))
	}
	slices.Sort(got)
	want := []string{"new1 TICKET_STATUS_QUEUED @1", "reject1 TICKET_STATUS_REJECTED @2", "start1 TICKET_STATUS_BAKING @2"}
	if !slices.Equal(got, want) {
		t.Errorf("display after the queue applied the held changes got %q, want %q", got, want)
	}
}

// TestWatchTicketsStartsOverAfterHourlyRead: the kitchen reads its queue
// from the store again hourly, to heal what its events missed unnoticed.
// The displays, which follow the queue, must be healed too.
func TestWatchTicketsStartsOverAfterHourlyRead(t *testing.T) {
	e := newEnv(t)
	var later atomic.Int64 // how far the kitchen's clock is ahead
	kitchenapi.SetClock(e.srv, func() time.Time { return time.Now().Add(time.Duration(later.Load())) })
	display := e.watch(t, e.cook(t))
	display.expect(t, "snapshot complete") // empty

	e.seed(t, "quiet1", 0) // its event never came
	later.Store(int64(2 * time.Hour))
	if n, err := e.srv.QueueLength(testContext(t)); err != nil || n != 1 {
		t.Fatalf("QueueLength two hours on = %d, %v; want 1, read again from the store", n, err)
	}
	display.expect(t, "quiet1 TICKET_STATUS_QUEUED @1 snapshot", "snapshot complete") // a fresh snapshot
}

// TestWatchTicketsIgnoresEventsPublishedAgain: after a crash a relay
// publishes again the events it cannot prove JetStream holds. An old event
// of a ticket long closed must not show on a display that never had the
// ticket, neither as it was nor as it is now (e2e/display_replay_test.go
// plays this across a real crash).
func TestWatchTicketsIgnoresEventsPublishedAgain(t *testing.T) {
	e := newEnv(t)
	ctx := testContext(t)
	placed := e.seed(t, "gone1", 0)
	again, err := kitchenapi.TicketEvent(ctx, placed)
	if err != nil {
		t.Fatal(err)
	}
	// It baked and went out while this kitchen heard nothing of it.
	for _, move := range []func(*kitchen.Ticket) error{
		func(tk *kitchen.Ticket) error { return tk.Start(orderAt.Add(time.Minute), 8*time.Minute) },
		func(tk *kitchen.Ticket) error { return tk.Ready(orderAt.Add(9 * time.Minute)) },
	} {
		if _, _, err := e.store.Update(ctx, "gone1", func(tk *kitchen.Ticket) (bool, []outbox.Entry, error) {
			return true, nil, move(tk)
		}); err != nil {
			t.Fatalf("Update(gone1): %v", err)
		}
	}
	display := e.watch(t, e.cook(t))
	display.expect(t, "snapshot complete") // empty

	// Published again on core NATS, as a relay does after a crash.
	if err := e.bus.Conn.Publish(again.Subject, again.Data); err != nil {
		t.Fatalf("publish %s again: %v", again.Subject, err)
	}
	// Then a new ticket: the display's next change must be it.
	e.madeNow(t, ctx, "next1")
	if m := display.next(t, 10*time.Second); says(m) != "next1 TICKET_STATUS_QUEUED @1" {
		t.Errorf("display's next change is %s, want next1 queued: the event published again showed gone1, closed before the display opened", says(m))
	}
	if n, err := e.srv.QueueLength(ctx); err != nil || n != 1 {
		t.Errorf("QueueLength = %d, %v; want 1 (next1): the event published again reopened gone1", n, err)
	}
}
