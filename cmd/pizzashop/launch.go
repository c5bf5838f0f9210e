package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pizzashop/pizzashop/pkg/app"
	"github.com/pizzashop/pizzashop/pkg/config"
	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// shopConfig is what `pizzashop run` needs, from flags, PIZZASHOP_*
// variables and the variables passed on to the services.
type shopConfig struct {
	stackFlags
	bin          string
	httpAddr     string
	jaeger       string // the Jaeger binary; empty runs no trace viewer
	tracesAddr   string
	basePort     int
	replicas     int // processes of every service; more than one runs a NATS cluster
	readyTimeout time.Duration
	stopTimeout  time.Duration

	// From the environment and passed on to every process. With both URLs
	// set no embedded server starts.
	mongoURI   string
	natsURL    string
	authSecret string
	logLevel   string
}

// The services in start order, each with N: gRPC on base+N, metrics on
// base+100+N; replica R (from 1) of service N on base+10(R-1)+N and
// base+100+10(R-1)+N. The gateway starts last and serves its metrics on its
// HTTP address. The launcher serves its own (the embedded NATS and FerretDB
// run in it) on base+100.
var serviceNames = []string{"menu", "order", "kitchen", "delivery"}

const (
	gatewayName = "gateway"
	nameWidth   = len("delivery")
)

func parseShopConfig(args []string, stderr io.Writer) (shopConfig, error) {
	fs := newFlagSet("run", "pizzashop [run] [flags]", stderr)
	var c shopConfig
	c.register(fs)
	fs.StringVar(&c.bin, "bin", "", "directory holding the menu, order, kitchen, delivery and gateway binaries (default: the directory of this binary)")
	fs.StringVar(&c.httpAddr, "http", envOr("PIZZASHOP_HTTP_ADDR", "127.0.0.1:8080"), "listen address of the REST gateway (env PIZZASHOP_HTTP_ADDR)")
	base, err := strconv.Atoi(envOr("PIZZASHOP_BASE_PORT", "9090"))
	if err != nil {
		return c, usageErrorf("PIZZASHOP_BASE_PORT=%q is not a port number", os.Getenv("PIZZASHOP_BASE_PORT"))
	}
	fs.IntVar(&c.basePort, "base-port", base, "gRPC of service N (menu 1, order 2, kitchen 3, delivery 4) on base+N, its metrics on base+100+N; replica R on base+10(R-1)+N (env PIZZASHOP_BASE_PORT)")
	replicas, err := strconv.Atoi(envOr("PIZZASHOP_REPLICAS", "1"))
	if err != nil {
		return c, usageErrorf("PIZZASHOP_REPLICAS=%q is not a number", os.Getenv("PIZZASHOP_REPLICAS"))
	}
	fs.IntVar(&c.replicas, "replicas", replicas, fmt.Sprintf("processes of every service, 1 to %d; more than one also runs a three-node NATS cluster on the NATS port and the two above it (env PIZZASHOP_REPLICAS)", app.MaxReplicas))
	fs.StringVar(&c.jaeger, "jaeger", os.Getenv("PIZZASHOP_JAEGER"), "run this Jaeger binary as the trace viewer, receiving OTLP on base+200 (make run-traces builds one into .bin; env PIZZASHOP_JAEGER)")
	fs.StringVar(&c.tracesAddr, "traces", envOr("PIZZASHOP_TRACES_ADDR", defaultTracesAddr), "listen address of the trace viewer, with --jaeger (env PIZZASHOP_TRACES_ADDR)")
	fs.DurationVar(&c.readyTimeout, "ready-timeout", 90*time.Second, "how long to wait for the gateway's /readyz")
	fs.DurationVar(&c.stopTimeout, "stop-timeout", 15*time.Second, "how long each process may take to stop before it is killed")
	if err := parseFlags(fs, args); err != nil {
		return c, err
	}
	if maxBase := 65535 - 201; c.basePort < 1 || c.basePort > maxBase {
		return c, usageErrorf("--base-port %d: want 1 to %d", c.basePort, maxBase)
	}
	if c.replicas < 1 || c.replicas > app.MaxReplicas {
		return c, usageErrorf("--replicas %d: want 1 to %d", c.replicas, app.MaxReplicas)
	}
	if c.jaeger != "" && !executable(c.jaeger) {
		return c, usageErrorf("--jaeger %s: no such executable; make run-traces builds one into .bin", c.jaeger)
	}
	if c.bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return c, fmt.Errorf("find own binary: %w (use --bin)", err)
		}
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		c.bin = filepath.Dir(exe)
	}
	c.mongoURI = os.Getenv("MONGO_URI")
	c.natsURL = os.Getenv("NATS_URL")
	c.authSecret = os.Getenv("AUTH_SECRET")
	c.logLevel = envOr("LOG_LEVEL", "info")
	if c.embedded() && c.clustered() {
		if _, _, err := c.clusterAddrs(); err != nil {
			return c, err
		}
	}
	return c, nil
}

