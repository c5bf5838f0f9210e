package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ClusterNodes is how many NATS servers a Cluster runs: the smallest
// JetStream cluster that keeps a stream of three replicas writable with one
// node down.
const ClusterNodes = 3

// ClusterName names the NATS cluster; nodes are ClusterName-1 to -3.
const ClusterName = "pizzashop"

// ClusterOptions configures StartCluster.
type ClusterOptions struct {
	// Dir holds all data: Dir/nats-1 .. nats-3 for the nodes' JetStream,
	// Dir/ferretdb for the store. Data survives Close and a new start.
	Dir string
	// NATSAddrs are the client listen addresses of the nodes (host:port,
	// ClusterNodes of them). Empty: free loopback ports.
	NATSAddrs []string
	// RouteAddrs are where the nodes listen for each other. Empty: each
	// node's client port + 2000 (4222 routes on 6222, as NATS does), or free
	// ports when the client ports are free ones.
	RouteAddrs []string
	// MongoAddr is FerretDB's listen address; empty picks a free port.
	MongoAddr string
	// Logger receives every server's logs; nil discards them.
	Logger *slog.Logger
	// Credentials, when not nil, are required of every client of the nodes
	// and of the store, and of every node routing to another, as
	// Options.Credentials. NATSURL and MongoURI carry them.
	Credentials *Credentials
}

// Cluster is three NATS servers with JetStream routed to each other over
// loopback, so that streams of three replicas live on all of them, and the
// one FerretDB of the dev stack. Any node can be stopped and started again,
// as a crash and a restart of one server of a production cluster.
type Cluster struct {
	store

	mu    sync.Mutex
	nodes []*clusterNode

	closeOnce sync.Once
	closing   atomic.Bool // Close began: the nodes' complaints about each other are expected
}

type clusterNode struct {
	name, addr, route, dir string
	routes                 []*url.URL
	ns                     *server.Server // nil while stopped
}

// clusterReadyTimeout bounds the wait for the cluster to elect its
// JetStream meta leader.
const clusterReadyTimeout = 30 * time.Second

