package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/e2e/stack"
)

// benchParallelism multiplies GOMAXPROCS into the number of clients
// posting at once: a shop takes orders from many customers together.
const benchParallelism = 4

// BenchmarkPlaceOrder places a fresh order per iteration through the
// gateway of a running shop: gateway, order service, menu pricing, the
// store write with its outbox event, and the relay publishing it, while the
// kitchen consumes what is published.
func BenchmarkPlaceOrder(b *testing.B) {
	s := stack.Start(b)
	pizzas, toppings := available(b, getMenu(b, s), 1, 2)
	body := benchBody(b, pizzas[0], toppings)
	benchPlace(b, s.URL("/v1/orders"), benchTokens(s), body)
}

// BenchmarkPlaceOrderBaseline sends the same requests through the same
// gateway binary to an order service that stores and publishes nothing
// (`loadgen baseline-order`, the baseline of `make bench-capacity` too): the
// cost of the edge alone (HTTP, JSON, auth headers, one gRPC hop), to set
// BenchmarkPlaceOrder against.
func BenchmarkPlaceOrderBaseline(b *testing.B) {
	s := stack.Start(b)
	pizzas, toppings := available(b, getMenu(b, s), 1, 2)
	body := benchBody(b, pizzas[0], toppings)
	addr := startBaselineOrders(b)
	gateway := s.StartGateway("gateway-baseline", "ORDER_ADDR="+addr)
	benchPlace(b, gateway+"/v1/orders", benchTokens(s), body)
}

func benchBody(b *testing.B, pizza string, toppings []string) []byte {
	body, err := json.Marshal(pickupBody(pizza, "SIZE_MEDIUM", toppings...))
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// benchTokens are credentials of a few customers, one per client.
func benchTokens(s *stack.Stack) []string {
	var toks []string
	for range 64 {
		toks = append(toks, s.Token("customer", uniq("bench")))
	}
	return toks
}

// benchPlace posts body to url b.N times from parallel clients, and
// reports the latency percentiles of one request and the throughput.
func benchPlace(b *testing.B, url string, tokens []string, body []byte) {
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute},
	}
	defer client.CloseIdleConnections()
	post := func(token string) (time.Duration, error) {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		begin := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(begin)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("POST %s = %d %s", url, resp.StatusCode, raw)
		}
		return took, nil
	}
	// Warm the connections and the services' caches.
	for i := range 20 {
		if _, err := post(tokens[i%len(tokens)]); err != nil {
			b.Fatalf("warm-up: %v", err)
		}
	}

	var (
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, b.N)
		client0   atomic.Int64
	)
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	begin := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		token := tokens[int(client0.Add(1))%len(tokens)]
		var mine []time.Duration
		for pb.Next() {
			took, err := post(token)
			if err != nil {
				b.Error(err)
				continue
			}
			mine = append(mine, took)
		}
		mu.Lock()
		latencies = append(latencies, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(begin)
	b.StopTimer()

	if len(latencies) == 0 {
		return
	}
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		i := int(float64(len(latencies))*p+0.5) - 1
		i = max(0, min(i, len(latencies)-1))
		return float64(latencies[i].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(len(latencies))/elapsed.Seconds(), "orders/s")
}

// startBaselineOrders starts `loadgen baseline-order`: an OrderService
// whose CreateOrder answers one fixed order, as large as a real one,
// without storing or publishing, with grpc.health.v1 so that the gateway's
// /readyz passes. It returns its address; it stops when b ends.
func startBaselineOrders(b *testing.B) string {
	addr := stack.FreeAddr(b)
	cmd := exec.Command(loadgenBinary(b), "baseline-order", "-addr", addr)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	return addr
}

// loadgenBinary builds cmd/loadgen into a temporary directory of t and
// returns its path.
func loadgenBinary(t testing.TB) string {
	t.Helper()
	gowork, err := exec.Command("go", "env", "GOWORK").Output()
	if err != nil || strings.TrimSpace(string(gowork)) == "" {
		t.Fatalf("go env GOWORK = %q, %v: the test runs inside the workspace", gowork, err)
	}
	bin := filepath.Join(t.TempDir(), "loadgen")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/loadgen")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gowork)))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/loadgen: %v\n%s", err, out)
	}
	return bin
}

// loadReport is the part of loadgen's JSON report the test reads.
type loadReport struct {
	Sent, Accepted, Errors, Lost, Duplicated, Incomplete int
	Phases                                               []struct {
		Sent, Accepted, Errors, Lost, Duplicated, Incomplete int
		BacklogAtEnd                                         int `json:"backlog_at_end"`
		OrderToDisplay                                       *struct {
			Count int     `json:"count"`
			P99ms float64 `json:"p99_ms"`
		} `json:"order_to_display"`
		OrderToComplete *struct {
			Count int `json:"count"`
		} `json:"order_to_complete"`
		CPU *struct {
			Orders          int     `json:"orders"`
			TotalSeconds    float64 `json:"total_cpu_s"`
			TotalMsPerOrder float64 `json:"total_cpu_ms_per_order"`
			Missing         []string
			Processes       []struct {
				Name       string
				Seconds    float64 `json:"cpu_s"`
				MsPerOrder float64 `json:"cpu_ms_per_order"`
			}
		}
		Timeline []struct{ Sent, Accepted, Errors int }
	}
}

