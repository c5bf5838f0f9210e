package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// streamEvent is one line of a kitchen display or delivery board stream.
type streamEvent struct {
	Result struct {
		Ticket   *streamItem `json:"ticket"`
		Delivery *streamItem `json:"delivery"`
		Snapshot bool        `json:"snapshot"`
	} `json:"result"`
}

type streamItem struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// watch follows a live stream at path, reconnecting when it drops, and
// hands every item to fn. up is closed once the stream first opens.
func watch(ctx context.Context, s *shop, path, token string, up chan<- struct{}, reconnects *atomic.Int64, fn func(it streamItem, snapshot bool)) {
	client := &http.Client{Transport: s.http.Transport} // no timeout: the stream stays open
	first := true
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+path, nil)
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err == nil && resp.StatusCode == http.StatusOK {
			if first {
				close(up)
				first = false
			}
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 4<<20)
			for sc.Scan() {
				var ev streamEvent
				if json.Unmarshal(sc.Bytes(), &ev) != nil {
					continue
				}
				for _, it := range []*streamItem{ev.Result.Ticket, ev.Result.Delivery} {
					if it != nil && it.ID != "" {
						fn(*it, ev.Result.Snapshot)
					}
				}
			}
		}
		if resp != nil {
			resp.Body.Close()
		}
		if ctx.Err() != nil {
			return
		}
		reconnects.Add(1)
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// queue is an unbounded work queue served by a fixed number of workers,
// so a burst of tickets is never dropped, only delayed.
type queue struct {
	mu      sync.Mutex
	items   []func(context.Context)
	wake    chan struct{}
	workers sync.WaitGroup
}

func newQueue(ctx context.Context, workers int) *queue {
	q := &queue{wake: make(chan struct{}, 1)}
	for range workers {
		q.workers.Go(func() {
			for {
				q.mu.Lock()
				var job func(context.Context)
				if len(q.items) > 0 {
					job = q.items[0]
					q.items[0] = nil
					q.items = q.items[1:]
				}
				more := len(q.items) > 0
				q.mu.Unlock()
				if more {
					q.signal()
				}
				if job != nil {
					job(ctx)
					continue
				}
				select {
				case <-ctx.Done():
					return
				case <-q.wake:
				}
			}
		})
	}
	return q
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *queue) push(job func(context.Context)) {
	q.mu.Lock()
	q.items = append(q.items, job)
	q.mu.Unlock()
	q.signal()
}

// wait waits for the workers, which stop once ctx ends.
func (q *queue) wait() { q.workers.Wait() }

// staff plays the kitchen, the courier and the counter for every order of
// the run that reaches them.
type staff struct {
	shop *shop
	t    *tracker
	q    *queue
}

// staffRetry bounds how long a staff call is retried while the shop does
// not answer or answers 5xx (a service restarting, the store down): long
// enough to ride out a restart in a fault drill.
const staffRetry = 30 * time.Second

// step makes one staff call and reports whether it succeeded. It retries
// with backoff while the shop does not answer or answers 5xx. A 409 after
// such a retry means the earlier attempt went through and only its answer
// was lost, so it counts as done.
func (st *staff) step(ctx context.Context, id, name, path, token string) bool {
	giveUp := time.Now().Add(staffRetry)
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		t0 := time.Now()
		code, _, _ := st.shop.do(ctx, http.MethodPost, path, token, []byte("{}"), nil)
		if ctx.Err() != nil {
			return false
		}
		st.t.call(id, name, time.Since(t0), code)
		switch {
		case code == http.StatusOK:
			return true
		case code == http.StatusConflict && attempt > 0:
			return true
		case code < 500 || time.Now().After(giveUp):
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (st *staff) ticket(id string) {
	st.q.push(func(ctx context.Context) {
		base := "/v1/kitchen/tickets/" + id
		if st.step(ctx, id, "kitchen start", base+":start", st.shop.kitchen) {
			st.step(ctx, id, "kitchen ready", base+":ready", st.shop.kitchen)
		}
	})
}

func (st *staff) waiting(id string, delivery bool) {
	st.q.push(func(ctx context.Context) {
		base := "/v1/delivery/deliveries/" + id
		if !delivery {
			if st.step(ctx, id, "counter pickup", base+":pickup", st.shop.courier) {
				st.t.completed(id)
			}
			return
		}
		if st.step(ctx, id, "courier dispatch", base+":dispatch", st.shop.courier) &&
			st.step(ctx, id, "courier deliver", base+":deliver", st.shop.courier) {
			st.t.completed(id)
		}
	})
}