// StartCluster starts the three NATS nodes and FerretDB, and returns once
// the nodes accept clients and JetStream has a meta leader that hears
// every node.
func StartCluster(ctx context.Context, opts ClusterOptions) (_ *Cluster, err error) {
	dir, log, err := prepare("ClusterOptions", opts.Dir, opts.Logger, opts.Credentials)
	if err != nil {
		return nil, err
	}
	addrs, routes, err := clusterAddrs(opts.NATSAddrs, opts.RouteAddrs)
	if err != nil {
		return nil, err
	}
	c := &Cluster{store: store{dir: dir, log: log, creds: opts.Credentials}}
	var routeURLs []*url.URL
	for _, r := range routes {
		u := &url.URL{Scheme: "nats-route", Host: r}
		if c.creds != nil {
			u.User = url.UserPassword(c.creds.NATSUser, c.creds.NATSPassword)
		}
		routeURLs = append(routeURLs, u)
	}
	for i := range ClusterNodes {
		c.nodes = append(c.nodes, &clusterNode{
			name:   ClusterName + "-" + strconv.Itoa(i+1),
			addr:   addrs[i],
			route:  routes[i],
			dir:    filepath.Join(dir, "nats-"+strconv.Itoa(i+1)),
			routes: routeURLs,
		})
	}
	defer func() {
		if err != nil {
			c.stopNodes()
		}
	}()
	// All nodes start before any is waited for: a JetStream node waits for
	// its peers before it reports ready.
	var wg sync.WaitGroup
	errs := make([]error, ClusterNodes)
	for i, n := range c.nodes {
		wg.Go(func() { errs[i] = c.startNode(n) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := c.waitMetaLeader(ctx, clusterReadyTimeout); err != nil {
		return nil, err
	}
	if err := c.start(or(opts.MongoAddr, "127.0.0.1:0")); err != nil {
		return nil, err
	}
	return c, nil
}

// clusterAddrs fills in the client and route addresses of the nodes.
func clusterAddrs(addrs, routes []string) ([]string, []string, error) {
	if len(addrs) == 0 {
		// A port just freed can come back from the next pick: pick until
		// every address differs.
		picked := map[string]bool{}
		pick := func(n int) ([]string, error) {
			out := make([]string, 0, n)
			for tries := 0; len(out) < n; tries++ {
				a, err := freeLoopback()
				if err != nil {
					return nil, err
				}
				if tries > 100 {
					return nil, errors.New("devstack: cluster: no distinct free ports")
				}
				if !picked[a] {
					picked[a] = true
					out = append(out, a)
				}
			}
			return out, nil
		}
		var err error
		if addrs, err = pick(ClusterNodes); err != nil {
			return nil, nil, err
		}
		if len(routes) == 0 {
			if routes, err = pick(ClusterNodes); err != nil {
				return nil, nil, err
			}
		}
	}
	if len(addrs) != ClusterNodes {
		return nil, nil, fmt.Errorf("devstack: cluster: %d NATS addresses %q, want %d", len(addrs), addrs, ClusterNodes)
	}
	if len(routes) == 0 {
		for _, a := range addrs {
			host, port, err := splitAddr(a)
			if err != nil {
				return nil, nil, fmt.Errorf("devstack: cluster: nats address %q: %w", a, err)
			}
			if port == 0 || port+2000 > 65535 {
				return nil, nil, fmt.Errorf("devstack: cluster: nats address %q: want a fixed port below 63536, or give RouteAddrs", a)
			}
			routes = append(routes, net.JoinHostPort(host, strconv.Itoa(port+2000)))
		}
	}
	if len(routes) != ClusterNodes {
		return nil, nil, fmt.Errorf("devstack: cluster: %d route addresses %q, want %d", len(routes), routes, ClusterNodes)
	}
	seen := map[string]bool{}
	for _, a := range append(slicesClone(addrs), routes...) {
		if _, port, err := splitAddr(a); err != nil || port == 0 {
			return nil, nil, fmt.Errorf("devstack: cluster: address %q: want host:port with a fixed port", a)
		}
		if seen[a] {
			return nil, nil, fmt.Errorf("devstack: cluster: address %s given twice", a)
		}
		seen[a] = true
	}
	return addrs, routes, nil
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// freeLoopback returns a loopback address nothing listens on now.
func freeLoopback() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("devstack: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startNode starts one node; every acknowledged write is synced to disk,
// as the single server does.
func (c *Cluster) startNode(n *clusterNode) error {
	host, port, err := splitAddr(n.addr)
	if err != nil {
		return fmt.Errorf("devstack: %s address: %w", n.name, err)
	}
	rhost, rport, err := splitAddr(n.route)
	if err != nil {
		return fmt.Errorf("devstack: %s route address: %w", n.name, err)
	}
	for _, a := range []string{n.addr, n.route} {
		if err := checkFree(a); err != nil {
			return fmt.Errorf("devstack: %s: %w", n.name, err)
		}
	}
	if err := PrivateDir(n.dir); err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	opts := &server.Options{
		ServerName: n.name,
		Host:       host,
		Port:       port,
		Cluster:    server.ClusterOpts{Name: ClusterName, Host: rhost, Port: rport},
		Routes:     n.routes,
		JetStream:  true,
		StoreDir:   n.dir,
		SyncAlways: true,
		NoSigs:     true,
		NoLog:      true,
	}
	if c.creds != nil {
		c.creds.configureNATS(opts)
		// Routes bypass client authorization: they need the user too.
		opts.Cluster.Username, opts.Cluster.Password = c.creds.NATSUser, c.creds.NATSPassword
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("devstack: %s: %w", n.name, err)
	}
	ns.SetLoggerV2(clusterLogger{natsLogger{c.log.With("component", "nats", "node", n.name)}, &c.closing}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(readyTimeout) {
		stopNATS(ns)
		return fmt.Errorf("devstack: %s did not accept connections on %s within %s", n.name, n.addr, readyTimeout)
	}
	c.mu.Lock()
	n.ns = ns
	c.mu.Unlock()
	return nil
}

// waitMetaLeader waits until one node leads JetStream's meta group and
// has heard from every node, which is when a stream of one replica per
// node can be placed (before, creating one fails with "no suitable peers
// for placement").
func (c *Cluster) waitMetaLeader(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		for _, n := range c.nodes {
			if n.ns != nil && n.ns.JetStreamIsLeader() && len(n.ns.JetStreamClusterPeers()) >= len(c.nodes) {
				c.mu.Unlock()
				return nil
			}
		}
		c.mu.Unlock()
		if time.Now().After(deadline) {
			return fmt.Errorf("devstack: the NATS cluster elected no JetStream leader that hears every node within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("devstack: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// NATSURL lists every node's client URL, comma-separated, as NATS clients
// take them: a client connects to one and moves to another when it fails.
func (c *Cluster) NATSURL() string {
	var urls []string
	for i := range c.nodes {
		if c.creds != nil {
			urls = append(urls, c.creds.NATSURL(c.nodes[i].addr))
		} else {
			urls = append(urls, c.NodeURL(i))
		}
	}
	return strings.Join(urls, ",")
}

// NodeURL is the client URL of node i (0-based), without credentials.
func (c *Cluster) NodeURL(i int) string { return "nats://" + c.nodes[i].addr }

// NodeName is the server name of node i (0-based), as JetStream reports
// stream leaders and peers.
func (c *Cluster) NodeName(i int) string { return c.nodes[i].name }

// NodeDir is where node i (0-based) keeps its streams.
func (c *Cluster) NodeDir(i int) string { return c.nodes[i].dir }

// StopNode stops node i (0-based), as a crash of that server would: its
// clients move to the other nodes. Stopping a stopped node does nothing.
func (c *Cluster) StopNode(i int) {
	c.mu.Lock()
	ns := c.nodes[i].ns
	c.nodes[i].ns = nil
	c.mu.Unlock()
	if ns != nil {
		stopNATS(ns)
	}
}

// StartNode starts node i (0-based) again after StopNode, on the same
// addresses with the same data; it catches up with its peers on its own.
func (c *Cluster) StartNode(i int) error {
	c.mu.Lock()
	running := c.nodes[i].ns != nil
	c.mu.Unlock()
	if running {
		return fmt.Errorf("devstack: %s is running", c.nodes[i].name)
	}
	return c.startNode(c.nodes[i])
}

// Running reports whether node i (0-based) runs.
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].ns != nil
}

// Close stops FerretDB, then every node. It may be called more than once.
func (c *Cluster) Close() {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		if c.ferret != nil {
			c.ferret.stop()
		}
		c.stopNodes()
	})
}

func (c *Cluster) stopNodes() {
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() { c.StopNode(i) })
	}
	wg.Wait()
}

// clusterLogger demotes to debug what nodes of a cluster say about each
// other when one is not up: every node retries its routes every second
// while a peer starts or is stopped, waits for its peers at start, and all
// complain while the cluster shuts down. A cluster that never forms fails
// StartCluster with its own error. Everything else is logged as natsLogger does.
type clusterLogger struct {
	natsLogger
	closing *atomic.Bool
}

func (l clusterLogger) expected(format string) bool {
	if l.closing.Load() {
		return true
	}
	for _, p := range []string{"Error trying to connect to route", "Waiting for routing to be established", "JetStream has not established contact with a meta leader"} {
		if strings.HasPrefix(format, p) {
			return true
		}
	}
	return false
}

func (l clusterLogger) Warnf(format string, v ...any) {
	if l.expected(format) {
		l.Debugf(format, v...)
		return
	}
	l.natsLogger.Warnf(format, v...)
}

func (l clusterLogger) Errorf(format string, v ...any) {
	if l.expected(format) {
		l.Debugf(format, v...)
		return
	}
	l.natsLogger.Errorf(format, v...)
}
