package main

import "time"

// schedule is an open-model arrival schedule: request i is due at
// start + i/rate, whatever happened to the requests before it, so a slow
// answer never delays the next request (no coordinated omission). Each due
// time is computed from i, so rounding never accumulates into drift.
type schedule struct {
	start time.Time
	rate  float64 // requests per second, > 0
}

// at is when request i (from 0) is due.
func (s schedule) at(i int) time.Time {
	return s.start.Add(time.Duration(float64(i) * float64(time.Second) / s.rate))
}

// due is how many requests are due by t: those with at(i) <= t.
func (s schedule) due(t time.Time) int {
	if t.Before(s.start) {
		return 0
	}
	n := int(t.Sub(s.start).Seconds()*s.rate) + 1
	// Float rounding may put the boundary one off either way.
	for n > 0 && s.at(n-1).After(t) {
		n--
	}
	for !s.at(n).After(t) {
		n++
	}
	return n
}

// late reports whether a request due at due that started at started missed
// its time by more than tolerance. Its latency is still counted from due.
func late(due, started time.Time, tolerance time.Duration) bool {
	return started.Sub(due) > tolerance
}
