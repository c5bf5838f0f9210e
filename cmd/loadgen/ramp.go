package main

import (
	"fmt"
	"time"
)

// rampPlan raises the open-model rate step by step: from start, by step,
// holding each rate for hold, up to limit.
type rampPlan struct {
	start, step, limit float64
	hold               time.Duration
	target             time.Duration // p99 of placing an order that a step must stay within
}

// rates are the steps of the plan, in order.
func (p rampPlan) rates() []float64 {
	var out []float64
	for i := 0; ; i++ {
		r := p.start + float64(i)*p.step
		if r > p.limit+1e-9 {
			return out
		}
		out = append(out, r)
	}
}

// stepResult is what one step of a ramp measured.
type stepResult struct {
	rate    float64
	sent    int
	errors  int
	late    int
	p99     time.Duration // of placing an order, from its due time
	backlog int           // accepted orders not through after the step settled
}

// judge decides whether a step holds: p99 within the target, no errors and
// no backlog. Late starts are reported, not judged: their latency already
// counts from the due time, so a rate the shop cannot take shows in p99.
func (p rampPlan) judge(r stepResult) (ok bool, reason string) {
	switch {
	case r.sent == 0:
		return false, "no request was sent"
	case r.errors > 0:
		return false, fmt.Sprintf("%d errors", r.errors)
	case r.p99 > p.target:
		return false, fmt.Sprintf("p99 %s > %s", r.p99.Round(100*time.Microsecond), p.target)
	case r.backlog > 0:
		return false, fmt.Sprintf("backlog of %d orders", r.backlog)
	}
	return true, ""
}

// RampStep is one step of a ramp in the report.
type RampStep struct {
	Rate   float64 `json:"rate"`
	Pass   bool    `json:"pass"`
	Reason string  `json:"reason,omitempty"`
	P99ms  float64 `json:"p99_ms"`
	Late   int     `json:"late"`
}

// RampResult is the outcome of a ramp: the highest rate whose step held
// (0 when none did) and every step tried.
type RampResult struct {
	TargetP99ms float64    `json:"target_p99_ms"`
	MaxRate     float64    `json:"max_rate"`
	Steps       []RampStep `json:"steps"`
}

// record adds a step and reports whether the ramp goes on: it stops at the
// first step that does not hold.
func (r *RampResult) record(p rampPlan, s stepResult) bool {
	ok, reason := p.judge(s)
	r.Steps = append(r.Steps, RampStep{Rate: s.rate, Pass: ok, Reason: reason, P99ms: ms(s.p99), Late: s.late})
	if ok && s.rate > r.MaxRate {
		r.MaxRate = s.rate
	}
	return ok
}
