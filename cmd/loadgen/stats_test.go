package main

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond // 1..100 ms
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 0.99, 0},
		{"one", []time.Duration{7}, 0.5, 7},
		{"one p99", []time.Duration{7}, 0.99, 7},
		{"p50 of 1..100", hundred, 0.50, 50 * time.Millisecond},
		{"p99 of 1..100", hundred, 0.99, 99 * time.Millisecond},
		{"p100 of 1..100", hundred, 1, 100 * time.Millisecond},
		{"p1 of 1..100", hundred, 0.01, time.Millisecond},
		{"p0 of 1..100", hundred, 0, time.Millisecond},
		// Nearest rank: p99 of ten values is the largest, never an
		// average that no request saw.
		{"p99 of ten", hundred[:10], 0.99, 10 * time.Millisecond},
		{"p50 of two", []time.Duration{1, 9}, 0.5, 1},
	}
	for _, tt := range tests {
		if got := percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("%s: percentile(p=%g) = %s, want %s", tt.name, tt.p, got, tt.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	lat := []time.Duration{30 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 1500 * time.Microsecond}
	s := summarize(lat, map[string]int{"200": 4})
	want := Stats{Count: 4, Statuses: map[string]int{"200": 4}, P50ms: 10, P95ms: 30, P99ms: 30, Maxms: 30}
	if s.Count != want.Count || s.P50ms != want.P50ms || s.P95ms != want.P95ms || s.P99ms != want.P99ms || s.Maxms != want.Maxms || s.Statuses["200"] != 4 {
		t.Errorf("summarize = %+v, want %+v", s, want)
	}
	if got := summarize(nil, nil); got.Count != 0 || got.P99ms != 0 {
		t.Errorf("summarize(nil) = %+v, want zeros", got)
	}
}
