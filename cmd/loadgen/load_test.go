package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slowShop is a gateway stand-in whose POST /v1/orders answers after
// delay, to see what the generator does while answers are slow.
func slowShop(t *testing.T, delay time.Duration) (*shop, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/orders" || r.Header.Get("Idempotency-Key") == "" {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusBadRequest)
			return
		}
		time.Sleep(delay)
		fmt.Fprintf(w, `{"id":"o%d"}`, n.Add(1))
	}))
	t.Cleanup(srv.Close)
	return &shop{base: srv.URL, http: srv.Client(), tokens: []string{"t"}, pizzas: []string{"margherita"}}, &n
}

func testLoader(s *shop) *loader {
	return &loader{o: options{mode: modePlace, maxInflight: 1024, lateAfter: 10 * time.Millisecond},
		shop: s, t: newTracker(false, false), stderr: io.Discard, nonce: "test"}
}

// The open model keeps its schedule while every answer takes 300ms: 40
// orders in one second at 40/s, not one every 300ms, and each latency is
// counted from its due time.
func TestOpenLoopIgnoresSlowAnswers(t *testing.T) {
	const delay = 300 * time.Millisecond
	s, _ := slowShop(t, delay)
	l := testLoader(s)
	begin := time.Now()
	idx := l.phase(context.Background(), phaseSpec{name: "open", rate: 40, duration: time.Second, drainIdle: time.Second, drainLimit: time.Second})
	took := time.Since(begin)
	rep := l.report()
	p := rep.Phases[idx]
	if p.Sent != 40 || p.Accepted != 40 || p.Errors != 0 {
		t.Errorf("sent %d, accepted %d, errors %d; want 40, 40, 0", p.Sent, p.Accepted, p.Errors)
	}
	// About 1.3s on time; a loaded CI machine took 2.2s. Requests that
	// waited for answers take at least 40 x 300ms = 12s, so half that
	// tells the two apart whatever the load.
	if serial := 40 * delay; took >= serial/2 {
		t.Errorf("the phase took %s, half or more of the %s of answering one after another: requests waited for answers (coordinated omission)", took, serial)
	}
	if p.Place.P50ms < 300 {
		t.Errorf("p50 = %gms, want at least the 300ms every answer took", p.Place.P50ms)
	}
}

// With -max-inflight reached, requests start late and their latency
// includes the wait.
func TestOpenLoopCountsLateStarts(t *testing.T) {
	s, _ := slowShop(t, 200*time.Millisecond)
	l := testLoader(s)
	l.o.maxInflight = 2
	idx := l.phase(context.Background(), phaseSpec{name: "open", rate: 50, duration: 400 * time.Millisecond, drainIdle: time.Second, drainLimit: time.Second})
	p := l.report().Phases[idx]
	if p.Sent != 20 || p.Accepted != 20 {
		t.Errorf("sent %d, accepted %d; want 20, 20", p.Sent, p.Accepted)
	}
	if p.Late < 15 {
		t.Errorf("late = %d, want most of the 20: only 2 could be in flight at once", p.Late)
	}
	if p.Place.P99ms < 1000 {
		t.Errorf("p99 = %gms, want the queueing behind 2 slots counted (about 10 rounds of 200ms)", p.Place.P99ms)
	}
}

// A closed loop sends the next order only when the last is answered.
func TestClosedLoop(t *testing.T) {
	s, n := slowShop(t, 50*time.Millisecond)
	l := testLoader(s)
	idx := l.phase(context.Background(), phaseSpec{name: "closed", clients: 2, duration: time.Hour, orders: 10})
	p := l.report().Phases[idx]
	if p.Sent != 10 || p.Accepted != 10 || n.Load() != 10 {
		t.Errorf("sent %d, accepted %d, served %d; want 10 each (-orders bounds the run)", p.Sent, p.Accepted, n.Load())
	}
	if p.Model != "closed" || p.Clients != 2 {
		t.Errorf("model %q clients %d, want closed, 2", p.Model, p.Clients)
	}
	if p.SendingS < 0.2 {
		t.Errorf("10 orders of 50ms over 2 clients took %gs, want at least 0.25s", p.SendingS)
	}
}

