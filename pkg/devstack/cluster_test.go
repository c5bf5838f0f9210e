package devstack

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestClusterSurvivesANode writes to a stream of three replicas, stops the
// node leading it, keeps writing through the others, starts the node again
// and waits until it holds every message too.
func TestClusterSurvivesANode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three NATS servers and FerretDB")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := StartCluster(ctx, ClusterOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("StartCluster: %v", err)
	}
	t.Cleanup(c.Close)
	if got := strings.Count(c.NATSURL(), ","); got != ClusterNodes-1 {
		t.Fatalf("NATSURL() = %q, want %d URLs", c.NATSURL(), ClusterNodes)
	}

	nc, err := nats.Connect(c.NATSURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "CLUSTER", Subjects: []string{"cluster.>"}, Replicas: ClusterNodes, Storage: jetstream.FileStorage,
	})
	if err != nil {
		t.Fatalf("CreateOrUpdateStream(replicas 3): %v", err)
	}
	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			// A publish during a leader election may time out; the same
			// message id makes a repeat harmless.
			var err error
			for range 40 {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err = js.Publish(pctx, "cluster.msg", []byte(fmt.Sprint(i)), jetstream.WithMsgID(fmt.Sprint("m", i)))
				cancel()
				if err == nil {
					break
				}
				time.Sleep(250 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
		}
	}
	publish(0, 10)

	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Cluster == nil || len(info.Cluster.Replicas) != ClusterNodes-1 {
		t.Fatalf("stream cluster info = %+v, want a leader and %d replicas", info.Cluster, ClusterNodes-1)
	}
	leader := -1
	for i := range ClusterNodes {
		if c.NodeName(i) == info.Cluster.Leader {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatalf("stream leader %q is none of the nodes", info.Cluster.Leader)
	}

	c.StopNode(leader)
	if c.Running(leader) {
		t.Fatalf("Running(%d) after StopNode = true", leader)
	}
	publish(10, 20)
	if err := c.StartNode(leader); err != nil {
		t.Fatalf("StartNode(%d): %v", leader, err)
	}
	if err := c.StartNode(leader); err == nil {
		t.Fatalf("StartNode(%d) of a running node: nil error, want one", leader)
	}

	// The restarted node catches up: every replica current with 20 messages.
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := stream.Info(ctx)
		if err == nil && info.State.Msgs == 20 && info.Cluster != nil && len(info.Cluster.Replicas) == ClusterNodes-1 {
			current := true
			for _, r := range info.Cluster.Replicas {
				current = current && r.Current && !r.Offline
			}
			if current {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restarting %s: stream info = %+v (err %v), want 20 messages on 3 current replicas", c.NodeName(leader), info, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestClusterAddrs(t *testing.T) {
	addrs, routes, err := clusterAddrs([]string{"127.0.0.1:4222", "127.0.0.1:4223", "127.0.0.1:4224"}, nil)
	if err != nil {
		t.Fatalf("clusterAddrs(fixed ports): %v", err)
	}
	if want := "127.0.0.1:4222,127.0.0.1:4223,127.0.0.1:4224 127.0.0.1:6222,127.0.0.1:6223,127.0.0.1:6224"; strings.Join(addrs, ",")+" "+strings.Join(routes, ",") != want {
		t.Errorf("clusterAddrs(4222..4224) = %v %v, want %s", addrs, routes, want)
	}
	for _, tc := range []struct {
		addrs, routes []string
		want          string
	}{
		{[]string{"127.0.0.1:4222"}, nil, "want 3"},
		{[]string{"127.0.0.1:0", "127.0.0.1:1", "127.0.0.1:2"}, nil, "fixed port"},
		{[]string{"127.0.0.1:1", "127.0.0.1:1", "127.0.0.1:2"}, nil, "twice"},
		{[]string{"a:1", "a:2", "a:3"}, []string{"a:4"}, "route addresses"},
		{[]string{"nohost", "a:2", "a:3"}, nil, "nohost"},
	} {
		if _, _, err := clusterAddrs(tc.addrs, tc.routes); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("clusterAddrs(%q, %q) = %v, want an error saying %q", tc.addrs, tc.routes, err, tc.want)
		}
	}
}

// TestClusterCredentials: with credentials the nodes refuse a client
// without them, route to each other with them (a stream of three replicas
// forms), and the store refuses a client without them.
func TestClusterCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three NATS servers and FerretDB")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	creds, err := LoadOrCreateCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := StartCluster(ctx, ClusterOptions{Dir: dir, Credentials: &creds})
	if err != nil {
		t.Fatalf("StartCluster with credentials: %v", err)
	}
	t.Cleanup(c.Close)

	if nc, err := nats.Connect(c.NodeURL(1), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatalf("nats.Connect(%s) without credentials succeeded, want it refused", c.NodeURL(1))
	}
	nc, err := nats.Connect(c.NATSURL())
	if err != nil {
		t.Fatalf("nats.Connect with the cluster's credentials: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "CREDS", Subjects: []string{"creds.>"}, Replicas: ClusterNodes}); err != nil {
		t.Fatalf("CreateOrUpdateStream(replicas 3) with credentials: %v", err)
	}
	if _, err := js.Publish(ctx, "creds.x", []byte("x")); err != nil {
		t.Fatalf("publish: %v", err)
	}

	if !strings.Contains(c.MongoURI(), creds.MongoUser+":") {
		t.Errorf("MongoURI() has no user: the services could not sign in")
	}
	anon := strings.Replace(c.MongoURI(), url.UserPassword(creds.MongoUser, creds.MongoPassword).String()+"@", "", 1)
	mc := connectMongo(t, anon)
	if err := mc.Database("x").RunCommand(ctx, map[string]any{"listCollections": 1}).Err(); err == nil {
		t.Errorf("the store answered a client without credentials")
	}
	mc = connectMongo(t, c.MongoURI())
	if err := mc.Database("x").RunCommand(ctx, map[string]any{"listCollections": 1}).Err(); err != nil {
		t.Errorf("the store refused its own credentials: %v", err)
	}
}
