package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// benchOptions are the flags of bench-capacity.
type benchOptions struct {
	bin     string
	orders  int
	clients int
	rate    float64
	rounds  int
	warmup  int
	drain   time.Duration
	report  string
	keep    bool
}

// runBench is bench-capacity: it starts a stack of its own (pizzashop run
// on free ports in a temporary data dir), a baseline beside it (a second
// gateway in front of an order service that stores and publishes nothing),
// then places the same fixed load on the real path and the baseline
// alternately, and prints throughput, latency and CPU per order of each and
// their ratios. Everything it started stops when it ends.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var b benchOptions
	fs := flag.NewFlagSet("loadgen bench-capacity", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&b.bin, "bin", "bin", "directory of the pizzashop and gateway binaries (make build)")
	fs.IntVar(&b.orders, "orders", 1000, "orders per round and path")
	fs.IntVar(&b.clients, "clients", 32, "closed loop of this many clients (unless -rate)")
	fs.Float64Var(&b.rate, "rate", 0, "open model at this rate instead of a closed loop")
	fs.IntVar(&b.rounds, "rounds", 3, "rounds; each places -orders on the real path, then on the baseline")
	fs.IntVar(&b.warmup, "warmup", 50, "orders placed on each path before the first round")
	fs.DurationVar(&b.drain, "drain", 60*time.Second, "real path: wait for the kitchen display until it makes no progress for this long")
	fs.StringVar(&b.report, "report", "", "write PREFIX.json (every figure) and PREFIX-real.html, PREFIX-baseline.html")
	fs.BoolVar(&b.keep, "keep", false, "keep the temporary data and logs")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	switch {
	case fs.NArg() > 0:
		return usageError{fmt.Errorf("bench-capacity: unexpected argument %q", fs.Arg(0))}
	case b.orders < 1 || b.rounds < 1 || b.warmup < 0:
		return usageError{fmt.Errorf("bench-capacity: -orders %d -rounds %d -warmup %d: want at least 1, 1 and 0", b.orders, b.rounds, b.warmup)}
	case math.IsNaN(b.rate) || math.IsInf(b.rate, 0):
		return usageError{fmt.Errorf("bench-capacity: -rate %g: want a finite number", b.rate)}
	case b.rate <= 0 && b.clients < 1:
		return usageError{errors.New("bench-capacity: want -clients of at least 1, or -rate above 0")}
	}
	for _, name := range []string{"pizzashop", "gateway", "menu", "order", "kitchen", "delivery"} {
		if _, err := os.Stat(filepath.Join(b.bin, name)); err != nil {
			return fmt.Errorf("bench-capacity: %v: build the binaries first (make build)", err)
		}
	}

	dir, err := os.MkdirTemp("", "pizzashop-bench-")
	if err != nil {
		return err
	}
	failed := true
	defer func() {
		if b.keep || failed {
			fmt.Fprintf(stderr, "bench-capacity: data and logs kept in %s\n", dir)
			return
		}
		_ = os.RemoveAll(dir)
	}()

	ports, err := pickPorts()
	if err != nil {
		return err
	}
	var procs []*benchProc
	defer func() {
		for _, p := range slices.Backward(procs) {
			p.stop()
		}
	}()
	launcher, err := startProc(dir, "launcher", filepath.Join(b.bin, "pizzashop"), nil, syscall.SIGINT,
		"run", "--data", filepath.Join(dir, "data"), "--base-port", strconv.Itoa(ports.base), "--http", ports.http, "--replicas", "1",
		"--nats-addr", ports.nats, "--mongo-addr", ports.mongo)
	if err != nil {
		return err
	}
	procs = append(procs, launcher)
	fmt.Fprintf(stderr, "bench-capacity: starting the stack in %s (gateway %s, base port %d)\n", dir, ports.http, ports.base)
	if err := waitReady(ctx, "http://"+ports.http+"/readyz", launcher); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	baseOrder, err := startProc(dir, "baseline-order", self, nil, syscall.SIGTERM,
		"baseline-order", "-addr", ports.baseOrder, "-metrics-addr", ports.baseOrderMetrics)
	if err != nil {
		return err
	}
	procs = append(procs, baseOrder)
	grpcAddr := func(n int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(ports.base+n)) }
	baseGateway, err := startProc(dir, "gateway-baseline", filepath.Join(b.bin, "gateway"), []string{
		"HTTP_ADDR=" + ports.baseGateway, "ORDER_ADDR=" + ports.baseOrder, "MENU_ADDR=" + grpcAddr(1),
		"KITCHEN_ADDR=" + grpcAddr(3), "DELIVERY_ADDR=" + grpcAddr(4), "LOG_LEVEL=warn",
		// A local stack, as pizzashop run declares for its own processes.
		"PIZZASHOP_DEMO=true",
	}, syscall.SIGTERM)
	if err != nil {
		return err
	}
	procs = append(procs, baseGateway)
	if err := waitReady(ctx, "http://"+ports.baseGateway+"/readyz", baseGateway); err != nil {
		return err
	}

	common := options{mode: modePlace, rate: b.rate, duration: 24 * time.Hour, maxInflight: 1024, lateAfter: 10 * time.Millisecond,
		customers: 64, deliveries: 0, staff: 1, progress: true, drain: b.drain, secret: os.Getenv("AUTH_SECRET")}
	if b.rate <= 0 {
		common.clients = b.clients
	}
	realOpts, baseOpts := common, common
	realOpts.url, realOpts.display, realOpts.basePort = "http://"+ports.http, true, ports.base
	realOpts.sources, _ = cpuSources("", "", ports.base, 1, ports.http)
	baseOpts.url, baseOpts.display = "http://"+ports.baseGateway, false
	baseOpts.sources = []cpuSource{{name: "gateway-baseline", addr: ports.baseGateway}, {name: "order-baseline", addr: ports.baseOrderMetrics}}

	realL, err := start(ctx, realOpts, stderr)
	if err != nil {
		return fmt.Errorf("real path: %w", err)
	}
	defer realL.stop()
	baseL, err := start(ctx, baseOpts, stderr)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	defer baseL.stop()

	spec := func(name string, drain time.Duration, orders int) phaseSpec {
		return phaseSpec{name: name, rate: b.rate, clients: common.clients, duration: common.duration, orders: orders,
			drainIdle: drain, drainLimit: 10 * time.Minute}
	}
	if b.warmup > 0 {
		realL.phase(ctx, spec("warm-up", b.drain, b.warmup))
		baseL.phase(ctx, spec("warm-up", b.drain, b.warmup))
	}
	for r := 1; r <= b.rounds && ctx.Err() == nil; r++ {
		realL.phase(ctx, spec(fmt.Sprintf("real %d", r), b.drain, b.orders))
		baseL.phase(ctx, spec(fmt.Sprintf("baseline %d", r), 0, b.orders))
	}
	if ctx.Err() != nil {
		return errors.New("bench-capacity: interrupted")
	}
	realL.drain(ctx, -1, b.drain, 10*time.Minute)
	realL.stop()
	baseL.stop()
	res := benchResult{Orders: b.orders, Clients: common.clients, Rate: b.rate, Rounds: b.rounds,
		Real: realL.report(), Baseline: baseL.report()}
	res.summarize()
	res.print(stdout)
	if b.report != "" {
		if err := res.write(b.report); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench-capacity: report in %s.json, %s-real.html and %s-baseline.html\n", b.report, b.report, b.report)
	}
	if why := res.Real.failed(); why != "" {
		return fmt.Errorf("bench-capacity: the real path had %s", why)
	}
	if res.Real.Errors > 0 || res.Baseline.Errors > 0 {
		return fmt.Errorf("bench-capacity: %d errors on the real path, %d on the baseline", res.Real.Errors, res.Baseline.Errors)
	}
	failed = false
	return nil
}

