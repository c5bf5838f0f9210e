package main

import (
	"slices"
	"strconv"
	"sync"
	"time"
)

// tracker follows every order a run placed, from its due time through the
// kitchen display to the end of its lifecycle, phase by phase, and keeps a
// timeline per second.
type tracker struct {
	lifecycle bool
	display   bool                      // the kitchen display is followed; without it no order is ever "done" late
	onTicket  func(id string)           // a ticket of ours appeared: start and ready it
	onWaiting func(id string, del bool) // a delivery of ours is waiting: dispatch or hand over

	mu     sync.Mutex
	orders map[string]*orderRec
	early  map[string]*orderRec // events of ids not (yet) answered to a POST
	phases []*phaseRec
}

type orderRec struct {
	phase     int
	due       time.Time
	delivery  bool
	accepted  bool
	displayed time.Time // first seen QUEUED on the kitchen display
	ready     time.Time
	waiting   time.Time // first seen on the delivery board
	completed time.Time // delivered or picked up
	confirmed bool      // never seen on the display, but the order service says the kitchen took it
	queued    int       // QUEUED events (not snapshots) on the display
	boarded   int       // WAITING events (not snapshots) on the board
}

// phaseRec is what one phase (a run, a ramp step) measured.
type phaseRec struct {
	name     string
	rate     float64
	clients  int
	start    time.Time
	sending  time.Duration
	drain    time.Duration
	sent     int
	accepted int
	errors   int
	late     int
	dupIDs   int // one id answered to two different requests
	statuses map[string]int
	placeLat []time.Duration
	calls    map[string]*callRec
	seconds  []*second
	backlog  int // at the end of sending
	cpu      *CPUReport
}

type callRec struct {
	lat      []time.Duration
	statuses map[string]int
}

type second struct {
	sent, accepted, errors, late, displayed, completed int
	backlog, inflight                                  int
	lat                                                []time.Duration
}

func newTracker(lifecycle, display bool) *tracker {
	return &tracker{lifecycle: lifecycle, display: display, orders: map[string]*orderRec{}, early: map[string]*orderRec{}}
}

// begin starts a phase and returns its index.
func (t *tracker) begin(name string, rate float64, clients int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.phases = append(t.phases, &phaseRec{name: name, rate: rate, clients: clients, start: time.Now(),
		statuses: map[string]int{}, calls: map[string]*callRec{}})
	return len(t.phases) - 1
}

// sec is the timeline bucket of time at in phase p; the caller holds mu.
func (p *phaseRec) sec(at time.Time) *second {
	i := max(0, int(at.Sub(p.start)/time.Second))
	for len(p.seconds) <= i {
		p.seconds = append(p.seconds, &second{})
	}
	return p.seconds[i]
}

// sent records a request that started at started, due at due.
func (t *tracker) sent(phase int, due, started time.Time, wasLate bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.phases[phase]
	p.sent++
	p.sec(due).sent++
	if wasLate {
		p.late++
		p.sec(started).late++
	}
}

// answered records the answer to placing an order due at due.
func (t *tracker) answered(phase int, due time.Time, delivery bool, r placed) {
	now := time.Now()
	lat := now.Sub(due)
	var kitchen, board bool
	t.mu.Lock()
	p := t.phases[phase]
	p.statuses[strconv.Itoa(r.status)]++
	s := p.sec(now)
	if r.err != nil {
		p.errors++
		s.errors++
		t.mu.Unlock()
		return
	}
	p.accepted++
	s.accepted++
	p.placeLat = append(p.placeLat, lat)
	s.lat = append(s.lat, lat)
	if !t.display {
		// Nothing follows the order (a baseline answers one fixed id).
		t.mu.Unlock()
		return
	}
	if _, ok := t.orders[r.id]; ok {
		p.dupIDs++
		t.mu.Unlock()
		return
	}
	o := &orderRec{phase: phase, due: due, delivery: delivery, accepted: true}
	if e, ok := t.early[r.id]; ok {
		// The display was faster than the answer.
		delete(t.early, r.id)
		o.displayed, o.ready, o.waiting, o.queued, o.boarded = e.displayed, e.ready, e.waiting, e.queued, e.boarded
		if !o.displayed.IsZero() {
			p.sec(o.displayed).displayed++
			kitchen = true
		}
		board = !o.waiting.IsZero()
	}
	t.orders[r.id] = o
	t.mu.Unlock()
	if t.lifecycle && kitchen && t.onTicket != nil {
		t.onTicket(r.id)
	}
	if t.lifecycle && board && t.onWaiting != nil {
		t.onWaiting(r.id, delivery)
	}
}

