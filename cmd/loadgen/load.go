package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// loader runs the phases of one load run against one shop.
type loader struct {
	o          options
	shop       *shop
	t          *tracker
	cpuClient  *http.Client
	stderr     io.Writer
	nonce      string
	seq        atomic.Int64
	inflight   atomic.Int64
	reconnects atomic.Int64
	stop       func() // stops the streams and the staff
}

// start connects to the shop, opens the kitchen display (and the delivery
// board with -mode lifecycle) and starts the staff.
func start(ctx context.Context, o options, stderr io.Writer) (*loader, error) {
	conns := o.maxInflight
	if o.clients > 0 {
		conns = o.clients
	}
	s, err := newShop(ctx, o.url, o.secret, o.customers, conns+o.staff)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, 6)
	_, _ = rand.Read(nonce)
	lifecycle := o.mode == modeLifecycle
	l := &loader{o: o, shop: s, t: newTracker(lifecycle, o.display), stderr: stderr, nonce: hex.EncodeToString(nonce),
		cpuClient: &http.Client{Timeout: 5 * time.Second}}
	wctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	l.stop = func() {
		cancel()
		wg.Wait()
	}
	if !o.display {
		return l, nil
	}
	if lifecycle {
		st := &staff{shop: s, t: l.t, q: newQueue(wctx, o.staff)}
		l.t.onTicket, l.t.onWaiting = st.ticket, st.waiting
		wg.Go(st.q.wait)
	}
	streams := []struct {
		path, token string
		fn          func(streamItem, bool)
	}{{"/v1/kitchen/tickets:watch", s.kitchen, func(it streamItem, snap bool) { l.t.ticket(it.ID, it.Status, snap) }}}
	if lifecycle {
		streams = append(streams, struct {
			path, token string
			fn          func(streamItem, bool)
		}{"/v1/delivery/deliveries:watch", s.courier, func(it streamItem, snap bool) { l.t.delivery(it.ID, it.Status, snap) }})
	}
	for _, st := range streams {
		up := make(chan struct{})
		wg.Go(func() { watch(wctx, s, st.path, st.token, up, &l.reconnects, st.fn) })
		select {
		case <-up:
		case <-ctx.Done():
			l.stop()
			return nil, ctx.Err()
		case <-time.After(streamOpenTimeout):
			l.stop()
			return nil, fmt.Errorf("the live stream %s%s did not open within %s", o.url, st.path, streamOpenTimeout)
		}
	}
	return l, nil
}

// phaseSpec is one phase: an open-model rate or a closed loop of clients,
// for a duration or a number of orders, then a drain.
type phaseSpec struct {
	name       string
	rate       float64
	clients    int
	duration   time.Duration
	orders     int           // 0: no limit
	drainIdle  time.Duration // the drain ends when the backlog has not moved for this long
	drainLimit time.Duration // or after this long in all
}

// phase runs one phase and returns its index in the tracker. The CPU of
// every source is read before it and after its drain, once the stack's CPU
// has settled (see settle).
func (l *loader) phase(ctx context.Context, spec phaseSpec) int {
	before, errs := readAll(ctx, l.cpuClient, l.o.sources)
	for _, err := range errs {
		fmt.Fprintf(l.stderr, "loadgen: CPU before %s: %v\n", spec.name, err)
	}
	idx := l.t.begin(spec.name, spec.rate, spec.clients)
	p := l.t.phases[idx]

	tickCtx, stopTicks := context.WithCancel(ctx)
	ticks := sync.WaitGroup{}
	ticks.Go(func() { l.progress(tickCtx, idx) })

	begin := time.Now()
	if spec.clients > 0 {
		l.closedLoop(ctx, idx, spec)
	} else {
		l.openLoop(ctx, idx, spec)
	}
	sending := time.Since(begin)
	backlog := l.t.backlog(idx)
	drain := l.drain(ctx, idx, spec.drainIdle, spec.drainLimit)

	after, errs := settle(context.WithoutCancel(ctx), l.cpuClient, l.o.sources, 500*time.Millisecond, settleLimit)
	for _, err := range errs {
		fmt.Fprintf(l.stderr, "loadgen: CPU after %s: %v\n", spec.name, err)
	}
	stopTicks()
	ticks.Wait()

	l.t.mu.Lock()
	defer l.t.mu.Unlock()
	p.sending, p.drain, p.backlog = sending, drain, backlog
	if len(l.o.sources) > 0 {
		p.cpu = cpuReport(l.o.sources, before, after, p.accepted)
	}
	return idx
}

