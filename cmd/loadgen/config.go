package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pizzashop/pizzashop/pkg/app"
)

// Modes of a load run.
const (
	modePlace     = "place"     // place orders; the kitchen accepts them on its own
	modeLifecycle = "lifecycle" // also start, ready, dispatch and deliver or pick up every order
)

// options are the flags of a load run.
type options struct {
	url         string
	basePort    int
	replicas    int    // processes of every service, as pizzashop run --replicas
	metrics     string // name=host:port,... replacing the derived CPU sources
	pids        string // name=PID,... read from /proc
	mode        string
	rate        float64
	clients     int
	duration    time.Duration
	orders      int
	maxInflight int
	lateAfter   time.Duration
	customers   int
	deliveries  float64 // share of lifecycle orders delivered rather than picked up
	drain       time.Duration
	staff       int
	report      string
	jsonOut     bool
	progress    bool

	ramp                      bool
	rampStep, rampMax         float64
	rampHold, rampSettle, p99 time.Duration

	display bool        // follow the kitchen display (off for a baseline without one)
	secret  string      // signs the credentials: AUTH_SECRET, or the development key
	sources []cpuSource // derived by check
}

// envOr is the value of an environment variable, or def when it is unset.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// defaultURL follows `pizzashop run`: the gateway on PIZZASHOP_HTTP_ADDR.
func defaultURL() string {
	addr := envOr("PIZZASHOP_HTTP_ADDR", "127.0.0.1:8080")
	if host, port, err := net.SplitHostPort(addr); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	return "http://" + addr
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: loadgen [flags]                 load a running shop
       loadgen bench-capacity [flags]  baseline against the real path on a stack of its own
       loadgen baseline-order [flags]  an order service that stores nothing

`)
		fs.PrintDefaults()
	}
	basePort := envOr("PIZZASHOP_BASE_PORT", "9090")
	replicas := envOr("PIZZASHOP_REPLICAS", "1")
	fs.StringVar(&o.url, "url", defaultURL(), "gateway base URL, loopback only (default from PIZZASHOP_HTTP_ADDR, as pizzashop run)")
	fs.IntVar(&o.basePort, "base-port", 0, "base port of the stack: its /metrics are on base+100 (launcher) and base+101..104 (services) (default PIZZASHOP_BASE_PORT or 9090)")
	fs.IntVar(&o.replicas, "replicas", 0, "processes of every service, as pizzashop run --replicas: replica R of service N has its /metrics on base+100+10(R-1)+N (default PIZZASHOP_REPLICAS or 1)")
	fs.StringVar(&o.metrics, "metrics", "", "CPU sources as name=host:port,... serving /metrics, instead of those derived from -base-port and -url")
	fs.StringVar(&o.pids, "pid", "", "more CPU sources as name=PID,... read from /proc/PID/stat")
	fs.StringVar(&o.mode, "mode", modePlace, "place: place orders, the kitchen accepts them; lifecycle: also act as kitchen staff and courier or counter")
	fs.BoolFunc("lifecycle", "same as -mode lifecycle", func(v string) error {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return err
		}
		o.mode = map[bool]string{true: modeLifecycle, false: modePlace}[on]
		return nil
	})
	fs.Float64Var(&o.rate, "rate", 50, "open model: orders per second, sent on schedule whatever the latency; the first rate of a -ramp")
	fs.IntVar(&o.clients, "clients", 0, "closed loop: this many clients, each sending its next order when the last is answered (replaces -rate)")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "how long to send orders")
	fs.IntVar(&o.orders, "orders", 0, "stop after this many orders (0: only -duration limits)")
	fs.IntVar(&o.maxInflight, "max-inflight", 1024, "open model: most requests outstanding at once; more start late")
	fs.DurationVar(&o.lateAfter, "late", 10*time.Millisecond, "open model: a request that starts this much after its due time counts as late")
	fs.IntVar(&o.customers, "customers", 64, "distinct customers")
	fs.Float64Var(&o.deliveries, "delivery-share", 0.5, "lifecycle: share of orders delivered by a courier; the rest are picked up at the counter")
	fs.DurationVar(&o.drain, "drain", 30*time.Second, "after sending, wait for the backlog to clear until it makes no progress for this long")
	fs.IntVar(&o.staff, "staff", 16, "lifecycle: kitchen, courier and counter calls in flight at once")
	fs.StringVar(&o.report, "report", "", "write the report to PREFIX.json and PREFIX.html")
	fs.BoolVar(&o.jsonOut, "json", false, "print the report as JSON instead of text")
	fs.BoolVar(&o.progress, "progress", true, "print a progress line every second on stderr")
	fs.BoolVar(&o.ramp, "ramp", false, "raise the rate from -rate by -ramp-step every -ramp-hold up to -ramp-max; report the highest rate that held")
	fs.Float64Var(&o.rampStep, "ramp-step", 25, "ramp: rate increase per step")
	fs.Float64Var(&o.rampMax, "ramp-max", 2000, "ramp: highest rate tried")
	fs.DurationVar(&o.rampHold, "ramp-hold", 10*time.Second, "ramp: how long each rate is held")
	fs.DurationVar(&o.rampSettle, "ramp-settle", 2*time.Second, "ramp: how long after a step its backlog may take to clear")
	fs.DurationVar(&o.p99, "p99", 50*time.Millisecond, "ramp: p99 of placing an order that a step must stay within")
	fs.BoolVar(&o.display, "display", true, "place: follow the kitchen display to count the orders the kitchen took; false measures placement alone (a store of many open tickets takes long to list)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.basePort == 0 {
		n, err := strconv.Atoi(basePort)
		if err != nil {
			return o, fmt.Errorf("PIZZASHOP_BASE_PORT=%q is not a port number", basePort)
		}
		o.basePort = n
	}
	if o.replicas == 0 {
		n, err := strconv.Atoi(replicas)
		if err != nil {
			return o, fmt.Errorf("PIZZASHOP_REPLICAS=%q is not a number", replicas)
		}
		o.replicas = n
	}
	o.secret = os.Getenv("AUTH_SECRET")
	return o, o.check()
}

// check validates the options and derives the CPU sources.
func (o *options) check() error {
	u, err := url.Parse(o.url)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("-url %q: want http://HOST:PORT", o.url)
	}
	if !isLoopback(u.Hostname()) {
		return fmt.Errorf("-url %q: not a loopback address; this tool only loads servers on this machine", o.url)
	}
	o.url = strings.TrimSuffix(o.url, "/")
	for _, f := range []struct {
		name string
		v    float64
	}{{"-rate", o.rate}, {"-ramp-step", o.rampStep}, {"-ramp-max", o.rampMax}, {"-delivery-share", o.deliveries}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return fmt.Errorf("%s %g: want a finite number", f.name, f.v)
		}
	}
	switch {
	case o.mode != modePlace && o.mode != modeLifecycle:
		return fmt.Errorf("-mode %q: want %s or %s", o.mode, modePlace, modeLifecycle)
	case o.mode == modeLifecycle && !o.display:
		return errors.New("-display=false: lifecycle mode works the tickets the display shows, so it needs it")
	case o.clients < 0:
		return fmt.Errorf("-clients %d: want 0 (open model) or more", o.clients)
	case o.clients == 0 && o.rate <= 0:
		return fmt.Errorf("-rate %g: want more than 0 orders per second (or -clients N for a closed loop)", o.rate)
	case o.ramp && o.clients > 0:
		return errors.New("-ramp raises an open-model rate: it does not go with -clients")
	case o.ramp && (o.rampStep <= 0 || o.rampMax < o.rate || o.rampHold <= 0):
		return fmt.Errorf("-ramp from %g by %g to %g holding %s: want a step above 0, -ramp-max at least -rate, a hold above 0", o.rate, o.rampStep, o.rampMax, o.rampHold)
	case o.duration <= 0 && !o.ramp:
		return fmt.Errorf("-duration %s: want more than 0", o.duration)
	case o.orders < 0:
		return fmt.Errorf("-orders %d: want 0 (no limit) or more", o.orders)
	case o.maxInflight < 1:
		return fmt.Errorf("-max-inflight %d: want at least 1", o.maxInflight)
	case o.customers < 1:
		return fmt.Errorf("-customers %d: want at least 1", o.customers)
	case o.deliveries < 0 || o.deliveries > 1:
		return fmt.Errorf("-delivery-share %g: want 0 to 1", o.deliveries)
	case o.staff < 1:
		return fmt.Errorf("-staff %d: want at least 1", o.staff)
	case o.replicas < 1 || o.replicas > app.MaxReplicas:
		return fmt.Errorf("-replicas %d: want 1 to %d", o.replicas, app.MaxReplicas)
	case o.basePort < 1 || o.basePort > 65535-topMetricsOffset(o.replicas):
		return fmt.Errorf("-base-port %d: want 1 to %d", o.basePort, 65535-topMetricsOffset(o.replicas))
	}
	o.sources, err = cpuSources(o.metrics, o.pids, o.basePort, o.replicas, u.Host)
	return err
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// serviceProcesses are the services of `pizzashop run`, service N (from 1)
// with its metrics on base+100+N, replica R (from 1) on
// base+100+10(R-1)+N. The launcher (the embedded NATS and FerretDB) has its
// own on base+100.
var serviceProcesses = []string{"menu", "order", "kitchen", "delivery"}

// topMetricsOffset is the offset from the base port of the last metrics
// port of a stack of replicas.
func topMetricsOffset(replicas int) int { return app.MetricsPort(0, len(serviceProcesses), replicas) }

// cpuSources are the processes whose CPU a run counts. By default, those
// of `pizzashop run` on basePort with replicas of every service (named
// service-R when there is more than one, as the launcher names them) plus
// the gateway's own /metrics on gatewayHost; -metrics replaces them and
// -pid adds to them.
func cpuSources(metrics, pids string, basePort, replicas int, gatewayHost string) ([]cpuSource, error) {
	var out []cpuSource
	seen := map[string]bool{}
	add := func(s cpuSource) error {
		if seen[s.name] {
			return fmt.Errorf("CPU source %q named twice", s.name)
		}
		seen[s.name] = true
		out = append(out, s)
		return nil
	}
	if metrics == "" {
		_ = add(cpuSource{name: "launcher", addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(basePort+100))})
		for i, name := range serviceProcesses {
			for r := 1; r <= max(replicas, 1); r++ {
				_ = add(cpuSource{name: app.ProcessName(name, r, max(replicas, 1)),
					addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(app.MetricsPort(basePort, i+1, r)))})
			}
		}
		_ = add(cpuSource{name: "gateway", addr: gatewayHost})
	} else {
		pairs, err := namedList("-metrics", metrics)
		if err != nil {
			return nil, err
		}
		for _, p := range pairs {
			if _, _, err := net.SplitHostPort(p[1]); err != nil {
				return nil, fmt.Errorf("-metrics %s=%s: want host:port", p[0], p[1])
			}
			if err := add(cpuSource{name: p[0], addr: p[1]}); err != nil {
				return nil, fmt.Errorf("-metrics: %w", err)
			}
		}
	}
	pairs, err := namedList("-pid", pids)
	if err != nil {
		return nil, err
	}
	for _, p := range pairs {
		pid, err := strconv.Atoi(p[1])
		if err != nil || pid < 1 {
			return nil, fmt.Errorf("-pid %s=%s: want a process id", p[0], p[1])
		}
		if err := add(cpuSource{name: p[0], pid: pid}); err != nil {
			return nil, fmt.Errorf("-pid: %w", err)
		}
	}
	return out, nil
}

// namedList parses "a=x,b=y".
func namedList(flagName, s string) ([][2]string, error) {
	var out [][2]string
	if s == "" {
		return out, nil
	}
	for _, item := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("%s %q: want name=value,... ", flagName, item)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}
