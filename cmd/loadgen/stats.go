package main

import (
	"math"
	"slices"
	"time"
)

// Stats summarizes the latencies of one kind of call or event.
type Stats struct {
	Count    int            `json:"count"`
	Statuses map[string]int `json:"statuses,omitempty"`
	P50ms    float64        `json:"p50_ms"`
	P95ms    float64        `json:"p95_ms"`
	P99ms    float64        `json:"p99_ms"`
	Maxms    float64        `json:"max_ms"`
}

// percentile is the nearest-rank percentile p (0 < p <= 1) of sorted: the
// smallest value with at least p of the values at or below it. It is 0 for
// no values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())) / 1000 }

// summarize sorts lat in place and summarizes it.
func summarize(lat []time.Duration, statuses map[string]int) Stats {
	slices.Sort(lat)
	s := Stats{Count: len(lat), Statuses: statuses}
	if len(lat) == 0 {
		return s
	}
	s.P50ms = ms(percentile(lat, 0.50))
	s.P95ms = ms(percentile(lat, 0.95))
	s.P99ms = ms(percentile(lat, 0.99))
	s.Maxms = ms(lat[len(lat)-1])
	return s
}