// openLoop sends request i at its due time from the schedule, whatever
// the latency of the ones before. A request that cannot start on time
// (the generator fell behind, or -max-inflight requests are outstanding)
// starts as soon as it can and counts as late; its latency is counted from
// its due time all the same.
func (l *loader) openLoop(ctx context.Context, idx int, spec phaseSpec) {
	sched := schedule{start: time.Now(), rate: spec.rate}
	end := sched.start.Add(spec.duration)
	slots := make(chan struct{}, l.o.maxInflight)
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i := 0; spec.orders == 0 || i < spec.orders; i++ {
		due := sched.at(i)
		if !due.Before(end) {
			return
		}
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		started := time.Now()
		l.t.sent(idx, due, started, late(due, started, l.o.lateAfter))
		n := int(l.seq.Add(1))
		wg.Go(func() {
			defer func() { <-slots }()
			l.placeOne(ctx, idx, n, due)
		})
	}
}

// closedLoop runs spec.clients clients, each sending its next order when
// the last is answered.
func (l *loader) closedLoop(ctx context.Context, idx int, spec phaseSpec) {
	end := time.Now().Add(spec.duration)
	var count atomic.Int64
	var wg sync.WaitGroup
	for range spec.clients {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(end) {
				if c := count.Add(1); spec.orders > 0 && c > int64(spec.orders) {
					return
				}
				now := time.Now()
				l.t.sent(idx, now, now, false)
				l.placeOne(ctx, idx, int(l.seq.Add(1)), now)
			}
		})
	}
	wg.Wait()
}

func (l *loader) placeOne(ctx context.Context, idx, n int, due time.Time) {
	l.inflight.Add(1)
	defer l.inflight.Add(-1)
	// Deliveries spread evenly among pickups: order n is a delivery when
	// n*share crosses a whole number.
	share := l.o.deliveries
	delivery := l.o.mode == modeLifecycle && int(float64(n)*share) > int(float64(n-1)*share)
	r := l.shop.place(ctx, fmt.Sprintf("loadgen-%s-n%d", l.nonce, n), n, delivery) // letters break digit runs: keys are scanned for card numbers
	l.t.answered(idx, due, delivery, r)
}

// drain waits until every accepted order of the phase (of all phases when
// idx < 0) is done, the backlog stops moving for idle, or limit passes.
func (l *loader) drain(ctx context.Context, idx int, idle, limit time.Duration) time.Duration {
	begin := time.Now()
	last, moved := -1, begin
	for ctx.Err() == nil {
		n := l.t.backlog(idx)
		if n == 0 {
			break
		}
		now := time.Now()
		if n != last {
			last, moved = n, now
		}
		if now.Sub(moved) >= idle || now.Sub(begin) >= limit {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(begin)
}

// progress samples the phase every second and prints a line on stderr.
func (l *loader) progress(ctx context.Context, idx int) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		pr := l.t.sample(idx, int(l.inflight.Load()))
		if !l.o.progress {
			continue
		}
		fmt.Fprintf(l.stderr, "%-12s %4.0fs  %6.1f/s  sent %d  ok %d  err %d  late %d  p50 %s  p99 %s  inflight %d  backlog %d\n",
			l.t.phases[idx].name, pr.elapsed.Seconds(), float64(pr.lastAccepted), pr.sent, pr.accepted, pr.errors, pr.late,
			fmtMs(pr.p50), fmtMs(pr.p99), pr.inflight, pr.backlog)
	}
}

