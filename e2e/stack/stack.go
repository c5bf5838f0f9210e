// Package stack runs the whole shop for end-to-end tests as separate
// processes, exactly as `make run` does: the real menu, order, kitchen,
// delivery and gateway binaries, talking gRPC over loopback, with an
// embedded NATS JetStream and FerretDB (from pkg/devstack) in the test
// process. Tests reach it over REST through the gateway, over gRPC, and
// look behind it at the stream and the store.
//
// With both NATS_URL and MONGO_URI set, stacks use those servers instead:
// each stack's services get databases of their own (a per-stack prefix), but
// the JetStream streams and durable consumers have fixed names, so stacks
// against shared servers run one at a time.
package stack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/auth"
	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/logging"
	"github.com/pizzashop/pizzashop/pkg/mongox"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Services are the processes of a stack, in start order. The gateway is
// last: it forwards to all the others.
var Services = []string{"menu", "order", "kitchen", "delivery", "gateway"}

// Timeouts of the harness.
const (
	readyTimeout = 90 * time.Second // from start to a ready gateway
	stopGrace    = 10 * time.Second // SIGTERM to SIGKILL
	tailLines    = 50               // log lines shown per process on failure
)

// Option configures Start.
type Option func(*options)

type options struct {
	env      map[string][]string
	replicas int
}

// WithReplicas runs n processes of every service but the gateway (n from 1
// to 9) and, on embedded servers, NATS as a cluster of three with streams
// of three replicas, as in production. Replica 1 of a service keeps the
// service's name ("order"); the others are named "order-2" and on. The
// default is PIZZASHOP_E2E_REPLICAS, or 1: CI sets it to run suites in the
// replicated shape once more.
func WithReplicas(n int) Option { return func(o *options) { o.replicas = n } }

// defaultReplicas reads PIZZASHOP_E2E_REPLICAS.
func defaultReplicas() (int, error) {
	v := os.Getenv("PIZZASHOP_E2E_REPLICAS")
	if v == "" {
		return 1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("PIZZASHOP_E2E_REPLICAS=%q is not a number", v)
	}
	return n, nil
}

// WithEnv adds environment variables ("K=V") to the first start of one
// service (every replica of it), after the stack's own, so they may override them: for example
// WithEnv("order", "OUTBOX_RELAY_DISABLED=true") or
// WithEnv("kitchen", "KITCHEN_BAKE_TIME=1m"). A later StartService of that
// service does not repeat them.
func WithEnv(service string, kv ...string) Option {
	return func(o *options) {
		o.env[service] = append(o.env[service], kv...)
	}
}

// Stack is a running shop. One Stack may be shared by several tests (each
// taking its own view with For); it stops when the test that started it
// ends.
type Stack struct {
	*shop
	t testing.TB
}

// shop is the state a Stack and its views share.
type shop struct {
	// ds is the embedded NATS and FerretDB; nil with external servers and
	// with replicas, which run cluster instead.
	ds       *devstack.Stack
	cluster  *devstack.Cluster
	replicas int
	dir      string // temporary directory of the stack: logs, data
	logDir   string
	bin      string
	secret   string
	prefix   string // of every database name
	embedded bool
	natsURL  string
	mongoURI string

	grpcAddr    map[string]string // process -> gRPC address; gateway -> HTTP address
	metricsAddr map[string]string
	httpAddr    string

	signer *auth.Signer
	nc     *nats.Conn
	js     jetstream.JetStream
	mongo  *mongo.Client
	client *http.Client

	mu    sync.Mutex
	procs map[string]*proc
}