// embedded reports whether the launcher starts its own NATS and FerretDB.
func (c shopConfig) embedded() bool { return c.mongoURI == "" || c.natsURL == "" }

func (c shopConfig) grpcAddr(n int) string { return c.replicaGRPCAddr(n, 1) }

func (c shopConfig) metricsAddr(n int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.basePort+100+n))
}

// peerAddrs are the gRPC addresses every process is given, named as the
// services read them: every replica's, comma-separated.
func (c shopConfig) peerAddrs() map[string]string {
	m := map[string]string{}
	for i, name := range serviceNames {
		var addrs []string
		for r := 1; r <= c.replicas; r++ {
			addrs = append(addrs, c.replicaGRPCAddr(i+1, r))
		}
		m[strings.ToUpper(name)+"_ADDR"] = strings.Join(addrs, ",")
	}
	return m
}

// listenAddrs names every address the shop will listen on, to find the
// ones taken before anything starts.
func (c shopConfig) listenAddrs() [][2]string {
	var addrs [][2]string
	if c.embedded() {
		if c.clustered() {
			nodes, routes, err := c.clusterAddrs()
			if err == nil {
				for i := range nodes {
					addrs = append(addrs, [2]string{nodes[i], fmt.Sprintf("NATS node %d", i+1)}, [2]string{routes[i], fmt.Sprintf("NATS node %d routes", i+1)})
				}
			}
		} else {
			addrs = append(addrs, [2]string{c.natsAddr, "NATS"})
		}
		addrs = append(addrs, [2]string{c.mongoAddr, "FerretDB"})
	}
	addrs = append(addrs, [2]string{c.metricsAddr(0), "launcher metrics"})
	for i, name := range serviceNames {
		for r := 1; r <= c.replicas; r++ {
			p := c.processName(name, r)
			addrs = append(addrs, [2]string{c.replicaGRPCAddr(i+1, r), p + " gRPC"}, [2]string{c.replicaMetricsAddr(i+1, r), p + " metrics"})
		}
	}
	if c.jaeger != "" {
		addrs = append(addrs, [2]string{c.tracesAddr, "trace viewer"}, [2]string{c.otlpAddr(), "Jaeger OTLP"}, [2]string{c.jaegerGRPCAddr(), "Jaeger gRPC"})
	}
	return append(addrs, [2]string{c.httpAddr, "gateway HTTP"})
}

// managedEnv are the variables the launcher sets for its children; the
// parent's values of them are not passed through. OTEL_SERVICE_NAME is
// never passed on: one name for five processes would merge them.
var managedEnv = []string{
	"GRPC_ADDR", "METRICS_ADDR", "HTTP_ADDR", "MENU_ADDR", "ORDER_ADDR", "KITCHEN_ADDR", "DELIVERY_ADDR",
	"MONGO_URI", "NATS_URL", "AUTH_SECRET", "LOG_LEVEL", "PIZZASHOP_DEMO", "OTEL_SERVICE_NAME",
}

// childEnv is the launcher's own environment without managedEnv, plus set.
// Everything else (PATH, OTEL_*, ...) passes through.
func childEnv(parent []string, set map[string]string) []string {
	env := make([]string, 0, len(parent)+len(set))
	for _, kv := range parent {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(managedEnv, k) {
			env = append(env, kv)
		}
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if set[k] != "" { // empty means unset: the service uses its default
			env = append(env, k+"="+set[k])
		}
	}
	return env
}