func fmtMs(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

// runLoad is a load run: one phase, or the steps of a ramp, then a final
// drain, then the report.
func runLoad(ctx context.Context, o options, stdout, stderr io.Writer) (*Report, error) {
	l, err := start(ctx, o, stderr)
	if err != nil {
		return nil, err
	}
	var ramp *RampResult
	if o.ramp {
		plan := rampPlan{start: o.rate, step: o.rampStep, limit: o.rampMax, hold: o.rampHold, target: o.p99}
		ramp = &RampResult{TargetP99ms: ms(o.p99)}
		for _, rate := range plan.rates() {
			idx := l.phase(ctx, phaseSpec{name: fmt.Sprintf("ramp %g/s", rate), rate: rate, duration: o.rampHold,
				drainIdle: o.rampSettle, drainLimit: o.rampSettle})
			if ctx.Err() != nil {
				break
			}
			if !ramp.record(plan, l.stepResult(idx, rate)) {
				break
			}
		}
	} else {
		l.phase(ctx, phaseSpec{name: o.mode, rate: o.rate, clients: o.clients, duration: o.duration, orders: o.orders,
			drainIdle: o.drain, drainLimit: 10 * time.Minute})
	}
	if o.ramp && o.display {
		// Orders of a step that failed may still come through: they are
		// late, not lost.
		l.drain(ctx, -1, o.drain, 10*time.Minute)
	}
	l.stop()
	if ctx.Err() != nil && len(l.t.phases) == 0 {
		return nil, errors.New("interrupted")
	}
	if o.display {
		l.confirmUnseen(ctx)
	}
	rep := l.report()
	rep.Ramp = ramp
	return rep, nil
}

// stepResult is what the ramp judges of a finished step.
func (l *loader) stepResult(idx int, rate float64) stepResult {
	l.t.mu.Lock()
	p := l.t.phases[idx]
	r := stepResult{rate: rate, sent: p.sent, errors: p.errors, late: p.late}
	lat := append([]time.Duration(nil), p.placeLat...)
	l.t.mu.Unlock()
	r.backlog = l.t.backlog(idx)
	slices.Sort(lat)
	r.p99 = percentile(lat, 0.99)
	return r
}

// streamOpenTimeout bounds the wait for a live stream's first answer: a
// kitchen that has just started on a store of many tickets reads them all
// first.
const streamOpenTimeout = 30 * time.Second

// maxConfirm bounds the orders confirmUnseen asks about.
const maxConfirm = 20_000

// confirmUnseen asks the order service about every accepted order the
// kitchen display never showed. One the kitchen took (any status past
// PLACED) is unseen, not lost: under overload the display stream falls
// behind and starts over from a snapshot that lists only the open tickets.
func (l *loader) confirmUnseen(ctx context.Context) {
	l.t.mu.Lock()
	var ids []string
	for id, o := range l.t.orders {
		if o.accepted && o.displayed.IsZero() && len(ids) < maxConfirm {
			ids = append(ids, id)
		}
	}
	l.t.mu.Unlock()
	if len(ids) == 0 || ctx.Err() != nil {
		return
	}
	taken := make(chan string, len(ids))
	work := make(chan string)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for id := range work {
				code, body, err := l.shop.do(ctx, http.MethodGet, "/v1/orders/"+id, l.shop.kitchen, nil, nil)
				var o struct {
					Status string `json:"status"` // GET /v1/orders/{id} answers the order itself
				}
				if err == nil && code == http.StatusOK && json.Unmarshal(body, &o) == nil &&
					o.Status != "" && o.Status != "ORDER_STATUS_PLACED" {
					taken <- id
				}
			}
		})
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	close(taken)
	l.t.mu.Lock()
	for id := range taken {
		l.t.orders[id].confirmed = true
	}
	l.t.mu.Unlock()
}
