package main

import (
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pizzashop/pizzashop/pkg/devstack"
)

func TestReplicaConfig(t *testing.T) {
	t.Setenv("PIZZASHOP_REPLICAS", "")
	one, err := parseShopConfig([]string{"--base-port", "20000"}, io.Discard)
	if err != nil {
		t.Fatalf("parseShopConfig(single): %v", err)
	}
	two, err := parseShopConfig([]string{"--base-port", "20000", "--replicas", "2", "--nats-addr", "127.0.0.1:14222"}, io.Discard)
	if err != nil {
		t.Fatalf("parseShopConfig(--replicas 2): %v", err)
	}
	for _, tc := range []struct{ what, got, want string }{
		// The single shape keeps its ports and names.
		{"single order gRPC", one.replicaGRPCAddr(2, 1), "127.0.0.1:20002"},
		{"single order metrics", one.replicaMetricsAddr(2, 1), "127.0.0.1:20102"},
		{"single ORDER_ADDR", one.peerAddrs()["ORDER_ADDR"], "127.0.0.1:20002"},
		{"single name", one.processName("order", 1), "order"},
		{"replica 2 of order gRPC", two.replicaGRPCAddr(2, 2), "127.0.0.1:20012"},
		{"replica 2 of delivery metrics", two.replicaMetricsAddr(4, 2), "127.0.0.1:20114"},
		{"ORDER_ADDR", two.peerAddrs()["ORDER_ADDR"], "127.0.0.1:20002,127.0.0.1:20012"},
		{"name", two.processName("order", 2), "order-2"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.what, tc.got, tc.want)
		}
	}
	if one.clustered() || !two.clustered() {
		t.Errorf("clustered() = %v single, %v with 2 replicas; want false, true", one.clustered(), two.clustered())
	}
	var listen []string
	for _, a := range two.listenAddrs() {
		listen = append(listen, a[0]+" "+a[1])
	}
	for _, want := range []string{"127.0.0.1:14224 NATS node 3", "127.0.0.1:16224 NATS node 3 routes", "127.0.0.1:20114 delivery-2 metrics"} {
		if !strings.Contains(strings.Join(listen, "\n"), want) {
			t.Errorf("listenAddrs() with 2 replicas lacks %q:\n%s", want, strings.Join(listen, "\n"))
		}
	}

	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--replicas", "0"}, "", "--replicas 0: want 1 to 9"},
		{[]string{"--replicas", "10"}, "", "--replicas 10: want 1 to 9"},
		{nil, "two", `PIZZASHOP_REPLICAS="two" is not a number`},
		{[]string{"--replicas", "2", "--nats-addr", "127.0.0.1:0"}, "", "needs a fixed port"},
	} {
		t.Setenv("PIZZASHOP_REPLICAS", tc.env)
		if _, err := parseShopConfig(tc.args, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseShopConfig(%q) with PIZZASHOP_REPLICAS=%q = %v, want an error saying %q", tc.args, tc.env, err, tc.want)
		}
	}
}

func TestNextBackoff(t *testing.T) {
	for _, tc := range []struct {
		last, ran, want time.Duration
	}{
		{0, time.Second, restartMinBackoff},                      // first death
		{restartMinBackoff, time.Second, 2 * restartMinBackoff},  // died again soon
		{16 * time.Second, time.Second, restartMaxBackoff},       // capped
		{restartMaxBackoff, time.Second, restartMaxBackoff},      // stays capped
		{restartMaxBackoff, restartHealthy, restartMinBackoff},   // ran long enough: start over
		{4 * time.Second, 2 * restartHealthy, restartMinBackoff}, // likewise
	} {
		if got := nextBackoff(tc.last, tc.ran); got != tc.want {
			t.Errorf("nextBackoff(%s, ran %s) = %s, want %s", tc.last, tc.ran, got, tc.want)
		}
	}
}