// proc is one running service process.
type proc struct {
	name    string
	service string // its binary
	cmd     *exec.Cmd
	done    chan struct{} // closed once it has exited
	err     error         // from Wait; read after done

	stopped atomic.Bool // the test stopped or killed it
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// external serializes stacks that share NATS and MongoDB servers.
var external sync.Mutex

// devstackStart serializes devstack.Start (see startDevstack).
var devstackStart sync.Mutex

// Start builds the binaries (once per test binary), starts NATS and
// FerretDB in t.TempDir() and every service on free loopback ports, and
// returns once the gateway's /readyz answers 200 and every service process
// reports SERVING. Everything stops when t
// ends; when t failed, the last lines of every log are shown first.
func Start(t testing.TB, opts ...Option) *Stack {
	t.Helper()
	o := options{env: map[string][]string{}}
	n, err := defaultReplicas()
	if err != nil {
		t.Fatalf("stack: %v", err)
	}
	o.replicas = n
	for _, opt := range opts {
		opt(&o)
	}
	if o.replicas < 1 || o.replicas > 9 {
		t.Fatalf("stack: %d replicas, want 1 to 9", o.replicas)
	}
	for name := range o.env {
		if !slices.Contains(Services, name) {
			t.Fatalf("stack.WithEnv(%q): no such service; want one of %v", name, Services)
		}
	}
	bin := Binaries(t)
	begin := time.Now()

	dir := t.TempDir()
	s := &Stack{t: t, shop: &shop{
		dir:         dir,
		replicas:    o.replicas,
		logDir:      filepath.Join(dir, "logs"),
		bin:         bin,
		secret:      randomHex(24),
		prefix:      "e2e" + randomHex(4) + "_",
		grpcAddr:    map[string]string{},
		metricsAddr: map[string]string{},
		procs:       map[string]*proc{},
		client:      &http.Client{Timeout: 30 * time.Second},
	}}
	if err := os.MkdirAll(s.logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	signer, err := auth.NewSigner(s.secret)
	if err != nil {
		t.Fatal(err)
	}
	s.signer = signer

	// Cleanups run last-registered first: the log tails are shown while
	// everything is still in place, then the processes stop, then the
	// connections close, then the servers.
	s.natsURL, s.mongoURI = os.Getenv("NATS_URL"), os.Getenv("MONGO_URI")
	if External() {
		// Waiting here could hold the parallel test slot that the holder's
		// own subtests need: fail clearly instead.
		if !external.TryLock() {
			t.Fatalf("stack: another stack is running against NATS_URL and MONGO_URI; stacks on shared servers run one at a time: start tests with stack.Parallel, not t.Parallel")
		}
		t.Cleanup(external.Unlock)
	} else {
		s.embedded = true
		if s.replicas > 1 {
			s.startCluster(t)
		} else {
			s.startDevstack(t)
		}
	}
	s.connect(t)

	for _, name := range Services {
		if name == "gateway" {
			s.httpAddr = freeAddr(t)
			s.grpcAddr[name] = s.httpAddr
			continue
		}
		for _, p := range s.Replicas(name) {
			s.grpcAddr[p] = freeAddr(t)
			s.metricsAddr[p] = freeAddr(t)
		}
	}
	t.Cleanup(s.stopAll)
	t.Cleanup(func() {
		if t.Failed() {
			s.dumpLogs()
		}
	})
	for _, name := range Services {
		for _, p := range s.Replicas(name) {
			s.startBinary(p, name, o.env[name])
		}
	}
	s.WaitReady()
	// The gateway is ready once one process of each service answers; tests
	// also call replicas directly, so every one of them must serve.
	for _, name := range Services {
		if name == "gateway" {
			continue
		}
		for _, p := range s.Replicas(name) {
			s.waitServing(p)
		}
	}
	shape := ""
	if s.replicas > 1 {
		shape = fmt.Sprintf(" (%d replicas of every service, NATS cluster of %d)", s.replicas, devstack.ClusterNodes)
	}
	t.Logf("stack up in %s%s: gateway %s, logs in %s", time.Since(begin).Round(time.Millisecond), shape, s.URL(""), s.logDir)
	return s
}

// Replicas names the processes of a service: the service itself, then
// service-2 and on when the stack runs replicas. The gateway runs once.
func (s *shop) Replicas(service string) []string {
	if service == "gateway" || s.replicas == 1 {
		return []string{service}
	}
	names := []string{service}
	for r := 2; r <= s.replicas; r++ {
		names = append(names, service+"-"+strconv.Itoa(r))
	}
	return names
}

// ReplicaCount is how many processes each service but the gateway runs.
func (s *shop) ReplicaCount() int { return s.replicas }

// serviceOf is the service (binary) of a process name.
func (s *shop) serviceOf(name string) string {
	for _, svc := range Services {
		if slices.Contains(s.Replicas(svc), name) {
			return svc
		}
	}
	return ""
}

// startCluster starts three NATS nodes and FerretDB, for replicas.
func (s *Stack) startCluster(t testing.TB) {
	t.Helper()
	f, err := os.Create(filepath.Join(s.logDir, "devstack.log"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	devstackStart.Lock()
	cl, err := devstack.StartCluster(ctx, devstack.ClusterOptions{
		Dir:    filepath.Join(s.dir, "data"),
		Logger: logging.New(f, "devstack", "warn"),
	})
	devstackStart.Unlock()
	if err != nil {
		f.Close()
		t.Fatalf("start a NATS cluster and FerretDB: %v", err)
	}
	t.Cleanup(func() {
		cl.Close()
		f.Close()
	})
	s.natsURL, s.mongoURI = cl.NATSURL(), cl.MongoURI()
	s.cluster = cl
}

// StopNATSNode stops node i (0-based) of the NATS cluster, as a crash of
// that server would. Only with replicas on embedded servers.
func (s *Stack) StopNATSNode(i int) { s.clusterOnly().StopNode(i) }

// StartNATSNode starts node i again, on its address with its data.
func (s *Stack) StartNATSNode(i int) {
	s.t.Helper()
	if err := s.clusterOnly().StartNode(i); err != nil {
		s.t.Fatalf("start NATS node %d again: %v", i, err)
	}
}

// NATSCluster is the embedded NATS cluster; nil without replicas.
func (s *shop) NATSCluster() *devstack.Cluster { return s.cluster }

func (s *Stack) clusterOnly() *devstack.Cluster {
	s.t.Helper()
	if s.cluster == nil {
		s.t.Skip("NATS nodes are stopped only in the replicated shape on embedded servers")
	}
	return s.cluster
}

// External reports whether stacks use the servers of NATS_URL and
// MONGO_URI instead of embedded ones.
func External() bool { return os.Getenv("NATS_URL") != "" && os.Getenv("MONGO_URI") != "" }

// Parallel is t.Parallel for tests that start a stack: stacks on shared
// servers (External) run one at a time, so there it does nothing.
func Parallel(t *testing.T) {
	if !External() {
		t.Parallel()
	}
}

// For returns a view of the stack for another test (a subtest sharing it):
// helpers of the view report failures to t.
func (s *Stack) For(t testing.TB) *Stack { return &Stack{shop: s.shop, t: t} }

func (s *Stack) startDevstack(t testing.TB) {
	t.Helper()
	f, err := os.Create(filepath.Join(s.logDir, "devstack.log"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// FerretDB's constructor writes a package variable: parallel tests
	// start their stores one at a time.
	devstackStart.Lock()
	ds, err := devstack.Start(ctx, devstack.Options{
		Dir:    filepath.Join(s.dir, "data"),
		Logger: logging.New(f, "devstack", "warn"),
	})
	devstackStart.Unlock()
	if err != nil {
		f.Close()
		t.Fatalf("start NATS and FerretDB: %v", err)
	}
	t.Cleanup(func() {
		ds.Close()
		f.Close()
	})
	s.natsURL, s.mongoURI = ds.NATSURL(), ds.MongoURI()
	s.ds = ds
}

// StopNATS takes NATS down, as an outage would: with replicas, every node
// of the cluster. Tests that call it skip against external servers.
func (s *Stack) StopNATS() {
	if s.cluster != nil {
		for i := range devstack.ClusterNodes {
			s.cluster.StopNode(i)
		}
		return
	}
	s.embeddedOnly().StopNATS()
}

// StartNATS brings NATS back on the same address with the same data.
func (s *Stack) StartNATS() {
	s.t.Helper()
	if s.cluster != nil {
		// Together: a JetStream node waits for its peers before it is ready.
		var wg sync.WaitGroup
		errs := make([]error, devstack.ClusterNodes)
		for i := range devstack.ClusterNodes {
			wg.Go(func() { errs[i] = s.cluster.StartNode(i) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			s.t.Fatalf("start the NATS cluster again: %v", err)
		}
		return
	}
	if err := s.embeddedOnly().StartNATS(); err != nil {
		s.t.Fatalf("start NATS again: %v", err)
	}
}

// StopStore takes the store (FerretDB) down, as an outage would.
func (s *Stack) StopStore() {
	if s.cluster != nil {
		s.cluster.StopMongo()
		return
	}
	s.embeddedOnly().StopMongo()
}

// StartStore brings the store back on the same address with the same data.
func (s *Stack) StartStore() {
	s.t.Helper()
	devstackStart.Lock()
	var err error
	if s.cluster != nil {
		err = s.cluster.StartMongo()
	} else {
		err = s.embeddedOnly().StartMongo()
	}
	devstackStart.Unlock()
	if err != nil {
		s.t.Fatalf("start the store again: %v", err)
	}
}

// StoreStatements counts the statements the embedded store carried out so
// far, by command, collection and lookup (by key or scan).
func (s *Stack) StoreStatements() []devstack.StoreCommand {
	if s.cluster != nil {
		return s.cluster.StoreCommands()
	}
	return s.embeddedOnly().StoreCommands()
}

func (s *Stack) embeddedOnly() *devstack.Stack {
	s.t.Helper()
	if s.ds == nil {
		s.t.Skip("outages of the whole of NATS and the store are staged on the embedded single servers only")
	}
	return s.ds
}

func (s *Stack) connect(t testing.TB) {
	t.Helper()
	nc, err := nats.Connect(s.natsURL, nats.Name("e2e"), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatalf("connect to NATS %s: %v", s.natsURL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		t.Fatalf("jetstream: %v", err)
	}
	s.nc, s.js = nc, js
	t.Cleanup(nc.Close)

	mc, err := mongox.Connect(s.mongoURI, 8)
	if err != nil {
		t.Fatalf("connect to MongoDB %s: %v", s.mongoURI, err)
	}
	s.mongo = mc
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if !s.embedded {
			for _, name := range Services {
				if name != "gateway" {
					_ = mc.Database(s.database(name)).Drop(ctx)
				}
			}
		}
		_ = mc.Disconnect(ctx)
	})
}

func (s *shop) database(name string) string { return s.prefix + name }

// env is the environment of one service: the test's own (PATH, OTEL_*, ...)
// without what the stack decides, then the stack's settings, then extra.
func (s *shop) env(name, binary string, extra []string) []string {
	managed := []string{"GRPC_ADDR", "METRICS_ADDR", "HTTP_ADDR", "MENU_ADDR", "ORDER_ADDR", "KITCHEN_ADDR",
		"DELIVERY_ADDR", "MONGO_URI", "MONGO_DATABASE", "NATS_URL", "AUTH_SECRET", "NATS_STREAM_REPLICAS"}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(managed, k) {
			env = append(env, kv)
		}
	}
	set := map[string]string{
		"MENU_ADDR":        s.replicaAddrs("menu"),
		"ORDER_ADDR":       s.replicaAddrs("order"),
		"KITCHEN_ADDR":     s.replicaAddrs("kitchen"),
		"DELIVERY_ADDR":    s.replicaAddrs("delivery"),
		"AUTH_SECRET":      s.secret,
		"SHUTDOWN_TIMEOUT": "5s",
	}
	if s.cluster != nil {
		set["NATS_STREAM_REPLICAS"] = strconv.Itoa(devstack.ClusterNodes)
	}
	if os.Getenv("LOG_LEVEL") == "" {
		set["LOG_LEVEL"] = "info"
	}
	if binary == "gateway" {
		set["HTTP_ADDR"] = s.httpAddr
	} else {
		set["GRPC_ADDR"] = s.grpcAddr[name]
		set["METRICS_ADDR"] = s.metricsAddr[name]
		set["MONGO_URI"] = s.mongoURI
		set["MONGO_DATABASE"] = s.database(binary)
		set["NATS_URL"] = s.natsURL
	}
	for _, k := range slices.Sorted(maps.Keys(set)) {
		env = append(env, k+"="+set[k])
	}
	// os/exec keeps the last of duplicate keys, so extra overrides.
	return append(env, extra...)
}

// replicaAddrs lists the gRPC addresses of every replica of a service,
// comma-separated, as the gateway and the order service take them.
func (s *shop) replicaAddrs(service string) string {
	var addrs []string
	for _, p := range s.Replicas(service) {
		addrs = append(addrs, s.grpcAddr[p])
	}
	return strings.Join(addrs, ",")
}

// start starts one service process, its output appended to its log file.
func (s *Stack) start(name string, extra []string) {
	s.t.Helper()
	s.startBinary(name, s.serviceOf(name), extra)
}

// startBinary starts a process of binary named name.
func (s *Stack) startBinary(name, binary string, extra []string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.procs[name]; p != nil && !p.exited() {
		s.t.Fatalf("stack: start %s: it is already running (pid %d)", name, p.cmd.Process.Pid)
	}
	f, err := os.OpenFile(s.LogFile(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close() // the child has its own copy
	fmt.Fprintf(f, "---- e2e: starting %s at %s\n", name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(filepath.Join(s.bin, binary))
	cmd.Env = s.env(name, binary, extra)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("stack: start %s: %v", name, err)
	}
	p := &proc{name: name, service: binary, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.procs[name] = p
}

// StartGateway starts one more gateway process, named name (its log is
// NAME.log), with the stack's gateway environment plus extraEnv, on a free
// address, and returns its base URL once its /readyz answers 200. Pointing
// one of its upstreams elsewhere (ORDER_ADDR=...) measures the gateway
// alone. It stops with the stack.
func (s *Stack) StartGateway(name string, extraEnv ...string) string {
	s.t.Helper()
	if s.serviceOf(name) != "" {
		s.t.Fatalf("stack: StartGateway(%q): the name of a stack service", name)
	}
	addr := freeAddr(s.t)
	s.startBinary(name, "gateway", append([]string{"HTTP_ADDR=" + addr}, extraEnv...))
	s.waitReady("http://" + addr + "/readyz")
	return "http://" + addr
}

// StartService starts one service process (a replica's name, such as
// "order-2", starts that replica) that was stopped or killed, with the
// stack's environment plus extraEnv ("K=V"; options given to Start are not
// repeated), and waits until it reports SERVING (the gateway: until
// /readyz answers 200).
func (s *Stack) StartService(name string, extraEnv ...string) {
	s.t.Helper()
	s.checkName(name)
	s.start(name, extraEnv)
	if s.serviceOf(name) == "gateway" {
		s.WaitReady()
		return
	}
	s.waitServing(name)
}

// Stop sends SIGTERM to a service and waits until it has exited, killing it
// after 10 s.
func (s *Stack) Stop(name string) {
	s.t.Helper()
	s.checkName(name)
	if p := s.proc(name); p != nil {
		p.stopped.Store(true)
		p.stop()
	}
}

// Kill kills a service with SIGKILL, as a crash would, and waits until it is
// gone.
func (s *Stack) Kill(name string) {
	s.t.Helper()
	s.checkName(name)
	if p := s.proc(name); p != nil && !p.exited() {
		p.stopped.Store(true)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Running reports whether the process of a service is running.
func (s *Stack) Running(name string) bool {
	p := s.proc(name)
	return p != nil && !p.exited()
}

func (s *shop) proc(name string) *proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.procs[name]
}

func (s *Stack) checkName(name string) {
	s.t.Helper()
	if s.serviceOf(name) == "" {
		var all []string
		for _, svc := range Services {
			all = append(all, s.Replicas(svc)...)
		}
		s.t.Fatalf("stack: no service process %q; want one of %v", name, all)
	}
}

func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(stopGrace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stopAll stops the gateway first, so that nothing new comes in, then order
// (it calls menu and kitchen), then the rest, each tier in parallel.
// Extra gateways go with the first tier.
func (s *shop) stopAll() {
	s.mu.Lock()
	procs := slices.Collect(maps.Values(s.procs))
	s.mu.Unlock()
	// Extra gateways run the gateway binary, so they go with the first tier.
	for _, tier := range [][]string{{"gateway"}, {"order"}, {"menu", "kitchen", "delivery"}} {
		var wg sync.WaitGroup
		for _, p := range procs {
			if slices.Contains(tier, p.service) {
				wg.Go(p.stop)
			}
		}
		wg.Wait()
	}
}

// WaitReady waits until the gateway's /readyz answers 200, failing the test
// if a process dies or the time runs out first.
func (s *Stack) WaitReady() {
	s.t.Helper()
	s.waitReady(s.URL("/readyz"))
}

func (s *Stack) waitReady(url string) {
	s.t.Helper()
	client := &http.Client{Timeout: 3 * time.Second}
	deadline := time.Now().Add(readyTimeout)
	last := "no answer yet"
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1000))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(body))
		} else {
			last = err.Error()
		}
		s.checkAlive()
		if time.Now().After(deadline) {
			s.t.Fatalf("stack: gateway not ready after %s: GET %s: %s", readyTimeout, url, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitServing waits until a service process's gRPC health check answers
// SERVING.
func (s *Stack) WaitServing(name string) {
	s.t.Helper()
	s.checkName(name)
	s.waitServing(name)
}

// waitServing waits until a service's gRPC health check answers SERVING.
func (s *Stack) waitServing(name string) {
	s.t.Helper()
	conn, err := grpc.NewClient(s.GRPCAddr(name), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		s.t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(readyTimeout)
	last := "no answer yet"
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		if err != nil {
			last = err.Error()
		} else {
			last = resp.GetStatus().String()
		}
		s.checkAlive()
		if time.Now().After(deadline) {
			s.t.Fatalf("stack: %s not SERVING after %s: %s", name, readyTimeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkAlive fails the test when a process has exited on its own, showing
// its last log lines.
func (s *Stack) checkAlive() {
	s.t.Helper()
	s.mu.Lock()
	var dead []*proc
	for _, p := range s.procs {
		if p.exited() && !p.stopped.Load() {
			dead = append(dead, p)
		}
	}
	s.mu.Unlock()
	for _, p := range dead {
		s.t.Fatalf("stack: %s exited while waiting for it: %v; last lines of %s:\n%s",
			p.name, p.err, s.LogFile(p.name), strings.Join(tail(s.LogFile(p.name), tailLines), "\n"))
	}
}

func (s *Stack) dumpLogs() {
	names, _ := filepath.Glob(filepath.Join(s.logDir, "*.log"))
	for _, path := range names {
		lines := tail(path, tailLines)
		s.t.Logf("last %d lines of %s:\n%s", len(lines), path, strings.Join(lines, "\n"))
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return []string{err.Error()}
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines
}

// URL is the gateway URL of path ("/v1/menu").
func (s *shop) URL(path string) string { return "http://" + s.httpAddr + path }

// GRPCAddr is the gRPC address of a service (the HTTP address of the
// gateway).
func (s *shop) GRPCAddr(name string) string { return s.grpcAddr[name] }

// MetricsAddr is the address of a service's /metrics.
func (s *shop) MetricsAddr(name string) string { return s.metricsAddr[name] }

// NATSURL and MongoURI are the servers the stack uses.
func (s *shop) NATSURL() string  { return s.natsURL }
func (s *shop) MongoURI() string { return s.mongoURI }

// Secret is the key the stack's credentials are signed with.
func (s *shop) Secret() string { return s.secret }

// LogDir holds one log file per process, NAME.log, appended to on restarts.
func (s *shop) LogDir() string { return s.logDir }

// LogFile is the log of one service.
func (s *shop) LogFile(name string) string { return filepath.Join(s.logDir, name+".log") }

// LogFiles lists every log of the stack, the embedded servers' included.
func (s *shop) LogFiles() []string {
	names, _ := filepath.Glob(filepath.Join(s.logDir, "*.log"))
	return names
}

// JS is a JetStream client on the stack's NATS.
func (s *shop) JS() jetstream.JetStream { return s.js }

// NC is the NATS connection behind JS.
func (s *shop) NC() *nats.Conn { return s.nc }

// Mongo is the database of a service.
func (s *shop) Mongo(name string) *mongo.Database { return s.mongo.Database(s.database(name)) }

// Token returns a credential for role ("customer", "kitchen", "courier",
// "admin", "service") and subject, signed with the stack's secret and valid
// for an hour.
func (s *Stack) Token(role, sub string) string {
	s.t.Helper()
	tok, _, err := s.signer.Sign(auth.Claims{Subject: sub, Role: auth.Role(role), Name: sub}, time.Hour)
	if err != nil {
		s.t.Fatalf("stack: token for %s %s: %v", role, sub, err)
	}
	return tok
}

// Request builds a request to the gateway. body is sent as is when it is a
// string or []byte, as JSON otherwise, and not at all when nil. headers are
// "Name", "value" pairs.
func (s *Stack) Request(ctx context.Context, method, path, token string, body any, headers ...string) *http.Request {
	s.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			s.t.Fatalf("stack: encode body: %v", err)
		}
		r = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL(path), r)
	if err != nil {
		s.t.Fatalf("stack: %s %s: %v", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if len(headers)%2 != 0 {
		s.t.Fatalf("stack: headers %q are not name, value pairs", headers)
	}
	for i := 0; i < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return req
}

// Do sends a request to the gateway (see Request) and returns the status,
// the body, and the body decoded as a JSON object (nil when it is not one).
// Only a transport failure fails the test.
func (s *Stack) Do(method, path, token string, body any, headers ...string) (int, []byte, map[string]any) {
	s.t.Helper()
	resp, err := s.client.Do(s.Request(context.Background(), method, path, token, body, headers...))
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		m = nil
	}
	return resp.StatusCode, raw, m
}

// Client is the HTTP client Do uses.
func (s *shop) Client() *http.Client { return s.client }

// Binaries builds the menu, order, kitchen, delivery and gateway binaries
// from the workspace around the test, once per test binary, and returns
// their directory.
func Binaries(t testing.TB) string {
	t.Helper()
	built.once.Do(func() {
		begin := time.Now()
		built.dir, built.err = buildBinaries()
		t.Logf("built the shop's binaries in %s", time.Since(begin).Round(time.Millisecond))
	})
	if built.err != nil {
		t.Fatalf("stack: %v", built.err)
	}
	return built.dir
}

var built struct {
	once sync.Once
	dir  string
	err  error
}

// binDirPrefix names the directory of the binaries; the pid in it lets a
// later test binary remove what a finished one left behind (a test binary
// has no hook at exit to remove its own).
const binDirPrefix = "pizzashop-e2e-bin-"

func buildBinaries() (string, error) {
	root, err := workspaceRoot()
	if err != nil {
		return "", err
	}
	removeStaleDirs()
	dir, err := os.MkdirTemp("", binDirPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		"./services/menu", "./services/order", "./services/kitchen", "./services/delivery", "./gateway")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("go build in %s: %v\n%s", root, err, out)
	}
	return dir, nil
}

// workspaceRoot walks up from the working directory to the one holding
// go.work.
func workspaceRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work in any directory above the test")
		}
		dir = parent
	}
}

func removeStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), binDirPrefix+"*-*"))
	for _, dir := range dirs {
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), binDirPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if p, err := os.FindProcess(pid); err != nil || errors.Is(p.Signal(syscall.Signal(0)), os.ErrProcessDone) {
			_ = os.RemoveAll(dir)
		}
	}
}

// Port allocation. Ports come from below the kernel's ephemeral range
// (32768 and up on Linux), so that no outgoing connection takes one between
// the check and the service's listen, and are never handed out twice by one
// test binary.
var ports struct {
	mu   sync.Mutex
	used map[int]bool
}

const (
	portLow  = 20000
	portHigh = 32000
)

func freeAddr(t testing.TB) string {
	t.Helper()
	ports.mu.Lock()
	defer ports.mu.Unlock()
	if ports.used == nil {
		ports.used = map[int]bool{}
	}
	for range 1000 {
		n, _ := rand.Int(rand.Reader, big.NewInt(portHigh-portLow))
		port := portLow + int(n.Int64())
		if ports.used[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		l.Close()
		ports.used[port] = true
		return addr
	}
	t.Fatal("stack: found no free port")
	return ""
}

// FreeAddr returns a free loopback address for a server a test starts
// itself, from the same pool as the stack's.
func FreeAddr(t testing.TB) string { return freeAddr(t) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
