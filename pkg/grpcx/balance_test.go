package grpcx_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/grpcx"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// replicas starts n servers and counts the GetMenu and PriceOrder calls each
// one takes.
func replicas(t *testing.T, n int) ([]*env, []*atomic.Int64, string) {
	t.Helper()
	var envs []*env
	var counts []*atomic.Int64
	var addrs []string
	for range n {
		e := newEnv(t)
		c := &atomic.Int64{}
		e.menu.getMenu = func(context.Context) error { c.Add(1); return nil }
		e.menu.priceOrder = func(context.Context) error { c.Add(1); return nil }
		e.serve(t, time.Second)
		envs, counts, addrs = append(envs, e), append(counts, c), append(addrs, e.addr)
	}
	return envs, counts, strings.Join(addrs, ",")
}

func dialBalanced(t *testing.T, addrs string, safe ...string) menuv1.MenuServiceClient {
	t.Helper()
	conn, err := grpcx.DialBalanced(addrs, safe)
	if err != nil {
		t.Fatalf("DialBalanced(%q): %v", addrs, err)
	}
	t.Cleanup(func() { conn.Close() })
	return menuv1.NewMenuServiceClient(conn)
}

// waitEvery calls GetMenu until every replica has taken a call: round
// robin starts on the first replica that is ready.
func waitEvery(t *testing.T, client menuv1.MenuServiceClient, counts []*atomic.Int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := client.GetMenu(testCtx(t), &menuv1.GetMenuRequest{}); err != nil {
			t.Fatalf("GetMenu: %v", err)
		}
		all := true
		for _, c := range counts {
			all = all && c.Load() > 0
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 5s some replica took no call: %v", loads(counts))
		}
	}
}

func loads(counts []*atomic.Int64) []int64 {
	var out []int64
	for _, c := range counts {
		out = append(out, c.Load())
	}
	return out
}

func reset(counts []*atomic.Int64) {
	for _, c := range counts {
		c.Store(0)
	}
}

func TestDialBalancedRoundRobin(t *testing.T) {
	_, counts, addrs := replicas(t, 3)
	client := dialBalanced(t, addrs)
	waitEvery(t, client, counts)
	reset(counts)
	for range 60 {
		if _, err := client.GetMenu(testCtx(t), &menuv1.GetMenuRequest{}); err != nil {
			t.Fatalf("GetMenu: %v", err)
		}
	}
	for i, n := range loads(counts) {
		if n != 20 {
			t.Errorf("replica %d took %d of 60 calls, want 20 (round robin); all: %v", i, n, loads(counts))
		}
	}
}

// A replica that begins to stop (its health service turns NOT_SERVING)
// takes no new calls; one that stopped listening neither.
func TestDialBalancedSkipsUnhealthy(t *testing.T) {
	envs, counts, addrs := replicas(t, 3)
	client := dialBalanced(t, addrs)
	waitEvery(t, client, counts)

	envs[1].srv.Health.SetServingStatus(grpcx.ServingHealth, healthpb.HealthCheckResponse_NOT_SERVING)
	envs[2].srv.Stop()
	// The client learns of both asynchronously (a call picked before it
	// did may fail as the stopped one goes); give it a moment, then count
	// from a clean slate: ten calls in a row, all answered by replica 0.
	deadline := time.Now().Add(5 * time.Second)
	for {
		reset(counts)
		var err error
		for range 10 {
			if _, err = client.GetMenu(testCtx(t), &menuv1.GetMenuRequest{}); err != nil {
				break
			}
		}
		if l := loads(counts); err == nil && l[0] == 10 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("calls per replica after one turned NOT_SERVING and one stopped = %v (last error %v), want all on replica 0", l, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The overall status follows the store; it does not take a replica out.
	envs[0].srv.Health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	time.Sleep(100 * time.Millisecond)
	if _, err := client.GetMenu(testCtx(t), &menuv1.GetMenuRequest{}); err != nil {
		t.Fatalf("GetMenu while the replica's dependencies are down: %v, want it still called", err)
	}
}

// Reads named safe are retried on another replica after Unavailable; other
// calls are not.
func TestDialBalancedRetriesOnlySafeCalls(t *testing.T) {
	envs, counts, addrs := replicas(t, 2)
	client := dialBalanced(t, addrs, menuv1.MenuService_GetMenu_FullMethodName)
	waitEvery(t, client, counts)

	// Retrying a gone replica's calls is the transport's business (the
	// chaos test kills replicas). A replica that answers Unavailable itself
	// says that what it needs is down: the server kit tells the client not
	// to retry (a negative pushback), so a stalled store costs one call
	// timeout, not one per attempt, even for a safe call.
	var failed atomic.Int64
	for _, e := range envs[:1] {
		e.menu.getMenu = func(context.Context) error {
			failed.Add(1)
			return status.Error(codes.Unavailable, "the store is unavailable")
		}
		e.menu.priceOrder = e.menu.getMenu
	}
	var refused int64
	for range 10 {
		_, err := client.GetMenu(testCtx(t), &menuv1.GetMenuRequest{})
		if status.Code(err) == codes.Unavailable {
			refused++
		} else if err != nil {
			t.Fatalf("GetMenu: %v", err)
		}
	}
	if refused == 0 || refused != failed.Load() {
		t.Errorf("GetMenu (safe): %d calls failed Unavailable, the failing replica took %d; want each of its own answers returned once, not retried", refused, failed.Load())
	}

	failed.Store(0)
	var unavailable int
	for range 10 {
		_, err := client.PriceOrder(testCtx(t), &menuv1.PriceOrderRequest{})
		if status.Code(err) == codes.Unavailable {
			unavailable++
		} else if err != nil {
			t.Fatalf("PriceOrder: %v", err)
		}
	}
	if unavailable == 0 || int64(unavailable) != failed.Load() {
		t.Errorf("PriceOrder (not retryable): %d calls failed Unavailable, the failing replica took %d; want every one of its failures returned, none retried", unavailable, failed.Load())
	}
}

func TestDialBalancedBadInput(t *testing.T) {
	for _, tc := range []struct {
		addrs string
		safe  []string
		want  string
	}{
		{"", nil, "empty"},
		{"127.0.0.1:1,", nil, "empty entry"},
		{"127.0.0.1", nil, "not host:port"},
		{"127.0.0.1:1,127.0.0.1:1", nil, "twice"},
		{"127.0.0.1:1", []string{"a/b/c"}, "package.Service/Method"},
		{"dns:///menu", nil, "not name:port"},
		{"dns:///menu:", nil, "not name:port"},
		{"dns:///menu:9090,order:9090", nil, "one name"},
		{"dns:menu:9090", nil, "want dns:///name:port"},
		{"dns:///menu:9090?x=1", nil, "want dns:///name:port"},
	} {
		_, err := grpcx.DialBalanced(tc.addrs, tc.safe, grpc.WithIdleTimeout(time.Second))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DialBalanced(%q, %q) = %v, want an error saying %q", tc.addrs, tc.safe, err, tc.want)
		}
	}
}