// TestLoadgenReportAddsUp runs loadgen's full lifecycle briefly against a
// real stack and checks that its report adds up: every order sent was
// accepted or failed, every accepted one reached the kitchen display and
// the end of its lifecycle, and the CPU of every process of the stack is
// in it (the embedded NATS and store run in this test process).
func TestLoadgenReportAddsUp(t *testing.T) {
	stack.Parallel(t)
	s := stack.Start(t)
	bin := loadgenBinary(t)
	metrics := []string{"gateway=" + strings.TrimPrefix(s.URL(""), "http://")}
	for _, name := range []string{"menu", "order", "kitchen", "delivery"} {
		metrics = append(metrics, name+"="+s.MetricsAddr(name))
	}
	prefix := filepath.Join(t.TempDir(), "report")
	const orders = 20
	cmd := exec.Command(bin, "-url", s.URL(""), "-mode", "lifecycle", "-rate", "10", "-duration", "10s", "-orders", fmt.Sprint(orders),
		"-metrics", strings.Join(metrics, ","), "-pid", fmt.Sprintf("store=%d", os.Getpid()),
		"-report", prefix, "-progress=false", "-drain", "30s")
	cmd.Env = append(os.Environ(), "AUTH_SECRET="+s.Secret())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("loadgen: %v\n%s", err, out)
	}
	t.Logf("loadgen:\n%s", out)
	raw, err := os.ReadFile(prefix + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var rep loadReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("decode the report: %v\n%s", err, raw)
	}
	if len(rep.Phases) != 1 {
		t.Fatalf("%d phases, want 1:\n%s", len(rep.Phases), out)
	}
	p := rep.Phases[0]
	if p.Sent != orders || p.Sent != p.Accepted+p.Errors || rep.Sent != p.Sent {
		t.Errorf("sent %d (in all %d), accepted %d, errors %d: want %d sent = accepted + errors", p.Sent, rep.Sent, p.Accepted, p.Errors, orders)
	}
	if p.Errors != 0 || p.Lost != 0 || p.Duplicated != 0 || p.Incomplete != 0 {
		t.Errorf("errors %d, lost %d, duplicated %d, incomplete %d; want 0 each\n%s", p.Errors, p.Lost, p.Duplicated, p.Incomplete, out)
	}
	if p.OrderToDisplay == nil || p.OrderToDisplay.Count != p.Accepted || p.OrderToComplete == nil || p.OrderToComplete.Count != p.Accepted {
		t.Errorf("order to display %+v, to complete %+v: want all %d accepted orders", p.OrderToDisplay, p.OrderToComplete, p.Accepted)
	}
	var sent, accepted int
	for _, sec := range p.Timeline {
		sent, accepted = sent+sec.Sent, accepted+sec.Accepted
	}
	if sent != p.Sent || accepted != p.Accepted {
		t.Errorf("the timeline adds up to %d sent, %d accepted; the phase says %d, %d", sent, accepted, p.Sent, p.Accepted)
	}

	if p.CPU == nil {
		t.Fatal("no CPU figures in the report")
	}
	if len(p.CPU.Missing) > 0 {
		t.Errorf("CPU not read for %v", p.CPU.Missing)
	}
	got := map[string]bool{}
	var sum float64
	for _, pc := range p.CPU.Processes {
		got[pc.Name] = true
		sum += pc.Seconds
		if pc.Seconds < 0 {
			t.Errorf("%s used %gs of CPU", pc.Name, pc.Seconds)
		}
	}
	for _, name := range []string{"gateway", "menu", "order", "kitchen", "delivery", "store"} {
		if !got[name] {
			t.Errorf("no CPU figure for %s", name)
		}
	}
	if p.CPU.Orders != p.Accepted || p.CPU.TotalSeconds <= 0 || math.Abs(sum-p.CPU.TotalSeconds) > 1e-5 {
		t.Errorf("CPU: %d orders, total %gs, processes add up to %gs; want %d orders and a positive total they add up to",
			p.CPU.Orders, p.CPU.TotalSeconds, sum, p.Accepted)
	}
	if want := p.CPU.TotalSeconds * 1000 / float64(p.Accepted); math.Abs(p.CPU.TotalMsPerOrder-want) > 0.001 {
		t.Errorf("CPU per order %g ms, want total/orders = %g", p.CPU.TotalMsPerOrder, want)
	}
	page, err := os.ReadFile(prefix + ".html")
	if err != nil || !bytes.Contains(page, []byte("<svg")) {
		t.Errorf("HTML report: %v, charts: %v", err, bytes.Contains(page, []byte("<svg")))
	}
}