// benchPorts are the free loopback addresses of a bench stack.
type benchPorts struct {
	base                                                        int
	http, nats, mongo, baseGateway, baseOrder, baseOrderMetrics string
}

// pickPorts finds free ports below the kernel's ephemeral range: a base
// with base+1..4 and base+100..104 free, and six more.
func pickPorts() (benchPorts, error) {
	free := func(port int) bool {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			return false
		}
		l.Close()
		return true
	}
	random := func() int {
		n, _ := rand.Int(rand.Reader, big.NewInt(10000))
		return 20000 + int(n.Int64())
	}
	var p benchPorts
	taken := map[int]bool{}
	for range 200 {
		base := random()
		ok := true
		for _, off := range []int{1, 2, 3, 4, 100, 101, 102, 103, 104} {
			if !free(base + off) {
				ok = false
				break
			}
		}
		if ok {
			p.base = base
			for _, off := range []int{1, 2, 3, 4, 100, 101, 102, 103, 104} {
				taken[base+off] = true
			}
			break
		}
	}
	if p.base == 0 {
		return p, errors.New("bench-capacity: found no free range of ports")
	}
	for _, addr := range []*string{&p.http, &p.nats, &p.mongo, &p.baseGateway, &p.baseOrder, &p.baseOrderMetrics} {
		for range 200 {
			port := random()
			if !taken[port] && free(port) {
				taken[port] = true
				*addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
				break
			}
		}
		if *addr == "" {
			return p, errors.New("bench-capacity: found no free port")
		}
	}
	return p, nil
}

