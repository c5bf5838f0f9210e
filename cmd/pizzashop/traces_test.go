package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/auth"
	"github.com/pizzashop/pizzashop/pkg/devstack"
)

// The configuration the launcher gives Jaeger listens only on the addresses
// it was told, so two shops with moved ports never collide.
func TestJaegerConfig(t *testing.T) {
	c := shopConfig{basePort: 19090, tracesAddr: "127.0.0.1:17686"}
	conf := c.jaegerConfig("/data/traces/ui")
	for _, want := range []string{`endpoint: "127.0.0.1:17686"`, `endpoint: "127.0.0.1:19291"`, `endpoint: "127.0.0.1:19290"`,
		`assets_path: "/data/traces/ui"`, "level: none"} {
		if !strings.Contains(conf, want) {
			t.Errorf("jaeger config lacks %q:\n%s", want, conf)
		}
	}
	if got, want := c.traceEnv()["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://127.0.0.1:19290"; got != want {
		t.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT = %q, want %q", got, want)
	}
}

func TestRunRefusesMissingJaeger(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(t.Context(), []string{"run", "--jaeger", filepath.Join(t.TempDir(), "jaeger")}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "make run-traces") {
		t.Fatalf("run --jaeger <missing> = %v, want an error pointing at make run-traces", err)
	}
}

// jaegerBinary is PIZZASHOP_JAEGER or the one make builds into .bin.
func jaegerBinary(t *testing.T, root string) string {
	if p := os.Getenv("PIZZASHOP_JAEGER"); p != "" {
		return p
	}
	p := filepath.Join(root, ".bin", "jaeger")
	if !executable(p) {
		t.Skipf("no Jaeger at %s: make .bin/jaeger builds it (or set PIZZASHOP_JAEGER)", p)
	}
	return p
}

// TestTraces runs the shop with the trace viewer, places an order and finds
// its trace: one trace from the REST call through order and menu, the
// order.placed event into the kitchen and its answer back to order.
func TestTraces(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary and starts the whole shop")
	}
	root := workspaceRoot(t)
	jaeger := jaegerBinary(t, root)
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator),
		"./services/menu", "./services/order", "./services/kitchen", "./services/delivery", "./gateway", "./cmd/pizzashop")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ports := freePorts(t)
	for _, off := range []int{200, 201} {
		if err := canListen(net.JoinHostPort("127.0.0.1", strconv.Itoa(ports.base+off))); err != nil {
			t.Skipf("base+%d is taken: %v", off, err)
		}
	}
	traces := devstack.FreeAddr(t)
	shop := startLauncher(t, filepath.Join(bin, "pizzashop"), []string{"run", "--data", t.TempDir(),
		"--base-port", strconv.Itoa(ports.base), "--http", ports.http, "--nats-addr", ports.nats, "--mongo-addr", ports.mongo,
		"--jaeger", jaeger, "--traces", traces})
	shop.waitReady(t)
	if !strings.Contains(shop.output(), "Traces          http://"+traces+"/") {
		t.Errorf("the banner does not show the trace viewer at %s:\n%s", traces, shop.output())
	}

	// The viewer's page, also for a trace's own address.
	for _, path := range []string{"/", "/trace/0123456789abcdef0123456789abcdef"} {
		resp, err := http.Get("http://" + traces + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("<title>Pizzashop traces</title>")) {
			t.Fatalf("GET %s on the viewer = %d, not the trace page:\n%.300s", path, resp.StatusCode, body)
		}
	}

	signer, err := auth.NewSigner(auth.DevSecret)
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := signer.Sign(auth.Claims{Subject: "tracy", Role: auth.RoleCustomer}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+ports.http+"/v1/orders", strings.NewReader(
		`{"item":{"pizzaId":"margherita","size":"SIZE_SMALL"},"fulfillment":"FULFILLMENT_PICKUP","paymentMethod":"PAYMENT_METHOD_CASH"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Idempotency-Key", "traces-test-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/orders = %d %s", resp.StatusCode, body)
	}
	var order struct{ ID string }
	if err := json.Unmarshal(body, &order); err != nil || order.ID == "" {
		t.Fatalf("POST /v1/orders answered %s: %v", body, err)
	}

	// The trace fills in as the kitchen and order consume the events.
	want := []string{
		"gateway POST /v1/orders",
		"order pizzashop.order.v1.OrderService/CreateOrder",
		"menu pizzashop.menu.v1.MenuService/PriceOrder",
		// Event spans are named by the kind of event, not the order; the
		// newest POST /v1/orders trace is this order's.
		"order publish order.placed",
		"kitchen process order.placed",
		"kitchen publish kitchen.queued",
		"order process kitchen.queued",
	}
	var spans []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		spans = orderTraceSpans(t, traces)
		missing := slices.DeleteFunc(slices.Clone(want), func(w string) bool { return slices.Contains(spans, w) })
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the trace of order %s lacks %q; it has:\n  %s", order.ID, missing, strings.Join(spans, "\n  "))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// orderTraceSpans returns "service operation" of every span of the newest
// trace of POST /v1/orders, as Jaeger's API gives them to the viewer.
func orderTraceSpans(t *testing.T, traces string) []string {
	t.Helper()
	resp, err := http.Get("http://" + traces + "/api/traces?service=gateway&operation=" + "POST%20%2Fv1%2Forders&limit=1&lookback=1h")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Data []struct {
			Spans []struct {
				OperationName string `json:"operationName"`
				ProcessID     string `json:"processID"`
			} `json:"spans"`
			Processes map[string]struct {
				ServiceName string `json:"serviceName"`
			} `json:"processes"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("Jaeger /api/traces: %v", err)
	}
	var spans []string
	for _, tr := range body.Data {
		for _, s := range tr.Spans {
			spans = append(spans, tr.Processes[s.ProcessID].ServiceName+" "+s.OperationName)
		}
	}
	return spans
}

// The services keep their own names under one launcher, and with the trace
// viewer send their spans to it whatever the parent's environment says.
func TestChildEnvForTraces(t *testing.T) {
	c := shopConfig{basePort: 19090}
	parent := []string{"PATH=/bin", "OTEL_SERVICE_NAME=shop", "OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4317"}
	env := childEnv(parent, c.traceEnv())
	if slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "OTEL_SERVICE_NAME=") }) {
		t.Errorf("childEnv passes OTEL_SERVICE_NAME on to every service: %q", env)
	}
	// os/exec keeps the last of duplicate keys.
	last := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "OTEL_EXPORTER_OTLP_ENDPOINT="); ok {
			last = v
		}
	}
	if last != "http://127.0.0.1:19290" {
		t.Errorf("the services would export spans to %q, want the viewer at http://127.0.0.1:19290 (env %q)", last, env)
	}
}