// launcher supervises the embedded stack and the service processes.
type launcher struct {
	cfg    shopConfig
	term   *syncWriter
	logDir string // under the data directory, made by supervise

	stack    *devstack.Stack
	cluster  *devstack.Cluster // instead of stack with more than one replica
	stackLog *logSink
	metrics  *http.Server // the launcher's own /metrics
	children []*child
	exits    chan *child // every child, once, when it exits

	// Restarts of service processes that died (see restart.go).
	slots        map[*child]*slot
	restarts     chan *slot    // a slot whose backoff has passed
	stopping     chan struct{} // closed when shutdown begins
	restartCount *prometheus.CounterVec

	natsURL, mongoURI string
}

// runShop is `pizzashop run`: it returns nil after a clean stop on a
// signal, and an error when something failed to start or died.
func runShop(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	begin := time.Now()
	cfg, err := parseShopConfig(args, stderr)
	if err != nil {
		return err
	}
	if err := checkBinaries(cfg.bin); err != nil {
		return err
	}
	if err := checkFree(cfg.listenAddrs()); err != nil {
		return err
	}
	l := &launcher{
		cfg:  cfg,
		term: &syncWriter{w: stdout},
		// Each process's exit is sent once and read by supervise; after it
		// returns, every one still running may exit without a reader.
		exits:    make(chan *child, cfg.replicas*len(serviceNames)+2),
		slots:    map[*child]*slot{},
		restarts: make(chan *slot),
		stopping: make(chan struct{}),
	}
	err = l.supervise(ctx, begin)
	l.shutdown()
	if err != nil {
		return err
	}
	l.term.Println("stopped")
	return nil
}

// supervise starts everything, waits until the gateway is ready, and then
// until a signal (nil) or a process dying (an error).
func (l *launcher) supervise(ctx context.Context, begin time.Time) error {
	logDir, err := makeDataDir(l.cfg.data)
	if err != nil {
		return err
	}
	l.logDir = logDir
	var stackTook time.Duration
	l.natsURL, l.mongoURI = l.cfg.natsURL, l.cfg.mongoURI
	if l.cfg.embedded() {
		sink, err := newLogSink(l.logDir, "devstack", l.width(), l.term)
		if err != nil {
			return err
		}
		l.stackLog = sink
		if l.cfg.clustered() {
			cl, took, err := startCluster(ctx, l.cfg, sink)
			if err != nil {
				return err
			}
			l.cluster, stackTook = cl, took
			l.natsURL = cmp.Or(l.cfg.natsURL, cl.NATSURL())
			l.mongoURI = cmp.Or(l.cfg.mongoURI, cl.MongoURI())
		} else {
			st, took, err := startStack(ctx, l.cfg.stackFlags, sink)
			if err != nil {
				return err
			}
			l.stack, stackTook = st, took
			l.natsURL = cmp.Or(l.cfg.natsURL, st.NATSURL())
			l.mongoURI = cmp.Or(l.cfg.mongoURI, st.MongoURI())
		}
	}
	// After the stack, which the metrics read.
	if err := l.serveOwnMetrics(); err != nil {
		return err
	}

	common := map[string]string{
		"MONGO_URI":   l.mongoURI,
		"NATS_URL":    l.natsURL,
		"AUTH_SECRET": l.cfg.authSecret,
		"LOG_LEVEL":   l.cfg.logLevel,
		// The shop on this machine is a local demo: the services may sign
		// with the development key when AUTH_SECRET is unset.
		"PIZZASHOP_DEMO": "true",
	}
	// Every service process and the gateway get one P (GOMAXPROCS=1)
	// unless GOMAXPROCS is set, which then reaches them all unchanged. On
	// one machine they share the cores with each other and with the store,
	// and a second P per process mostly wakes and parks threads around
	// each short burst of work: on two cores at 50 to 100 orders/s that was
	// a fifth of their CPU per order. The launcher, which runs NATS and
	// FerretDB, keeps all of its own.
	if os.Getenv("GOMAXPROCS") == "" {
		common["GOMAXPROCS"] = "1"
	}
	if l.cluster != nil && l.cfg.natsURL == "" {
		// Every stream on all three nodes: one may die.
		common["NATS_STREAM_REPLICAS"] = strconv.Itoa(devstack.ClusterNodes)
	}
	if l.cfg.jaeger != "" {
		if err := l.startTraces(ctx); err != nil || ctx.Err() != nil {
			return err
		}
		maps.Copy(common, l.cfg.traceEnv())
	}
	for k, v := range l.cfg.peerAddrs() {
		// Every process learns where every service is; each reads the ones
		// it calls (order: MENU_ADDR and KITCHEN_ADDR; the gateway: all).
		common[k] = v
	}
	for i, name := range serviceNames {
		for r := 1; r <= l.cfg.replicas; r++ {
			env := map[string]string{"GRPC_ADDR": l.cfg.replicaGRPCAddr(i+1, r), "METRICS_ADDR": l.cfg.replicaMetricsAddr(i+1, r)}
			if err := l.start(l.cfg.processName(name, r), name, common, env); err != nil {
				return err
			}
		}
	}
	env := map[string]string{"HTTP_ADDR": l.cfg.httpAddr}
	if err := l.start(gatewayName, gatewayName, common, env); err != nil {
		return err
	}

	if err := l.waitReady(ctx); err != nil || ctx.Err() != nil {
		return err
	}
	l.banner(time.Since(begin), stackTook)

	// From here on a process that dies is started again.
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-l.exits:
			if err := l.exited(ctx, c); err != nil || ctx.Err() != nil {
				return err
			}
		case s := <-l.restarts:
			if err := l.restart(s); err != nil {
				return err
			}
		}
	}
}