// benchProc is a process bench-capacity started; its output goes to
// NAME.log in the bench directory.
type benchProc struct {
	name string
	cmd  *exec.Cmd
	sig  os.Signal // asks it to stop
	done chan struct{}
	log  string
}

func startProc(dir, name, path string, env []string, sig os.Signal, args ...string) (*benchProc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	// A process group of its own: a Ctrl-C in the terminal reaches
	// loadgen, which stops its children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &benchProc{name: name, cmd: cmd, sig: sig, done: make(chan struct{}), log: logPath}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *benchProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to stop and kills it after 30 s.
func (p *benchProc) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(p.sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitReady polls url until it answers 200, p exits, or 2 minutes pass.
func waitReady(ctx context.Context, url string, p *benchProc) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p.exited() {
			return fmt.Errorf("bench-capacity: %s exited while starting; see %s", p.name, p.log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench-capacity: %s not ready after 2m; see %s", url, p.log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// benchResult is the report of bench-capacity.
type benchResult struct {
	Orders   int     `json:"orders_per_round"`
	Clients  int     `json:"clients,omitempty"`
	Rate     float64 `json:"rate,omitempty"`
	Rounds   int     `json:"rounds"`
	Real     *Report `json:"real"`
	Baseline *Report `json:"baseline"`
	// Medians over the rounds, and real/baseline ratios of them.
	Median map[string]benchFigures `json:"median"`
	Ratio  benchFigures            `json:"ratio_real_to_baseline"`
	// CPUByProcess is the median CPU ms per order of each process.
	CPUByProcess map[string]map[string]float64 `json:"cpu_ms_per_order_by_process"`
}

// benchFigures are the headline figures of a path.
type benchFigures struct {
	AcceptedPerS  float64 `json:"accepted_per_s"`
	P50ms         float64 `json:"p50_ms"`
	P99ms         float64 `json:"p99_ms"`
	CPUMsPerOrder float64 `json:"cpu_ms_per_order"`
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// rounds are the measured phases of a report (not the warm-up).
func rounds(r *Report) []Phase {
	var out []Phase
	for _, p := range r.Phases {
		if p.Name != "warm-up" {
			out = append(out, p)
		}
	}
	return out
}

func (res *benchResult) summarize() {
	res.Median = map[string]benchFigures{}
	res.CPUByProcess = map[string]map[string]float64{}
	for path, r := range map[string]*Report{"real": res.Real, "baseline": res.Baseline} {
		var tp, p50, p99, cpu []float64
		byProc := map[string][]float64{}
		for _, p := range rounds(r) {
			tp, p50, p99 = append(tp, p.AcceptedPerS), append(p50, p.Place.P50ms), append(p99, p.Place.P99ms)
			if p.CPU != nil {
				cpu = append(cpu, p.CPU.TotalMsPerOrder)
				for _, pc := range p.CPU.Processes {
					byProc[pc.Name] = append(byProc[pc.Name], pc.MsPerOrder)
				}
			}
		}
		res.Median[path] = benchFigures{median(tp), median(p50), median(p99), median(cpu)}
		res.CPUByProcess[path] = map[string]float64{}
		for name, v := range byProc {
			res.CPUByProcess[path][name] = median(v)
		}
	}
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return round3(a / b)
	}
	rl, bl := res.Median["real"], res.Median["baseline"]
	res.Ratio = benchFigures{ratio(rl.AcceptedPerS, bl.AcceptedPerS), ratio(rl.P50ms, bl.P50ms), ratio(rl.P99ms, bl.P99ms),
		ratio(rl.CPUMsPerOrder, bl.CPUMsPerOrder)}
}

func (res *benchResult) print(w io.Writer) {
	load := fmt.Sprintf("%d clients closed loop", res.Clients)
	if res.Rate > 0 {
		load = fmt.Sprintf("%g orders/s open model", res.Rate)
	}
	fmt.Fprintf(w, "\nbench-capacity: %d rounds of %d orders per path, %s; real path drained to the kitchen display\n\n", res.Rounds, res.Orders, load)
	fmt.Fprintf(w, "%-16s %10s %9s %9s %14s %8s\n", "round", "orders/s", "p50 ms", "p99 ms", "CPU ms/order", "errors")
	real, base := rounds(res.Real), rounds(res.Baseline)
	for i := range max(len(real), len(base)) {
		for _, ps := range [][]Phase{real, base} {
			if i < len(ps) {
				p := ps[i]
				cpu := 0.0
				if p.CPU != nil {
					cpu = p.CPU.TotalMsPerOrder
				}
				fmt.Fprintf(w, "%-16s %10.1f %9.1f %9.1f %14.3f %8d\n", p.Name, p.AcceptedPerS, p.Place.P50ms, p.Place.P99ms, cpu, p.Errors)
			}
		}
	}
	for _, path := range []string{"real", "baseline"} {
		m := res.Median[path]
		fmt.Fprintf(w, "%-16s %10.1f %9.1f %9.1f %14.3f\n", "median "+path, m.AcceptedPerS, m.P50ms, m.P99ms, m.CPUMsPerOrder)
	}
	r := res.Ratio
	fmt.Fprintf(w, "\nwhole-stack CPU per placed order (drain included): real %.3f ms, baseline %.3f ms\n",
		res.Median["real"].CPUMsPerOrder, res.Median["baseline"].CPUMsPerOrder)
	fmt.Fprintf(w, "real/baseline: orders/s %.3fx, p50 %.1fx, p99 %.1fx, CPU per order %.1fx\n", r.AcceptedPerS, r.P50ms, r.P99ms, r.CPUMsPerOrder)
	for _, path := range []string{"real", "baseline"} {
		procs := res.CPUByProcess[path]
		names := sortedKeys(procs)
		slices.SortStableFunc(names, func(a, b string) int {
			switch {
			case procs[a] > procs[b]:
				return -1
			case procs[a] < procs[b]:
				return 1
			}
			return 0
		})
		var parts []string
		for _, n := range names {
			parts = append(parts, fmt.Sprintf("%s %.3f", n, procs[n]))
		}
		fmt.Fprintf(w, "CPU ms per order, %s (median): %s\n", path, strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "lost %d, duplicated %d on the real path\n", res.Real.Lost, res.Real.Duplicated)
}

func (res *benchResult) write(prefix string) error {
	f, err := os.Create(prefix + ".json")
	if err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	enc := jsonEncoder(f)
	err = enc.Encode(res)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	for name, r := range map[string]*Report{"-real.html": res.Real, "-baseline.html": res.Baseline} {
		f, err := os.Create(prefix + name)
		if err != nil {
			return err
		}
		err = r.writeHTML(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}
