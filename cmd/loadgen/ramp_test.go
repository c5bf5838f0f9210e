package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRampRates(t *testing.T) {
	p := rampPlan{start: 50, step: 50, limit: 200}
	if got, want := p.rates(), []float64{50, 100, 150, 200}; !slices.Equal(got, want) {
		t.Errorf("rates from 50 by 50 to 200 = %v, want %v", got, want)
	}
	p = rampPlan{start: 0.1, step: 0.1, limit: 0.3}
	if got := p.rates(); len(got) != 3 {
		t.Errorf("rates from 0.1 by 0.1 to 0.3 = %v, want 3 steps (float steps must not lose the last)", got)
	}
}

func TestRampJudge(t *testing.T) {
	p := rampPlan{target: 50 * time.Millisecond}
	ok := stepResult{rate: 100, sent: 1000, p99: 40 * time.Millisecond}
	tests := []struct {
		name   string
		change func(*stepResult)
		pass   bool
		reason string
	}{
		{"within target", func(*stepResult) {}, true, ""},
		{"p99 at the target holds", func(r *stepResult) { r.p99 = 50 * time.Millisecond }, true, ""},
		{"p99 above the target", func(r *stepResult) { r.p99 = 51 * time.Millisecond }, false, "p99 51ms > 50ms"},
		{"one error", func(r *stepResult) { r.errors = 1 }, false, "1 errors"},
		{"backlog left", func(r *stepResult) { r.backlog = 3 }, false, "backlog of 3"},
		{"late starts are not judged", func(r *stepResult) { r.late = 500 }, true, ""},
		{"nothing sent", func(r *stepResult) { r.sent = 0 }, false, "no request was sent"},
	}
	for _, tt := range tests {
		r := ok
		tt.change(&r)
		pass, reason := p.judge(r)
		if pass != tt.pass || !strings.Contains(reason, tt.reason) || (tt.pass && reason != "") {
			t.Errorf("%s: judge = %v %q, want %v %q", tt.name, pass, reason, tt.pass, tt.reason)
		}
	}
}

func TestRampRecord(t *testing.T) {
	p := rampPlan{target: 50 * time.Millisecond}
	var r RampResult
	steps := []stepResult{
		{rate: 100, sent: 1000, p99: 20 * time.Millisecond},
		{rate: 200, sent: 2000, p99: 45 * time.Millisecond},
		{rate: 300, sent: 3000, p99: 80 * time.Millisecond},
	}
	var goes []bool
	for _, s := range steps {
		goes = append(goes, r.record(p, s))
	}
	if !slices.Equal(goes, []bool{true, true, false}) {
		t.Errorf("record went on %v, want [true true false]: the ramp stops at the first step that fails", goes)
	}
	if r.MaxRate != 200 {
		t.Errorf("MaxRate = %g, want 200, the highest step that held", r.MaxRate)
	}
	if len(r.Steps) != 3 || r.Steps[2].Pass || r.Steps[2].P99ms != 80 {
		t.Errorf("Steps = %+v, want the failing 300/s step last with p99 80", r.Steps)
	}

	var none RampResult
	none.record(p, stepResult{rate: 50, sent: 10, errors: 2})
	if none.MaxRate != 0 {
		t.Errorf("MaxRate with no step holding = %g, want 0", none.MaxRate)
	}
}
