package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/devstack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
)

// TestSmoke builds every binary and runs the shop as `make run` does, on
// free ports and a fresh data directory: it checks the menu, caching, the
// probes, gRPC health and reflection of every service and an admin change,
// then stops the shop with SIGINT, starts it again on the same data and
// finds the change still there; a killed service is started again, and a
// killed launcher leaves no service behind.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary and starts the whole shop twice")
	}
	root := workspaceRoot(t)
	bin := t.TempDir()
	begin := time.Now()
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator),
		"./services/menu", "./services/order", "./services/kitchen", "./services/delivery", "./gateway", "./cmd/pizzashop")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build in %s: %v\n%s", root, err, out)
	}
	t.Logf("built every binary in %s", time.Since(begin).Round(time.Millisecond))

	data := t.TempDir()
	ports := freePorts(t)
	exe := filepath.Join(bin, "pizzashop")
	args := []string{"run", "--data", data,
		"--base-port", strconv.Itoa(ports.base), "--http", ports.http,
		"--nats-addr", ports.nats, "--mongo-addr", ports.mongo}
	web := "http://" + ports.http

	// First start: a cold store, seeded by the menu service.
	shop := startLauncher(t, exe, args)
	t.Logf("cold start to ready: %s (launcher says %q)", shop.waitReady(t), shop.readyLine())
	mustGet(t, web+"/readyz", http.StatusOK)
	// The banner hides the embedded servers' passwords, so it says where they are.
	if creds := filepath.Join(data, devstack.CredentialsFile); !strings.Contains(shop.output(), creds) {
		t.Errorf("the banner does not say the NATS and store passwords are in %s:\n%s", creds, shop.output())
	}

	menu, etag := getMenu(t, web)
	checkMenu(t, menu)
	if etag == "" {
		t.Fatalf("GET /v1/menu has no ETag")
	}
	req, _ := http.NewRequest(http.MethodGet, web+"/v1/menu", nil)
	req.Header.Set("If-None-Match", etag)
	if resp := do(t, req); resp.status != http.StatusNotModified {
		t.Errorf("GET /v1/menu with If-None-Match %s = %d, want 304", etag, resp.status)
	}

	for i, svc := range []string{
		"pizzashop.menu.v1.MenuService",
		"pizzashop.order.v1.OrderService",
		"pizzashop.kitchen.v1.KitchenService",
		"pizzashop.delivery.v1.DeliveryService",
	} {
		checkGRPC(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(ports.base+i+1)), svc)
	}

	mustGet(t, web+"/healthz", http.StatusOK)
	spec := mustGet(t, web+"/openapi.json", http.StatusOK)
	if !json.Valid(spec) {
		t.Errorf("GET /openapi.json is not JSON: %.200s", spec)
	}

	// A change made with an admin credential from `pizzashop token`.
	token, err := exec.Command(exe, "token", "--role", "admin", "--sub", "smoke-admin").Output()
	if err != nil {
		t.Fatalf("pizzashop token --role admin: %v", err)
	}
	body := `{"name":"Smoke Test Special","description":"Tomato, mozzarella, persistence",` +
		`"prices":[{"size":"SIZE_SMALL","amountMinor":"1010"},{"size":"SIZE_MEDIUM","amountMinor":"1320"},{"size":"SIZE_LARGE","amountMinor":"1630"}],"available":true}`
	req, _ = http.NewRequest(http.MethodPost, web+"/v1/menu/pizzas", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp := do(t, req)
	if resp.status != http.StatusOK {
		t.Fatalf("POST /v1/menu/pizzas as admin = %d %s, want 200", resp.status, resp.body)
	}
	var created pizzaJSON
	if err := json.Unmarshal(resp.body, &created); err != nil || created.ID == "" {
		t.Fatalf("POST /v1/menu/pizzas answered %s: want a pizza with an id (%v)", resp.body, err)
	}
	req, _ = http.NewRequest(http.MethodGet, web+"/v1/menu", nil)
	req.Header.Set("If-None-Match", etag)
	if resp := do(t, req); resp.status != http.StatusOK {
		t.Errorf("GET /v1/menu with the ETag from before a change = %d, want 200", resp.status)
	}

	// Ctrl-C: everything stops and every port is free again.
	code, took := shop.interrupt(t, 30*time.Second)
	if code != 0 {
		t.Fatalf("pizzashop exited with status %d after SIGINT, want 0", code)
	}
	if !strings.Contains(shop.output(), "stopped") {
		t.Errorf("pizzashop output after SIGINT does not say \"stopped\"")
	}
	t.Logf("stopped in %s", took.Round(time.Millisecond))
	for _, addr := range ports.all() {
		if err := canListen(addr); err != nil {
			t.Errorf("after the launcher exited, %s is still taken (a process was left running?): %v", addr, err)
		}
	}

	// Second start on the same data: the change is still there.
	shop = startLauncher(t, exe, args)
	t.Logf("warm start to ready: %s", shop.waitReady(t))
	menu, _ = getMenu(t, web)
	if !slices.ContainsFunc(menu.Pizzas, func(p pizzaJSON) bool { return p.ID == created.ID }) {
		t.Errorf("after a restart the menu has no pizza %q: the created pizza was lost", created.ID)
	}
	checkMenu(t, menu)

	// A service killed with SIGKILL is started again, in the single shape
	// as with replicas.
	kitchenAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports.base+3))
	pid := childListening(t, shop.cmd.Process.Pid, kitchenAddr)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 kitchen (%d): %v", pid, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(shop.output(), "kitchen started again (restart 1)") {
		if time.Now().After(deadline) {
			t.Fatalf("30s after kill -9 of the kitchen the launcher has not started it again")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Started is not yet listening: on a busy machine the new process
	// takes a moment to open its port.
	for {
		c, err := net.DialTimeout("tcp", kitchenAddr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted kitchen does not listen on %s: %v", kitchenAddr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	checkGRPC(t, kitchenAddr, "pizzashop.kitchen.v1.KitchenService")

	// A closed terminal (SIGHUP) stops the shop as Ctrl-C does, services
	// first, instead of killing the launcher on the spot. Under nohup (the
	// tests run with SIGHUP ignored, and the launcher inherits that) the
	// launcher keeps running on a hangup, as it should, so the test can
	// only send what a terminal's Ctrl-C would.
	stopSig := syscall.SIGHUP
	if signal.Ignored(syscall.SIGHUP) {
		t.Log("SIGHUP is ignored here (nohup): stopping with SIGINT, the hangup path is not tested")
		stopSig = syscall.SIGINT
	}
	if code, _ := shop.stop(t, stopSig, 30*time.Second); code != 0 {
		t.Fatalf("pizzashop exited with status %d after %v, want 0", code, stopSig)
	}
	if out := shop.output(); !strings.Contains(out, "stopping") || !strings.Contains(out, "stopped") {
		t.Errorf("pizzashop output after %v does not say it stopped its processes", stopSig)
	}

	// A launcher killed with SIGKILL takes its services with it at once:
	// they lost NATS and the store with it, and a launcher started again
	// needs their ports.
	shop = startLauncher(t, exe, args)
	shop.waitReady(t)
	children := childrenOf(shop.cmd.Process.Pid)
	// A kitchen display follows its stream meanwhile: a polite stop would
	// wait for it.
	kitchenToken, err := exec.Command(exe, "token", "--role", "kitchen", "--sub", "smoke-kitchen").Output()
	if err != nil {
		t.Fatalf("pizzashop token --role kitchen: %v", err)
	}
	watch, err := http.NewRequest(http.MethodGet, web+"/v1/kitchen/tickets:watch", nil)
	if err != nil {
		t.Fatal(err)
	}
	watch.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(kitchenToken)))
	stream, err := http.DefaultClient.Do(watch)
	if err != nil || stream.StatusCode != http.StatusOK {
		t.Fatalf("open the kitchen display's stream: %v %v", err, stream)
	}
	defer stream.Body.Close()
	if len(children) < len(serviceNames)+1 {
		t.Fatalf("the launcher has %d children, want a process for each service and the gateway", len(children))
	}
	if err := shop.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill -9 the launcher: %v", err)
	}
	<-shop.exit
	killed := time.Now()
	for _, pid := range children {
		for running(pid) {
			if time.Since(killed) > 2*time.Second {
				t.Fatalf("2s after kill -9 of the launcher, its child %d is still running", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	gone := time.Since(killed)
	// The kernel may hold a port a few moments longer, for connections the
	// kill cut in the middle.
	for _, addr := range ports.all() {
		for err := canListen(addr); err != nil; err = canListen(addr) {
			if time.Since(killed) > 10*time.Second {
				t.Fatalf("10s after kill -9 of the launcher, %s is still taken: %v", addr, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("every service gone %s after kill -9 of the launcher, every port free after %s",
		gone.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	var out []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		stat, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		_, rest, _ := strings.Cut(string(stat), ") ")
		if f := strings.Fields(rest); len(f) >= 2 && f[1] == strconv.Itoa(pid) {
			child, _ := strconv.Atoi(filepath.Base(d))
			out = append(out, child)
		}
	}
	return out
}

// running reports whether process pid exists and is not a zombie waiting
// to be reaped.
func running(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// workspaceRoot walks up from the test's directory to the one holding go.work.
func workspaceRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.work above the test directory")
		}
		dir = parent
	}
}

type smokePorts struct {
	base              int
	http, nats, mongo string
}

func (p smokePorts) all() []string {
	addrs := []string{p.http, p.nats, p.mongo}
	for n := 1; n <= len(serviceNames); n++ {
		addrs = append(addrs,
			net.JoinHostPort("127.0.0.1", strconv.Itoa(p.base+n)),
			net.JoinHostPort("127.0.0.1", strconv.Itoa(p.base+100+n)))
	}
	return addrs
}

// freePorts picks ports nothing listens on: single ones from the kernel,
// and a gRPC base whose eight derived ports are all free, below the
// kernel's ephemeral range so no outgoing connection takes one meanwhile.
func freePorts(t *testing.T) smokePorts {
	t.Helper()
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	p := smokePorts{http: free(), nats: free(), mongo: free()}
	for range 100 {
		p.base = 20000 + rand.IntN(10000)
		ok := true
		for _, addr := range p.all()[3:] {
			if canListen(addr) != nil {
				ok = false
				break
			}
		}
		if ok {
			return p
		}
	}
	t.Fatal("found no free range of gRPC and metrics ports")
	return p
}

func canListen(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}

// launcherProc is a running `pizzashop run` with its output captured.
type launcherProc struct {
	cmd   *exec.Cmd
	begin time.Time
	ready chan struct{} // closed when the banner is printed
	exit  chan struct{} // closed when the process has exited
	err   error         // from Wait, read after exit

	mu       sync.Mutex
	out      bytes.Buffer
	readyMsg string
}

func startLauncher(t *testing.T, exe string, args []string) *launcherProc {
	t.Helper()
	p := &launcherProc{cmd: exec.Command(exe, args...), ready: make(chan struct{}), exit: make(chan struct{})}
	// Always the embedded stack, as on a fresh machine: the services use
	// fixed database names that must not land in a shared server.
	p.cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "MONGO_URI=") || strings.HasPrefix(kv, "NATS_URL=")
	})
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	p.begin = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		pw.Close()
		close(p.exit)
	}()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.out.WriteString(line + "\n")
			if p.readyMsg == "" && strings.HasPrefix(line, "Pizzashop is ready in") {
				p.readyMsg = line
				close(p.ready)
			}
			p.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	t.Cleanup(func() {
		// A failed test may leave it running: stop it the same way.
		select {
		case <-p.exit:
		default:
			_ = p.cmd.Process.Signal(os.Interrupt)
			select {
			case <-p.exit:
			case <-time.After(30 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.exit
			}
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", strings.Join(p.cmd.Args, " "), p.output())
		}
	})
	return p
}

// waitReady waits for the banner and returns the time from start to it.
func (p *launcherProc) waitReady(t *testing.T) time.Duration {
	t.Helper()
	select {
	case <-p.ready:
		return time.Since(p.begin)
	case <-p.exit:
		t.Fatalf("pizzashop exited before it was ready: %v", p.err)
	case <-time.After(2 * time.Minute):
		t.Fatalf("pizzashop not ready after 2 minutes")
	}
	return 0
}

// interrupt sends SIGINT and waits for the exit status.
func (p *launcherProc) interrupt(t *testing.T, timeout time.Duration) (code int, took time.Duration) {
	t.Helper()
	return p.stop(t, syscall.SIGINT, timeout)
}

// stop sends sig and waits for the exit status.
func (p *launcherProc) stop(t *testing.T, sig syscall.Signal, timeout time.Duration) (code int, took time.Duration) {
	t.Helper()
	begin := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: %v", sig, err)
	}
	select {
	case <-p.exit:
	case <-time.After(timeout):
		t.Fatalf("pizzashop still running %s after %s", timeout, sig)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode(), time.Since(begin)
	}
	if p.err != nil {
		t.Fatalf("wait for pizzashop: %v", p.err)
	}
	return 0, time.Since(begin)
}

func (p *launcherProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *launcherProc) readyLine() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.readyMsg
}

