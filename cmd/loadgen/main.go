// Command loadgen drives a running Pizzashop through its REST gateway and
// reports what a customer and the kitchen would see: throughput, latency per
// call, time from an accepted order to its ticket on the kitchen display,
// and how many accepted orders were lost or duplicated (both must be 0).
//
//	loadgen -url http://127.0.0.1:8080 -rate 50 -duration 30s -lifecycle
//
// Tokens are signed with AUTH_SECRET (the local development key when unset),
// so it works against `make run` out of the box. Every request loop is
// bounded by -duration and -max-orders.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pizzashop/pizzashop/pkg/auth"
)

type options struct {
	url         string
	rate        float64
	duration    time.Duration
	concurrency int
	customers   int
	maxOrders   int
	drain       time.Duration
	lifecycle   bool
	jsonOut     bool
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "http://127.0.0.1:8080", "gateway base URL (loopback only)")
	flag.Float64Var(&o.rate, "rate", 50, "orders per second to attempt; 0 means as fast as -concurrency allows")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "how long to place orders")
	flag.IntVar(&o.concurrency, "concurrency", 8, "concurrent order placers")
	flag.IntVar(&o.customers, "customers", 20, "distinct customers")
	flag.IntVar(&o.maxOrders, "max-orders", 100000, "stop after this many orders")
	flag.DurationVar(&o.drain, "drain", 30*time.Second, "give up waiting for accepted orders to reach the display after this long without progress")
	flag.BoolVar(&o.lifecycle, "lifecycle", false, "also act as kitchen staff: start and ready every ticket as it arrives")
	flag.BoolVar(&o.jsonOut, "json", false, "print the report as JSON")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	rep.print(os.Stdout, o.jsonOut)
	if rep.Lost > 0 || rep.Duplicated > 0 {
		os.Exit(3)
	}
}

// recorder collects latencies of one kind of call.
type recorder struct {
	mu     sync.Mutex
	lat    []time.Duration
	status map[int]int
}

func (r *recorder) add(d time.Duration, code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.status == nil {
		r.status = map[int]int{}
	}
	r.status[code]++
	if code < 300 {
		r.lat = append(r.lat, d)
	}
}

// Stats summarizes a recorder.
type Stats struct {
	OK       int         `json:"ok"`
	Statuses map[int]int `json:"statuses"`
	P50ms    float64     `json:"p50_ms"`
	P95ms    float64     `json:"p95_ms"`
	P99ms    float64     `json:"p99_ms"`
	Maxms    float64     `json:"max_ms"`
}

func summarize(lat []time.Duration, statuses map[int]int) Stats {
	s := Stats{OK: len(lat), Statuses: statuses}
	if len(lat) == 0 {
		return s
	}
	sorted := slices.Clone(lat)
	slices.Sort(sorted)
	q := func(p float64) float64 {
		return float64(sorted[min(len(sorted)-1, int(p*float64(len(sorted))))].Microseconds()) / 1000
	}
	s.P50ms, s.P95ms, s.P99ms = q(0.50), q(0.95), q(0.99)
	s.Maxms = float64(sorted[len(sorted)-1].Microseconds()) / 1000
	return s
}

// Report is what a run measured.
type Report struct {
	Duration          float64          `json:"duration_s"`
	Placed            int              `json:"orders_accepted"`
	Throughput        float64          `json:"orders_per_s"`
	Calls             map[string]Stats `json:"calls"`
	OrderToDisplay    Stats            `json:"order_to_kitchen_display"`
	OrderToReady      *Stats           `json:"order_to_ready,omitempty"`
	Lost              int              `json:"lost"`
	Duplicated        int              `json:"duplicated"`
	DisplayReconnects int              `json:"display_reconnects"`
}

func (r Report) print(w io.Writer, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r)
		return
	}
	fmt.Fprintf(w, "orders accepted   %d in %.1fs = %.1f orders/s\n", r.Placed, r.Duration, r.Throughput)
	names := make([]string, 0, len(r.Calls))
	for n := range r.Calls {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "%-22s %7s %9s %9s %9s %9s  statuses\n", "call", "ok", "p50 ms", "p95 ms", "p99 ms", "max ms")
	line := func(name string, s Stats) {
		fmt.Fprintf(w, "%-22s %7d %9.1f %9.1f %9.1f %9.1f  %v\n", name, s.OK, s.P50ms, s.P95ms, s.P99ms, s.Maxms, s.Statuses)
	}
	for _, n := range names {
		line(n, r.Calls[n])
	}
	line("order->display", r.OrderToDisplay)
	if r.OrderToReady != nil {
		line("order->ready", *r.OrderToReady)
	}
	fmt.Fprintf(w, "lost %d, duplicated %d, display reconnects %d\n", r.Lost, r.Duplicated, r.DisplayReconnects)
}