// serveOwnMetrics serves the launcher's process metrics on base+100, so a
// load test can count the CPU of the embedded servers with the services'.
func (l *launcher) serveOwnMetrics() error {
	reg := prometheus.NewRegistry()
	l.restartCount = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pizzashop_launcher_restarts_total",
		Help: "Service processes the launcher started again after they died, by process",
	}, []string{"process"})
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector(), storeStatements{l}, l.restartCount)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	app.HandleProfiler(mux)
	ln, err := net.Listen("tcp", l.cfg.metricsAddr(0))
	if err != nil {
		return fmt.Errorf("launcher metrics: %w", err)
	}
	l.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = l.metrics.Serve(ln) }()
	return nil
}

// start starts process name of a service (its binary), remembering how, so
// that it can be started again when it dies.
func (l *launcher) start(name, service string, common, own map[string]string) error {
	sink, err := newLogSink(l.logDir, name, l.width(), l.term)
	if err != nil {
		return err
	}
	set := maps.Clone(common)
	maps.Copy(set, own)
	s := &slot{name: name, service: service, path: filepath.Join(l.cfg.bin, service), env: childEnv(os.Environ(), set), log: sink}
	if err := l.run(s); err != nil {
		sink.Close()
		return err
	}
	return nil
}

// run starts the process of s and watches for its exit.
func (l *launcher) run(s *slot) error {
	c, err := startChild(s.name, s.path, s.env, s.log)
	if err != nil {
		return err
	}
	s.started = time.Now()
	l.children = append(l.children, c)
	l.slots[c] = s
	go func() {
		<-c.done
		l.exits <- c
	}()
	return nil
}

// died reports a process that exited on its own. A Ctrl-C in the terminal
// reaches the children too, and one may exit before the launcher sees its
// own signal: that is a normal stop, not a death.
func (l *launcher) died(ctx context.Context, c *child) error {
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(500 * time.Millisecond):
	}
	c.reported = true
	l.term.Printf("\n%s %s unexpectedly. Last lines of %s:\n", c.name, c.describeExit(), c.log.path)
	for _, line := range c.log.Tail() {
		l.term.Println("  " + line)
	}
	l.term.Println("\nStopping everything.")
	return fmt.Errorf("%s %s", c.name, c.describeExit())
}