// The REST JSON of pizzashop.menu.v1.Menu, as much as the test reads.
type menuJSON struct {
	Pizzas   []pizzaJSON `json:"pizzas"`
	Toppings []pizzaJSON `json:"toppings"` // a topping has the same id, name and prices
	Version  string      `json:"version"`
	Currency string      `json:"currencyCode"`
}

type pizzaJSON struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Prices []struct {
		Size        string `json:"size"`
		AmountMinor string `json:"amountMinor"`
	} `json:"prices"`
}

func getMenu(t *testing.T, web string) (menuJSON, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, web+"/v1/menu", nil)
	resp := do(t, req)
	if resp.status != http.StatusOK {
		t.Fatalf("GET /v1/menu = %d %s, want 200", resp.status, resp.body)
	}
	var m menuJSON
	if err := json.Unmarshal(resp.body, &m); err != nil {
		t.Fatalf("GET /v1/menu: %v in %.300s", err, resp.body)
	}
	return m, resp.header.Get("ETag")
}

// checkMenu wants a real-looking menu: at least 6 pizzas and 10 toppings,
// each priced in all three sizes.
func checkMenu(t *testing.T, m menuJSON) {
	t.Helper()
	if len(m.Pizzas) < 6 || len(m.Toppings) < 10 {
		t.Errorf("menu has %d pizzas and %d toppings, want at least 6 and 10", len(m.Pizzas), len(m.Toppings))
	}
	if m.Currency == "" {
		t.Errorf("menu has no currencyCode")
	}
	sizes := []string{"SIZE_SMALL", "SIZE_MEDIUM", "SIZE_LARGE"}
	for _, items := range [][]pizzaJSON{m.Pizzas, m.Toppings} {
		for _, it := range items {
			var got []string
			for _, p := range it.Prices {
				if n, err := strconv.ParseInt(p.AmountMinor, 10, 64); err != nil || n <= 0 {
					t.Errorf("%s: price %s = %q, want a positive amount", it.ID, p.Size, p.AmountMinor)
				}
				got = append(got, p.Size)
			}
			slices.Sort(got)
			if want := slices.Sorted(slices.Values(sizes)); !slices.Equal(got, want) {
				t.Errorf("%s is priced in %v, want %v", it.ID, got, want)
			}
		}
	}
}

// checkGRPC wants the health service to answer SERVING and reflection to
// list service.
func checkGRPC(t *testing.T, addr, service string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	// A process just (re)started may not listen yet: wait for it, up to
	// ctx's deadline, instead of failing on the first refused dial.
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("%s: grpc.health.v1 Check = %v, %v; want SERVING", addr, h.GetStatus(), err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx, grpc.WaitForReady(true))
	if err != nil {
		t.Fatalf("%s: reflection: %v", addr, err)
	}
	err = stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"},
	})
	if err != nil {
		t.Fatalf("%s: reflection send: %v", addr, err)
	}
	res, err := stream.Recv()
	if err != nil {
		t.Fatalf("%s: reflection list services: %v", addr, err)
	}
	_ = stream.CloseSend()
	var names []string
	for _, s := range res.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !slices.Contains(names, service) {
		t.Errorf("%s: reflection lists %v, want %s among them", addr, names, service)
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, req *http.Request) response {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	return response{resp.StatusCode, resp.Header, body}
}

func mustGet(t *testing.T, url string, want int) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	resp := do(t, req)
	if resp.status != want {
		t.Errorf("GET %s = %d %.200s, want %d", url, resp.status, resp.body, want)
	}
	return resp.body
}
