package kitchen

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)

func queued() Ticket {
	return New(Ticket{ID: "t1", PizzaName: "Margherita"}, t0, t0.Add(8*time.Minute))
}

func TestEstimate(t *testing.T) {
	bake := 8 * time.Minute
	tests := []struct {
		ahead, ovens int
		want         time.Duration
	}{
		{0, 2, bake}, {1, 2, bake}, {2, 2, 2 * bake}, {5, 2, 3 * bake}, {3, 0, 4 * bake},
	}
	for _, tt := range tests {
		if got := Estimate(t0, tt.ahead, bake, tt.ovens).Sub(t0); got != tt.want {
			t.Errorf("Estimate(ahead %d, ovens %d) = now+%v, want now+%v", tt.ahead, tt.ovens, got, tt.want)
		}
	}
}

func TestMoves(t *testing.T) {
	start := func(t *Ticket) error { return t.Start(t0, time.Minute) }
	ready := func(t *Ticket) error { return t.Ready(t0) }
	reject := func(t *Ticket) error { return t.Reject("out of dough", t0) }
	cancel := func(t *Ticket) error { _, err := t.Cancel("changed my mind", t0); return err }
	tests := []struct {
		name  string
		moves []func(*Ticket) error
		want  Status
		fails int // index of the move that must fail, -1 for none
		err   error
	}{
		{"bake", []func(*Ticket) error{start, ready}, StatusReady, -1, nil},
		{"reject queued", []func(*Ticket) error{reject}, StatusRejected, -1, nil},
		{"cancel queued", []func(*Ticket) error{cancel}, StatusCancelled, -1, nil},
		{"cancel twice is a no-op", []func(*Ticket) error{cancel, cancel}, StatusCancelled, -1, nil},
		{"no cancel while baking", []func(*Ticket) error{start, cancel}, StatusBaking, 1, ErrNotCancellable},
		{"no start after cancel", []func(*Ticket) error{cancel, start}, StatusCancelled, 1, ErrInvalidTransition},
		{"no ready before start", []func(*Ticket) error{ready}, StatusQueued, 0, ErrInvalidTransition},
		{"no reject while baking", []func(*Ticket) error{start, reject}, StatusBaking, 1, ErrInvalidTransition},
		{"no start twice", []func(*Ticket) error{start, start}, StatusBaking, 1, ErrInvalidTransition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := queued()
			for i, m := range tt.moves {
				err := m(&tk)
				if i == tt.fails {
					if !errors.Is(err, tt.err) {
						t.Fatalf("move %d = %v, want %v", i, err, tt.err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("move %d = %v, want nil", i, err)
				}
			}
			if tk.Status != tt.want {
				t.Errorf("status = %s, want %s", tk.Status, tt.want)
			}
		})
	}
}

func TestRejectReason(t *testing.T) {
	for _, reason := range []string{"", "   ", strings.Repeat("r", MaxReason+1)} {
		tk := queued()
		if err := tk.Reject(reason, t0); err == nil || tk.Status != StatusQueued {
			t.Errorf("Reject(%d chars) = %v, status %s; want an error and QUEUED", len(reason), err, tk.Status)
		}
	}
}

func TestRevisionAndEstimates(t *testing.T) {
	tk := queued()
	if err := tk.Start(t0, 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	if tk.Revision != 2 || !tk.EstimatedReadyTime.Equal(t0.Add(5*time.Minute)) {
		t.Errorf("after Start: revision %d eta %v, want 2 and %v", tk.Revision, tk.EstimatedReadyTime, t0.Add(5*time.Minute))
	}
	changed, err := tk.Cancel("x", t0)
	if changed || err == nil || tk.Revision != 2 {
		t.Errorf("Cancel while baking = %v, %v, revision %d; want false, error, 2", changed, err, tk.Revision)
	}
}

func TestTombstone(t *testing.T) {
	tk := Tombstone("t9", "customer cancelled", t0)
	if tk.Status != StatusCancelled || tk.Status.Open() {
		t.Errorf("Tombstone status = %s, want a closed CANCELLED ticket", tk.Status)
	}
}