// waitReady polls the gateway's /readyz until it answers 200. It returns nil
// early when ctx ends (a Ctrl-C while starting).
func (l *launcher) waitReady(ctx context.Context) error {
	url := "http://" + dialAddr(l.cfg.httpAddr) + "/readyz"
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.NewTimer(l.cfg.readyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	const noteEvery = 15 * time.Second
	note := time.Now().Add(noteEvery)
	var last string
	for {
		var ok bool
		if ok, last = probe(ctx, client, url); ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case c := <-l.exits:
			return l.died(ctx, c)
		case <-deadline.C:
			return fmt.Errorf("the gateway was not ready after %s: %s answered %s; the logs are in %s", l.cfg.readyTimeout, url, last, l.logDir)
		case <-tick.C:
		}
		if time.Now().After(note) {
			l.term.Printf("still waiting for %s (%s)\n", url, last)
			note = time.Now().Add(noteEvery)
		}
	}
}

// probe reports whether GET url answers 200, and otherwise what it answered.
func probe(ctx context.Context, client *http.Client, url string) (bool, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return false, "connection refused"
		}
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode == http.StatusOK {
		return true, ""
	}
	desc := resp.Status + " " + strings.Join(strings.Fields(string(body)), " ")
	if len(desc) > 160 {
		desc = desc[:160] + "..."
	}
	return false, desc
}

// shutdown stops the gateway first so no new request comes in, then order
// (it calls menu and kitchen), then the other services, then the embedded
// servers. A second Ctrl-C kills whatever is still running.
func (l *launcher) shutdown() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, app.StopSignals()...)
	defer signal.Stop(sigs)
	force := make(chan struct{})
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-sigs:
			l.term.Println("second signal: killing what is left")
			close(force)
		case <-stopped:
		}
	}()

	close(l.stopping)
	running := 0
	for _, c := range l.children {
		if !c.exited() {
			running++
		}
	}
	if running > 0 {
		l.term.Printf("stopping %d processes (Ctrl-C again to kill them)\n", running)
	}
	// Jaeger stops last: the services flush their final spans to it.
	tiers := [][]string{{gatewayName}, {"order"}, {"menu", "kitchen", "delivery"}, {jaegerName}}
	for _, tier := range tiers {
		var wg sync.WaitGroup
		for _, c := range l.children {
			if slices.Contains(tier, l.serviceOf(c)) {
				wg.Go(func() { l.stopChild(c, force) })
			}
		}
		wg.Wait()
	}
	closed := map[*logSink]bool{}
	for _, c := range l.children {
		if !closed[c.log] {
			closed[c.log] = true
			c.log.Close()
		}
	}
	if l.stack != nil {
		l.stack.Close()
	}
	if l.cluster != nil {
		l.cluster.Close()
	}
	if l.stackLog != nil {
		l.stackLog.Close()
	}
	if l.metrics != nil {
		_ = l.metrics.Close()
	}
}

func (l *launcher) stopChild(c *child, force <-chan struct{}) {
	if c.stop(l.cfg.stopTimeout, force) {
		select {
		case <-force:
			l.term.Printf("%s killed\n", c.name)
		default:
			l.term.Printf("%s did not stop within %s and was killed; see %s\n", c.name, l.cfg.stopTimeout, c.log.path)
		}
		return
	}
	if !c.reported && !c.stoppedCleanly() {
		c.reported = true
		l.term.Printf("%s %s while stopping. Last lines of %s:\n", c.name, c.describeExit(), c.log.path)
		for _, line := range c.log.Tail() {
			l.term.Println("  " + line)
		}
	}
}

