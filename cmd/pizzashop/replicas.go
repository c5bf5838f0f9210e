package main

import (
	"context"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/pizzashop/pizzashop/pkg/app"
	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/logging"
)

// replicaGRPCAddr is where replica r (from 1) of service n serves gRPC.
func (c shopConfig) replicaGRPCAddr(n, r int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(app.GRPCPort(c.basePort, n, r)))
}

// replicaMetricsAddr is where replica r (from 1) of service n serves
// /metrics.
func (c shopConfig) replicaMetricsAddr(n, r int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(app.MetricsPort(c.basePort, n, r)))
}

// processName names replica r of a service: the service's own name when it
// runs once, name-R otherwise (its log is NAME.log).
func (c shopConfig) processName(service string, r int) string {
	return app.ProcessName(service, r, c.replicas)
}

// clustered reports whether NATS runs as a cluster of three: with more than
// one replica of every service, as in production.
func (c shopConfig) clustered() bool { return c.replicas > 1 }

// clusterAddrs are the client and route addresses of the three NATS nodes:
// the NATS port and the two above it (4222, 4223, 4224), each routing on
// its port + 2000 (6222, ...), as NATS does by convention.
func (c shopConfig) clusterAddrs() (nodes, routes []string, err error) {
	host, port, err := net.SplitHostPort(c.natsAddr)
	if err != nil {
		return nil, nil, usageErrorf("--nats-addr %s: %v", c.natsAddr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p+devstack.ClusterNodes-1+2000 > 65535 {
		return nil, nil, usageErrorf("--nats-addr %s: with --replicas the NATS cluster needs a fixed port of at most %d", c.natsAddr, 65535-2000-devstack.ClusterNodes+1)
	}
	for i := range devstack.ClusterNodes {
		nodes = append(nodes, net.JoinHostPort(host, strconv.Itoa(p+i)))
		routes = append(routes, net.JoinHostPort(host, strconv.Itoa(p+i+2000)))
	}
	return nodes, routes, nil
}

// startCluster starts the three NATS nodes and FerretDB under c.data, their
// logs going to the "devstack" sink. The nodes keep their streams in
// data/nats-1..3; the store is the one of the single shape. As there, all
// require the credentials kept in c.data, and the cluster's URLs carry them.
func startCluster(ctx context.Context, c shopConfig, sink *logSink) (*devstack.Cluster, time.Duration, error) {
	begin := time.Now()
	nodes, routes, err := c.clusterAddrs()
	if err != nil {
		return nil, 0, err
	}
	creds, err := devstack.LoadOrCreateCredentials(c.data)
	if err != nil {
		return nil, 0, err
	}
	cl, err := devstack.StartCluster(ctx, devstack.ClusterOptions{
		Dir:         c.data,
		NATSAddrs:   nodes,
		RouteAddrs:  routes,
		MongoAddr:   c.mongoAddr,
		Logger:      logging.New(sink, "devstack", os.Getenv("LOG_LEVEL")),
		Credentials: &creds,
	})
	if err != nil {
		return nil, 0, err
	}
	return cl, time.Since(begin), nil
}