type client struct {
	base string
	http *http.Client
}

func (c *client) do(ctx context.Context, method, path, token string, body any, header map[string]string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

type menu struct {
	Pizzas []struct {
		ID        string `json:"id"`
		Available bool   `json:"available"`
	} `json:"pizzas"`
	Toppings []struct {
		ID        string `json:"id"`
		Available bool   `json:"available"`
	} `json:"toppings"`
}

func run(ctx context.Context, o options) (Report, error) {
	if !strings.HasPrefix(o.url, "http://127.") && !strings.HasPrefix(o.url, "http://localhost") && !strings.HasPrefix(o.url, "http://[::1]") {
		return Report{}, errors.New("-url must be a loopback address: this tool only loads servers on this machine")
	}
	secret := os.Getenv("AUTH_SECRET")
	if secret == "" {
		secret = auth.DevSecret
	}
	signer, err := auth.NewSigner(secret)
	if err != nil {
		return Report{}, err
	}
	token := func(role auth.Role, sub string) string {
		t, _, _ := signer.Sign(auth.Claims{Subject: sub, Role: role}, 2*time.Hour)
		return t
	}
	c := &client{base: strings.TrimSuffix(o.url, "/"), http: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: o.concurrency + 8},
	}}

	code, body, err := c.do(ctx, "GET", "/v1/menu", "", nil, nil)
	if err != nil || code != 200 {
		return Report{}, fmt.Errorf("read menu: status %d: %v", code, err)
	}
	var m menu
	if err := json.Unmarshal(body, &m); err != nil {
		return Report{}, fmt.Errorf("decode menu: %w", err)
	}
	var pizzas, toppings []string
	for _, p := range m.Pizzas {
		if p.Available {
			pizzas = append(pizzas, p.ID)
		}
	}
	for _, t := range m.Toppings {
		if t.Available {
			toppings = append(toppings, t.ID)
		}
	}
	if len(pizzas) == 0 {
		return Report{}, errors.New("no pizza is available on the menu")
	}

	kitchenTok := token(auth.RoleKitchen, "loadgen-kitchen")
	calls := map[string]*recorder{"POST /v1/orders": {}}
	if o.lifecycle {
		calls["POST :start"], calls["POST :ready"] = &recorder{}, &recorder{}
	}

	var (
		mu         sync.Mutex
		sentAt     = map[string]time.Time{} // accepted order id -> request start
		seenAt     = map[string]time.Time{} // order id -> first QUEUED on the display
		readyAt    = map[string]time.Time{}
		queuedSeen = map[string]int{}
	)
	displayCtx, stopDisplay := context.WithCancel(ctx)
	defer stopDisplay()
	var reconnects atomic.Int64
	onTicket := make(chan string, 4096)
	displayUp := make(chan struct{})
	go watchDisplay(displayCtx, c, kitchenTok, displayUp, &reconnects, func(id, status string, snapshot bool) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		switch status {
		case "TICKET_STATUS_QUEUED":
			if !snapshot {
				queuedSeen[id]++
			}
			if _, ok := seenAt[id]; !ok {
				seenAt[id] = now
				if o.lifecycle {
					select {
					case onTicket <- id:
					default:
					}
				}
			}
		case "TICKET_STATUS_READY":
			if _, ok := readyAt[id]; !ok {
				readyAt[id] = now
			}
		}
	})
	select {
	case <-displayUp:
	case <-time.After(10 * time.Second):
		return Report{}, errors.New("kitchen display stream did not open")
	}

	var staff sync.WaitGroup
	if o.lifecycle {
		staff.Go(func() {
			for {
				select {
				case <-displayCtx.Done():
					return
				case id := <-onTicket:
					for _, step := range []string{"start", "ready"} {
						t0 := time.Now()
						code, _, err := c.do(displayCtx, "POST", "/v1/kitchen/tickets/"+id+":"+step, kitchenTok, map[string]any{}, nil)
						if err != nil {
							code = 599
						}
						calls["POST :"+step].add(time.Since(t0), code)
					}
				}
			}
		})
	}

	// Place orders at the requested rate with a bounded number of workers.
	start := time.Now()
	deadline := start.Add(o.duration)
	var issued atomic.Int64
	tick := make(chan struct{}, o.concurrency)
	go func() {
		defer close(tick)
		if o.rate <= 0 {
			for time.Now().Before(deadline) && int(issued.Load()) < o.maxOrders && ctx.Err() == nil {
				tick <- struct{}{}
			}
			return
		}
		interval := time.Duration(float64(time.Second) / o.rate)
		next := time.Now()
		for n := 0; n < o.maxOrders && time.Now().Before(deadline) && ctx.Err() == nil; n++ {
			time.Sleep(time.Until(next))
			next = next.Add(interval)
			tick <- struct{}{}
		}
	}()
	var workers sync.WaitGroup
	for w := range o.concurrency {
		workers.Go(func() {
			for range tick {
				n := issued.Add(1)
				cust := fmt.Sprintf("loadgen-customer-%d", int(n)%o.customers)
				req := map[string]any{
					"item": map[string]any{
						"pizzaId":    pizzas[int(n)%len(pizzas)],
						"size":       []string{"SIZE_SMALL", "SIZE_MEDIUM", "SIZE_LARGE"}[int(n)%3],
						"toppingIds": pick(toppings, int(n)),
					},
					"fulfillment":   "FULFILLMENT_PICKUP",
					"paymentMethod": "PAYMENT_METHOD_CASH",
				}
				t0 := time.Now()
				code, body, err := c.do(ctx, "POST", "/v1/orders", token(auth.RoleCustomer, cust), req,
					map[string]string{"Idempotency-Key": fmt.Sprintf("loadgen-%d-%d-%d", start.UnixNano(), w, n)})
				if err != nil {
					code = 599
				}
				calls["POST /v1/orders"].add(time.Since(t0), code)
				if code != 200 {
					continue
				}
				var out struct {
					ID string `json:"id"`
				}
				if json.Unmarshal(body, &out) == nil && out.ID != "" {
					mu.Lock()
					sentAt[out.ID] = t0
					mu.Unlock()
				}
			}
		})
	}
	workers.Wait()
	placing := time.Since(start)

	// Wait until every accepted order is on the display (and ready, with
	// -lifecycle). A backlog still draining is late, not lost: the wait goes
	// on while orders keep arriving, and ends after -drain with no progress
	// (or ten minutes in all).
	lastMissing, lastProgress, hardStop := -1, time.Now(), time.Now().Add(10*time.Minute)
	for ctx.Err() == nil && time.Since(lastProgress) < o.drain && time.Now().Before(hardStop) {
		mu.Lock()
		missing := 0
		for id := range sentAt {
			if _, ok := seenAt[id]; !ok {
				missing++
			} else if _, ok := readyAt[id]; o.lifecycle && !ok {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
		if missing != lastMissing {
			lastMissing, lastProgress = missing, time.Now()
		}
		time.Sleep(200 * time.Millisecond)
	}
	stopDisplay()
	staff.Wait()

	mu.Lock()
	defer mu.Unlock()
	rep := Report{Duration: placing.Seconds(), Placed: len(sentAt), Calls: map[string]Stats{}, DisplayReconnects: int(reconnects.Load())}
	rep.Throughput = float64(rep.Placed) / placing.Seconds()
	for name, r := range calls {
		rep.Calls[name] = summarize(r.lat, r.status)
	}
	var toDisplay, toReady []time.Duration
	for id, t0 := range sentAt {
		seen, ok := seenAt[id]
		if !ok {
			rep.Lost++
			continue
		}
		toDisplay = append(toDisplay, seen.Sub(t0))
		if queuedSeen[id] > 1 {
			rep.Duplicated++
		}
		if r, ok := readyAt[id]; ok {
			toReady = append(toReady, r.Sub(t0))
		}
	}
	rep.OrderToDisplay = summarize(toDisplay, nil)
	if o.lifecycle {
		s := summarize(toReady, nil)
		rep.OrderToReady = &s
	}
	return rep, nil
}

func pick(toppings []string, n int) []string {
	k := n % 4
	out := []string{}
	for i := 0; i < k && i < len(toppings); i++ {
		out = append(out, toppings[(n+i*7)%len(toppings)])
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// watchDisplay follows the kitchen display stream, reconnecting when it
// drops, and calls fn for every ticket it shows.
func watchDisplay(ctx context.Context, c *client, token string, up chan<- struct{}, reconnects *atomic.Int64, fn func(id, status string, snapshot bool)) {
	first := true
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", c.base+"/v1/kitchen/tickets:watch", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := (&http.Client{}).Do(req)
		if err == nil && resp.StatusCode == 200 {
			if first {
				close(up)
				first = false
			}
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				var line struct {
					Result struct {
						Ticket struct {
							ID     string `json:"id"`
							Status string `json:"status"`
						} `json:"ticket"`
						Snapshot bool `json:"snapshot"`
					} `json:"result"`
				}
				if json.Unmarshal(sc.Bytes(), &line) == nil && line.Result.Ticket.ID != "" {
					fn(line.Result.Ticket.ID, line.Result.Ticket.Status, line.Result.Snapshot)
				}
			}
			resp.Body.Close()
		} else if resp != nil {
			resp.Body.Close()
		}
		if ctx.Err() != nil {
			return
		}
		reconnects.Add(1)
		time.Sleep(500 * time.Millisecond)
	}
}