func TestQueueRunsEveryJob(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	q := newQueue(ctx, 3)
	var mu sync.Mutex
	done := map[int]bool{}
	var wg sync.WaitGroup
	for i := range 1000 {
		wg.Add(1)
		q.push(func(context.Context) {
			defer wg.Done()
			mu.Lock()
			done[i] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	cancel()
	q.wait()
	if len(done) != 1000 {
		t.Errorf("%d of 1000 jobs ran", len(done))
	}
}

// A staff call rides out a restart: it retries 5xx and unanswered calls,
// takes a 409 after a retry as its own earlier attempt, and gives up at
// once on any other 4xx.
func TestStaffStep(t *testing.T) {
	var mu sync.Mutex
	answers := map[string][]int{
		"/v1/kitchen/tickets/a:start": {503, 503, 409},
		"/v1/kitchen/tickets/b:start": {409},
		"/v1/kitchen/tickets/c:start": {404},
		"/v1/kitchen/tickets/d:start": {503, 200},
	}
	calls := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		seq := answers[r.URL.Path]
		code := seq[min(calls[r.URL.Path], len(seq)-1)]
		calls[r.URL.Path]++
		w.WriteHeader(code)
	}))
	defer srv.Close()
	tr := newTracker(true, true)
	idx := tr.begin("lifecycle", 1, 0)
	for _, id := range []string{"a", "b", "c", "d"} {
		tr.answered(idx, time.Now(), false, placed{id: id, status: 200})
	}
	st := &staff{shop: &shop{base: srv.URL, http: srv.Client()}, t: tr}
	for _, tt := range []struct {
		id    string
		ok    bool
		calls int
	}{{"a", true, 3}, {"b", false, 1}, {"c", false, 1}, {"d", true, 2}} {
		path := "/v1/kitchen/tickets/" + tt.id + ":start"
		ok := st.step(context.Background(), tt.id, "kitchen start", path, "tok")
		if ok != tt.ok || calls[path] != tt.calls {
			t.Errorf("step %s with answers %v = %v after %d calls, want %v after %d", tt.id, answers[path], ok, calls[path], tt.ok, tt.calls)
		}
	}
	if got := tr.phases[idx].calls["kitchen start"].statuses["503"]; got != 3 {
		t.Errorf("recorded %d answers 503, want 3 (every attempt counts)", got)
	}
}

// TestConfirmUnseen: an accepted order the display never showed is lost
// only if the order service has not seen the kitchen take it either.
func TestConfirmUnseen(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/orders/taken":
			fmt.Fprint(w, `{"id":"taken","status":"ORDER_STATUS_ACCEPTED"}`)
		case "/v1/orders/stuck":
			fmt.Fprint(w, `{"id":"stuck","status":"ORDER_STATUS_PLACED"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	l := testLoader(&shop{base: srv.URL, http: srv.Client(), kitchen: "k", tokens: []string{"t"}})
	l.o.display = true
	l.t.display = true
	p := l.t.begin("run", 10, 0)
	for _, id := range []string{"taken", "stuck", "missing"} {
		l.t.answered(p, time.Now(), false, placed{id: id, status: http.StatusOK})
	}
	l.confirmUnseen(context.Background())
	rep := l.report()
	if rep.Lost != 2 || rep.Unseen != 1 {
		t.Errorf("lost %d, unseen %d; want 2 lost (stuck, missing) and 1 unseen (taken)", rep.Lost, rep.Unseen)
	}
}

// In lifecycle mode an order the display never showed was never started,
// readied or handed over by loadgen: even when the order service says the
// kitchen took it (unseen, not lost), its lifecycle did not end, and the
// run must not pass as 0 lost, 0 incomplete.
func TestConfirmUnseenLifecycleIsIncomplete(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"id":"taken","status":"ORDER_STATUS_ACCEPTED"}`)
	}))
	t.Cleanup(srv.Close)
	l := testLoader(&shop{base: srv.URL, http: srv.Client(), kitchen: "k", tokens: []string{"t"}})
	l.o.mode, l.o.display = modeLifecycle, true
	l.t = newTracker(true, true)
	p := l.t.begin("lifecycle", 10, 0)
	l.t.answered(p, time.Now(), false, placed{id: "taken", status: http.StatusOK})
	l.confirmUnseen(context.Background())
	rep := l.report()
	if rep.Lost != 0 || rep.Unseen != 1 || rep.Incomplete != 1 {
		t.Errorf("lost %d, unseen %d, incomplete %d; want 0, 1, 1", rep.Lost, rep.Unseen, rep.Incomplete)
	}
	if rep.failed() == "" {
		t.Error("failed() is empty for a lifecycle run with an order that never completed")
	}
}