// rec is the order of id, or its early record; the caller holds mu.
func (t *tracker) rec(id string) *orderRec {
	if o, ok := t.orders[id]; ok {
		return o
	}
	e, ok := t.early[id]
	if !ok {
		e = &orderRec{}
		t.early[id] = e
	}
	return e
}

// ticket records a ticket on the kitchen display.
func (t *tracker) ticket(id, status string, snapshot bool) {
	now := time.Now()
	first := false
	t.mu.Lock()
	o := t.rec(id)
	if status == "TICKET_STATUS_QUEUED" && !snapshot {
		o.queued++
	}
	// A ticket first seen past QUEUED (the stream dropped meanwhile) has
	// reached the kitchen all the same: late, not lost.
	if o.displayed.IsZero() {
		o.displayed, first = now, o.accepted && status == "TICKET_STATUS_QUEUED"
		if o.accepted {
			t.phases[o.phase].sec(now).displayed++
		}
	}
	if status == "TICKET_STATUS_READY" && o.ready.IsZero() {
		o.ready = now
	}
	t.mu.Unlock()
	if first && t.lifecycle && t.onTicket != nil {
		t.onTicket(id)
	}
}

// delivery records a delivery on the delivery board.
func (t *tracker) delivery(id, status string, snapshot bool) {
	now := time.Now()
	first, del := false, false
	t.mu.Lock()
	o := t.rec(id)
	if status == "DELIVERY_STATUS_WAITING" {
		if !snapshot {
			o.boarded++
		}
		if o.waiting.IsZero() {
			o.waiting, first, del = now, o.accepted, o.delivery
		}
	}
	t.mu.Unlock()
	if first && t.lifecycle && t.onWaiting != nil {
		t.onWaiting(id, del)
	}
}

// call records a staff call made for order id.
func (t *tracker) call(id, name string, took time.Duration, status int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o, ok := t.orders[id]
	if !ok {
		return
	}
	p := t.phases[o.phase]
	c := p.calls[name]
	if c == nil {
		c = &callRec{statuses: map[string]int{}}
		p.calls[name] = c
	}
	c.statuses[strconv.Itoa(status)]++
	if status < 300 {
		c.lat = append(c.lat, took)
	}
}

// completed records the end of an order's lifecycle.
func (t *tracker) completed(id string) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if o, ok := t.orders[id]; ok && o.completed.IsZero() {
		o.completed = now
		t.phases[o.phase].sec(now).completed++
	}
}

// done reports whether an order has gone as far as the run takes it.
func (t *tracker) done(o *orderRec) bool {
	if !t.display {
		return true
	}
	if t.lifecycle {
		return !o.completed.IsZero()
	}
	return !o.displayed.IsZero()
}

// backlog counts accepted orders of phase (all phases when phase < 0) not
// yet done.
func (t *tracker) backlog(phase int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, o := range t.orders {
		if (phase < 0 || o.phase == phase) && !t.done(o) {
			n++
		}
	}
	return n
}

// progress is one line of live progress.
type progress struct {
	elapsed                      time.Duration
	sent, accepted, errors, late int
	lastAccepted                 int
	p50, p99                     time.Duration
	inflight, backlog            int
}

// sample records inflight and the backlog in the current second of phase
// and returns the progress of the phase, with the rate and percentiles of
// the last whole second.
func (t *tracker) sample(phase, inflight int) progress {
	backlog := t.backlog(-1)
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.phases[phase]
	s := p.sec(now)
	s.inflight, s.backlog = inflight, backlog
	pr := progress{elapsed: now.Sub(p.start), sent: p.sent, accepted: p.accepted, errors: p.errors, late: p.late,
		inflight: inflight, backlog: backlog}
	if i := int(now.Sub(p.start)/time.Second) - 1; i >= 0 && i < len(p.seconds) {
		last := p.seconds[i]
		pr.lastAccepted = last.accepted
		lat := slices.Clone(last.lat)
		slices.Sort(lat)
		pr.p50, pr.p99 = percentile(lat, 0.50), percentile(lat, 0.99)
	}
	return pr
}