// banner tells the developer where everything is and how to call it.
func (l *launcher) banner(took, stackTook time.Duration) {
	web := "http://" + dialAddr(l.cfg.httpAddr)
	self := selfCommand()
	var b strings.Builder
	fmt.Fprintf(&b, "\nPizzashop is ready in %s", took.Round(10*time.Millisecond))
	if l.stack != nil {
		fmt.Fprintf(&b, " (NATS and FerretDB started in %s)", stackTook.Round(time.Millisecond))
	}
	if l.cluster != nil {
		fmt.Fprintf(&b, " (a NATS cluster of %d and FerretDB started in %s)", devstack.ClusterNodes, stackTook.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, ".\n\n")
	fmt.Fprintf(&b, "  Gateway         %s/\n", web)
	fmt.Fprintf(&b, "  Menu            %s/v1/menu\n", web)
	fmt.Fprintf(&b, "  OpenAPI         %s/openapi.json\n", web)
	fmt.Fprintf(&b, "  Health          %s/healthz  %s/readyz\n", web, web)
	if l.cfg.jaeger != "" {
		fmt.Fprintf(&b, "  Traces          http://%s/  (every request and event, newest first)\n", dialAddr(l.cfg.tracesAddr))
	}
	fmt.Fprintln(&b)
	w := l.width()
	fmt.Fprintf(&b, "  %-*s  http  %-16s metrics %s/metrics\n", w, gatewayName, l.cfg.httpAddr, web)
	runs := ""
	if l.stack != nil || l.cluster != nil {
		runs = "(NATS, FerretDB)"
	}
	fmt.Fprintf(&b, "  %-*s  %-22s metrics http://%s/metrics\n", w, "launcher", runs, l.cfg.metricsAddr(0))
	for i, name := range serviceNames {
		for r := 1; r <= l.cfg.replicas; r++ {
			fmt.Fprintf(&b, "  %-*s  gRPC  %-16s metrics http://%s/metrics\n", w, l.cfg.processName(name, r), l.cfg.replicaGRPCAddr(i+1, r), l.cfg.replicaMetricsAddr(i+1, r))
		}
	}
	switch {
	case l.cfg.natsURL != "" || (l.stack == nil && l.cluster == nil):
		fmt.Fprintf(&b, "  %-*s  %s (from NATS_URL)\n", w, "nats", config.RedactURL(l.natsURL))
	case l.cluster != nil:
		for i := range devstack.ClusterNodes {
			fmt.Fprintf(&b, "  %-*s  %s  data %s\n", w, fmt.Sprintf("nats-%d", i+1), l.cluster.NodeURL(i), l.cluster.NodeDir(i))
		}
	default:
		fmt.Fprintf(&b, "  %-*s  %s  data %s\n", w, "nats", config.RedactURL(l.natsURL), l.stack.NATSDir())
	}
	switch {
	case l.cfg.mongoURI == "" && l.stack != nil:
		fmt.Fprintf(&b, "  %-*s  %s  data %s (FerretDB on SQLite)\n", w, "mongodb", config.RedactURL(l.mongoURI), l.stack.MongoDir())
	case l.cfg.mongoURI == "" && l.cluster != nil:
		fmt.Fprintf(&b, "  %-*s  %s  data %s (FerretDB on SQLite)\n", w, "mongodb", config.RedactURL(l.mongoURI), l.cluster.MongoDir())
	default:
		fmt.Fprintf(&b, "  %-*s  %s (from MONGO_URI)\n", w, "mongodb", config.RedactURL(l.mongoURI))
	}
	if l.stack != nil || l.cluster != nil {
		// The URLs above hide the passwords; say where the embedded servers' are.
		fmt.Fprintf(&b, "  %-*s  NATS and store users and passwords in %s (the README shows mongosh and nats with them)\n",
			w, "logins", filepath.Join(l.cfg.data, devstack.CredentialsFile))
	}
	fmt.Fprintf(&b, "  %-*s  %s (warnings and errors also show here)\n", w, "logs", filepath.Join(l.logDir, "<name>.log"))
	fmt.Fprintf(&b, "  %-*s  a service process that dies is started again (backoff %s to %s)\n\n", w, "restarts", restartMinBackoff, restartMaxBackoff)
	secret := "the development secret"
	if l.cfg.authSecret != "" {
		secret = "AUTH_SECRET"
	}
	fmt.Fprintf(&b, "Credentials (signed with %s, valid 24h, --ttl to change):\n", secret)
	for _, r := range [][2]string{{"customer", "alice"}, {"kitchen", "kim"}, {"courier", "cody"}, {"admin", "ada"}} {
		fmt.Fprintf(&b, "  %-8s  %s token --role %s --sub %s\n", r[0], self, r[0], r[1])
	}
	fmt.Fprintf(&b, "\n  curl -H \"Authorization: Bearer $(%s token --role customer --sub alice)\" %s/v1/orders\n\n", self, web)
	fmt.Fprintf(&b, "Press Ctrl-C to stop.\n")
	l.term.Printf("%s", b.String())
}

// checkBinaries makes sure every process can be started before any is.
func checkBinaries(dir string) error {
	var missing []string
	for _, name := range append(slices.Clone(serviceNames), gatewayName) {
		if !executable(filepath.Join(dir, name)) {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s in %s: build the services next to pizzashop (make run does), or point --bin at them", strings.Join(missing, ", "), dir)
	}
	return nil
}

// checkFree fails when any of addrs is taken, naming all that are: most
// often another pizzashop is still running.
// Any other failure (a malformed address, a host that is not this
// machine's, a port below 1024) is named with its reason.
func checkFree(addrs [][2]string) error {
	var busy, bad []string
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a[0])
		switch {
		case errors.Is(err, syscall.EADDRINUSE):
			busy = append(busy, fmt.Sprintf("%s (%s)", a[0], a[1]))
		case err != nil:
			bad = append(bad, fmt.Sprintf("%s (%s): %v", a[0], a[1], listenReason(err)))
		default:
			ln.Close()
		}
	}
	var errs []error
	if len(bad) > 0 {
		errs = append(errs, fmt.Errorf("cannot listen on %s", strings.Join(bad, "; ")))
	}
	if len(busy) > 0 {
		errs = append(errs, fmt.Errorf("cannot listen on %s: is another pizzashop running? Stop it, or move ports with --base-port, --http, --nats-addr and --mongo-addr", strings.Join(busy, ", ")))
	}
	return errors.Join(errs...)
}