// TestSmokeReplicas runs the shop with two replicas of every service and a
// three-node NATS cluster, follows an order through both, kills a replica
// with SIGKILL and sees the launcher start it again.
func TestSmokeReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary and starts the whole shop with replicas")
	}
	root := workspaceRoot(t)
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator),
		"./services/menu", "./services/order", "./services/kitchen", "./services/delivery", "./gateway", "./cmd/pizzashop")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build in %s: %v\n%s", root, err, out)
	}

	ports := freePorts(t)
	natsPort := freeClusterPort(t)
	exe := filepath.Join(bin, "pizzashop")
	data := t.TempDir()
	shop := startLauncher(t, exe, []string{"run", "--replicas", "2", "--data", data,
		"--base-port", strconv.Itoa(ports.base), "--http", ports.http,
		"--nats-addr", "127.0.0.1:" + strconv.Itoa(natsPort), "--mongo-addr", ports.mongo})
	t.Logf("start to ready with 2 replicas: %s", shop.waitReady(t))
	web := "http://" + ports.http

	services := []string{"pizzashop.menu.v1.MenuService", "pizzashop.order.v1.OrderService",
		"pizzashop.kitchen.v1.KitchenService", "pizzashop.delivery.v1.DeliveryService"}
	addr := func(n, r int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(ports.base+10*(r-1)+n)) }
	for i, svc := range services {
		for r := 1; r <= 2; r++ {
			checkGRPC(t, addr(i+1, r), svc)
		}
	}
	checkMenu(t, func() menuJSON { m, _ := getMenu(t, web); return m }())
	placeAndWaitAccepted(t, web)

	// kill -9 the second kitchen: the launcher starts it again.
	pid := childListening(t, shop.cmd.Process.Pid, addr(3, 2))
	if err := exec.Command("kill", "-9", strconv.Itoa(pid)).Run(); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	killed := time.Now()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(shop.output(), "kitchen-2 started again (restart 1)") {
		if time.Now().After(deadline) {
			t.Fatalf("30s after kill -9 of kitchen-2 the launcher has not started it again:\n%s", shop.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	checkGRPC(t, addr(3, 2), services[2])
	t.Logf("kitchen-2 serving again %s after kill -9", time.Since(killed).Round(time.Millisecond))
	if !strings.Contains(shop.output(), "kitchen-2 was killed by signal 9 (killed)") {
		t.Errorf("the launcher did not say how kitchen-2 died:\n%s", shop.output())
	}
	metrics := string(mustGet(t, "http://"+net.JoinHostPort("127.0.0.1", strconv.Itoa(ports.base+100))+"/metrics", http.StatusOK))
	if !strings.Contains(metrics, `pizzashop_launcher_restarts_total{process="kitchen-2"} 1`) {
		t.Errorf("launcher /metrics lacks pizzashop_launcher_restarts_total{process=\"kitchen-2\"} 1")
	}
	placeAndWaitAccepted(t, web)

	// The cluster and the store want the credentials of the data directory,
	// and no password shows on the terminal or in a log.
	creds, err := devstack.LoadCredentials(data)
	if err != nil {
		t.Fatalf("credentials of %s: %v", data, err)
	}
	if nc, err := nats.Connect("nats://127.0.0.1:"+strconv.Itoa(natsPort+1), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Errorf("NATS node 2 let a client in without credentials")
	}
	logs, _ := filepath.Glob(filepath.Join(data, "logs", "*.log"))
	texts := map[string]string{"the terminal": shop.output()}
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		texts[l] = string(b)
	}
	for where, text := range texts {
		for _, pw := range []string{creds.NATSPassword, creds.MongoPassword} {
			if strings.Contains(text, pw) {
				t.Errorf("%s shows a password of the data directory's credentials", where)
			}
		}
	}

	if code, took := shop.interrupt(t, 60*time.Second); code != 0 {
		t.Fatalf("pizzashop exited with status %d after SIGINT, want 0", code)
	} else {
		t.Logf("stopped in %s", took.Round(time.Millisecond))
	}
	for n := 1; n <= 4; n++ {
		for r := 1; r <= 2; r++ {
			if err := canListen(addr(n, r)); err != nil {
				t.Errorf("after the launcher exited, %s is still taken: %v", addr(n, r), err)
			}
		}
	}
	for i := range 3 {
		if err := canListen(net.JoinHostPort("127.0.0.1", strconv.Itoa(natsPort+i))); err != nil {
			t.Errorf("after the launcher exited, NATS node %d's port is still taken: %v", i+1, err)
		}
	}
}

// freeClusterPort finds a port whose next two and the three 2000 above are
// free, for the NATS nodes and their routes.
func freeClusterPort(t *testing.T) int {
	t.Helper()
	for range 100 {
		p := 20000 + rand.IntN(8000)
		ok := true
		for _, q := range []int{p, p + 1, p + 2, p + 2000, p + 2001, p + 2002} {
			if canListen(net.JoinHostPort("127.0.0.1", strconv.Itoa(q))) != nil {
				ok = false
			}
		}
		if ok {
			return p
		}
	}
	t.Fatal("found no free ports for a NATS cluster")
	return 0
}

// childListening finds the child of the launcher given GRPC_ADDR=addr.
func childListening(t *testing.T, parent int, addr string) int {
	t.Helper()
	for _, pid := range childrenOf(parent) {
		env, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
		for kv := range strings.SplitSeq(string(env), "\x00") {
			if kv == "GRPC_ADDR="+addr {
				return pid
			}
		}
	}
	t.Fatalf("no child of %d has GRPC_ADDR=%s", parent, addr)
	return 0
}

// placeAndWaitAccepted registers a customer, orders a pizza and waits until
// the kitchen has accepted it: events crossed the cluster both ways.
func placeAndWaitAccepted(t *testing.T, web string) {
	t.Helper()
	// Letters only: a long run of digits looks like a card number.
	var b strings.Builder
	for range 12 {
		b.WriteByte(byte('a' + rand.IntN(26)))
	}
	email := "smoke-" + b.String() + "@example.com"
	req, _ := http.NewRequest(http.MethodPost, web+"/v1/customers", strings.NewReader(
		`{"name":"Smoke","email":"`+email+`","phone":"+1 555 0100","password":"correct horse battery"}`))
	resp := do(t, req)
	if resp.status != http.StatusOK {
		t.Fatalf("POST /v1/customers = %d %s", resp.status, resp.body)
	}
	token := jsonField(t, resp.body, "token")
	req, _ = http.NewRequest(http.MethodPost, web+"/v1/orders", strings.NewReader(
		`{"item":{"pizzaId":"margherita","size":"SIZE_SMALL"},"fulfillment":"FULFILLMENT_PICKUP","paymentMethod":"PAYMENT_METHOD_CASH"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Idempotency-Key", "smoke-"+email)
	resp = do(t, req)
	if resp.status != http.StatusOK {
		t.Fatalf("POST /v1/orders = %d %s", resp.status, resp.body)
	}
	id := jsonField(t, resp.body, "id")
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ = http.NewRequest(http.MethodGet, web+"/v1/orders/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp = do(t, req)
		if resp.status == http.StatusOK && jsonField(t, resp.body, "status") == "ORDER_STATUS_ACCEPTED" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %s not accepted after 30s: %d %s", id, resp.status, resp.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// jsonField is one string field of a JSON object.
func jsonField(t *testing.T, body []byte, name string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("%v in %.300s", err, body)
	}
	s, _ := m[name].(string)
	return s
}
