package kitchenapi_test

import (
	"testing"
	"time"
)

// TestWatchTicketsCatchesUpAfterReconnect: the changes published while the
// kitchen's NATS connection was down never reach its subscriptions. An open
// display must get them anyway, from a fresh snapshot, and not show the
// kitchen an empty queue until a cook reloads the page.
func TestWatchTicketsCatchesUpAfterReconnect(t *testing.T) {
	e := newEnv(t)
	display := e.watch(t, e.cook(t))
	if m := display.next(t, 10*time.Second); !m.GetSnapshotComplete() {
		t.Fatalf("first message = %s, want the empty snapshot's end", says(m))
	}

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

	if m := display.next(t, 10*time.Second); says(m) != "lost1 TICKET_STATUS_QUEUED @1 snapshot" {
		t.Errorf("display after a reconnect got %s, want lost1 queued in a fresh snapshot", says(m))
	}
	if m := display.next(t, 10*time.Second); !m.GetSnapshotComplete() {
		t.Errorf("then %s, want the snapshot's end", says(m))
	}
}