// listenReason is the cause of a failed listen without the "listen tcp
// ADDR:" the caller already names.
func listenReason(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// dialAddr turns a listen address into one to connect to.
func dialAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// selfCommand is how the developer invokes this binary from the current
// directory, such as bin/pizzashop.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil {
		return "pizzashop"
	}
	wd, err := os.Getwd()
	if err != nil {
		return exe
	}
	rel, err := filepath.Rel(wd, exe)
	if err != nil || strings.HasPrefix(rel, "..") {
		return exe
	}
	if !strings.ContainsRune(rel, filepath.Separator) {
		rel = "." + string(filepath.Separator) + rel
	}
	return rel
}

// storeStatements serves the embedded store's statement counts, so a load
// test can tell how many store round trips an order costs and whether any of
// them scanned a collection.
type storeStatements struct{ l *launcher }

var storeStatementsDesc = prometheus.NewDesc("pizzashop_devstore_statements_total",
	"Statements the embedded store carried out, by command, collection and lookup (id: by key; scan: read the collection)",
	[]string{"command", "collection", "lookup"}, nil)

var storeRequestsDesc = prometheus.NewDesc("pizzashop_devstore_requests_total",
	"Requests clients sent the embedded store, by command and collection: its round trips, each of one statement or of many (a bulk write)",
	[]string{"command", "collection"}, nil)

func (c storeStatements) Describe(ch chan<- *prometheus.Desc) {
	ch <- storeStatementsDesc
	ch <- storeRequestsDesc
}

func (c storeStatements) Collect(ch chan<- prometheus.Metric) {
	var cmds []devstack.StoreCommand
	var reqs []devstack.StoreRequest
	switch {
	case c.l.stack != nil:
		cmds, reqs = c.l.stack.StoreCommands(), c.l.stack.StoreRequests()
	case c.l.cluster != nil:
		cmds, reqs = c.l.cluster.StoreCommands(), c.l.cluster.StoreRequests()
	}
	for _, s := range cmds {
		ch <- prometheus.MustNewConstMetric(storeStatementsDesc, prometheus.CounterValue, float64(s.Count), s.Command, s.Collection, s.Lookup)
	}
	for _, r := range reqs {
		ch <- prometheus.MustNewConstMetric(storeRequestsDesc, prometheus.CounterValue, float64(r.Count), r.Command, r.Collection)
	}
}
