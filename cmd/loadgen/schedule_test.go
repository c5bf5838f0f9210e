package main

import (
	"testing"
	"time"
)

func TestScheduleAt(t *testing.T) {
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		rate float64
		i    int
		want time.Duration
	}{
		{rate: 1, i: 0, want: 0},
		{rate: 1, i: 3, want: 3 * time.Second},
		{rate: 600, i: 600, want: time.Second},
		{rate: 3, i: 1, want: 333333333 * time.Nanosecond},
		// Computed from i, not summed: a million 1/3 s steps do not drift.
		{rate: 3, i: 3_000_000, want: 1_000_000 * time.Second},
	}
	for _, tt := range tests {
		s := schedule{start: start, rate: tt.rate}
		if got := s.at(tt.i).Sub(start); got != tt.want {
			t.Errorf("schedule{rate %g}.at(%d) = start+%s, want start+%s", tt.rate, tt.i, got, tt.want)
		}
	}
}

func TestScheduleDue(t *testing.T) {
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	s := schedule{start: start, rate: 100}
	tests := []struct {
		after time.Duration
		want  int
	}{
		{-time.Millisecond, 0},
		{0, 1}, // request 0 is due at the start
		{9 * time.Millisecond, 1},
		{10 * time.Millisecond, 2},
		{time.Second - time.Nanosecond, 100},
		{time.Second, 101},
	}
	for _, tt := range tests {
		if got := s.due(start.Add(tt.after)); got != tt.want {
			t.Errorf("due(start+%s) at 100/s = %d, want %d", tt.after, got, tt.want)
		}
	}
	// due agrees with at for every request at an awkward rate.
	s = schedule{start: start, rate: 7.3}
	for i := range 1000 {
		if got := s.due(s.at(i)); got != i+1 {
			t.Fatalf("due(at(%d)) at 7.3/s = %d, want %d", i, got, i+1)
		}
	}
}

func TestLate(t *testing.T) {
	due := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		started time.Duration
		want    bool
	}{
		{-time.Millisecond, false},
		{0, false},
		{10 * time.Millisecond, false}, // at the tolerance: on time
		{10*time.Millisecond + 1, true},
		{time.Second, true},
	}
	for _, tt := range tests {
		if got := late(due, due.Add(tt.started), 10*time.Millisecond); got != tt.want {
			t.Errorf("late(due, due+%s, 10ms) = %v, want %v", tt.started, got, tt.want)
		}
	}
}
