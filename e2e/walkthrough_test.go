package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/e2e/stack"
)

// localShop is the shop as `make run` starts it: `pizzashop run` with every
// port moved through the PIZZASHOP_* variables a developer would use.
type localShop struct {
	root string            // the repository
	bin  string            // pizzashop and the service binaries
	env  []string          // PIZZASHOP_* of this shop, for commands that talk to it
	http string            // the gateway's address
	base int               // PIZZASHOP_BASE_PORT
	out  *lockedBuffer     // the launcher's terminal
	cmd  *exec.Cmd         // the launcher
	done chan struct{}     // closed when the launcher has exited
	logs map[string]string // process name -> log file
}

// TestWalkthrough runs the README's walk-through as a script against the
// local stack, then checks on the same stack that every metric the Grafana
// dashboards query exists, and that no client can add metric series.
func TestWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole local stack")
	}
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the walk-through needs %s (.ci/run installs it): %v", tool, err)
		}
	}
	shop := startLocalShop(t)

	t.Run("script is the README block", func(t *testing.T) {
		checkScriptIsREADME(t, shop.root)
	})
	t.Run("walkthrough", func(t *testing.T) {
		out := runWalkthrough(t, shop)
		for _, want := range []string{"304", "DELIVERY_STATUS_DELIVERED", "ORDER_STATUS_DELIVERED",
			"DELIVERY_STATUS_PICKED_UP", "ORDER_STATUS_PICKED_UP", "ORDER_STATUS_CANCELLED", `"available":false`} {
			if !strings.Contains(out, want) {
				t.Errorf("walk-through output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("a second run says it needs a fresh shop", func(t *testing.T) {
		// Alice is registered now, so the script stops at her registration;
		// it must say why instead of ending without a word.
		out, err := walkthrough(t, shop)
		if err == nil {
			t.Fatalf("a second walk-through on the same shop succeeded; want it to stop at the registration:\n%s", out)
		}
		if !strings.Contains(out, "needs a fresh shop") || !strings.Contains(out, "make clean-data") {
			t.Errorf("a second walk-through failed without saying it needs a fresh shop (%v):\n%s", err, out)
		}
	})
	t.Run("dashboard metrics exist", func(t *testing.T) {
		checkDashboardMetrics(t, shop)
	})
	t.Run("host headers add no series", func(t *testing.T) {
		checkHostHeadersBounded(t, shop)
	})
}

// startLocalShop builds pizzashop next to the services and runs `pizzashop
// run` on free ports, with its data in a temporary directory.
func startLocalShop(t *testing.T) *localShop {
	t.Helper()
	root := repoRoot(t)
	bin := stack.Binaries(t)
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "pizzashop"), "./cmd/pizzashop")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/pizzashop: %v\n%s", err, out)
	}

	data := t.TempDir()
	base := freeBasePort(t)
	// The other addresses must not fall among the base's ports, which are
	// free now but taken once the shop starts.
	outside := func() string {
		for {
			addr := stack.FreeAddr(t)
			_, p, _ := net.SplitHostPort(addr)
			if n, _ := strconv.Atoi(p); n < base || n > base+104 {
				return addr
			}
		}
	}
	s := &localShop{root: root, bin: bin, base: base, http: outside(),
		out: &lockedBuffer{}, done: make(chan struct{}), logs: map[string]string{}}
	s.env = []string{
		"PIZZASHOP_BASE_PORT=" + strconv.Itoa(s.base),
		"PIZZASHOP_HTTP_ADDR=" + s.http,
		"PIZZASHOP_NATS_ADDR=" + outside(),
		"PIZZASHOP_MONGO_ADDR=" + outside(),
		"PIZZASHOP_DATA=" + data,
	}
	for _, name := range stack.Services {
		s.logs[name] = filepath.Join(data, "logs", name+".log")
	}
	s.cmd = exec.Command(filepath.Join(bin, "pizzashop"), "run")
	s.cmd.Env = append(cleanEnv(), s.env...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("pizzashop run said:\n%s", s.out.String())
		}
	})

	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get("http://" + s.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-s.done:
			t.Fatalf("pizzashop run exited before it was ready:\n%s", s.out.String())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("pizzashop run not ready after 2 minutes:\n%s", s.out.String())
		}
	}
}

// cleanEnv is the test's environment without the variables that would
// point the local stack elsewhere: it runs its own NATS and store, with the
// development key, as `make run` on a fresh machine does.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PIZZASHOP_") || slices.Contains([]string{"NATS_URL", "MONGO_URI", "AUTH_SECRET", "OTEL_EXPORTER_OTLP_ENDPOINT"}, k) {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// freeBasePort finds a PIZZASHOP_BASE_PORT whose ten ports (gRPC base+1..4,
// metrics base+100..104) are all free.
func freeBasePort(t *testing.T) int {
	t.Helper()
	for range 200 {
		base := 20000 + rand.IntN(11000)
		ok := true
		for _, off := range []int{1, 2, 3, 4, 100, 101, 102, 103, 104} {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(base+off)))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free base port")
	return 0
}

func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOWORK").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("go env GOWORK = %q, %v: the test runs inside the workspace", out, err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

const (
	scriptPath  = "scripts/walkthrough.sh"
	readmeMark  = "<!-- walkthrough: " + scriptPath + " -->"
	scriptBegin = "# --- README walk-through begins\n"
	scriptEnd   = "# --- README walk-through ends\n"
)

// walkthroughBlock returns the code block that follows the marker in the
// README, and the part of the script between its markers.
func walkthroughBlock(t *testing.T, root string) (readme, script string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(raw), readmeMark+"\n```sh\n")
	if !ok {
		t.Fatalf("README.md has no %q followed by a ```sh block", readmeMark)
	}
	readme, _, ok = strings.Cut(after, "```\n")
	if !ok {
		t.Fatal("README.md: the walk-through block does not end")
	}
	raw, err = os.ReadFile(filepath.Join(root, scriptPath))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok = strings.Cut(string(raw), scriptBegin)
	if !ok {
		t.Fatalf("%s has no line %q", scriptPath, strings.TrimSpace(scriptBegin))
	}
	script, _, ok = strings.Cut(after, scriptEnd)
	if !ok {
		t.Fatalf("%s has no line %q", scriptPath, strings.TrimSpace(scriptEnd))
	}
	return readme, script
}

func checkScriptIsREADME(t *testing.T, root string) {
	readme, script := walkthroughBlock(t, root)
	if readme == script {
		return
	}
	rl, sl := strings.Split(readme, "\n"), strings.Split(script, "\n")
	for i := range max(len(rl), len(sl)) {
		var r, s string
		if i < len(rl) {
			r = rl[i]
		}
		if i < len(sl) {
			s = sl[i]
		}
		if r != s {
			t.Fatalf("README walk-through and %s differ first at line %d:\n  README: %q\n  script: %q", scriptPath, i+1, r, s)
		}
	}
}

// runWalkthrough runs the script as a reader would, from a directory whose
// bin/ holds the built binaries, with the shop's PIZZASHOP_* variables.
func runWalkthrough(t *testing.T, s *localShop) string {
	t.Helper()
	out, err := walkthrough(t, s)
	if err != nil {
		t.Fatalf("walk-through failed: %v\n%s", err, out)
	}
	return out
}

// walkthrough runs the script once and returns what it printed and how it
// ended; a run still going after 2 minutes fails the test.
func walkthrough(t *testing.T, s *localShop) (string, error) {
	t.Helper()
	work := t.TempDir()
	if err := os.Symlink(s.bin, filepath.Join(work, "bin")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(s.root, scriptPath))
	cmd.Dir = work
	cmd.Env = append(cleanEnv(), s.env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	begin := time.Now()
	err := cmd.Run()
	t.Logf("walk-through ran in %s", time.Since(begin).Round(time.Millisecond))
	if ctx.Err() != nil {
		t.Fatalf("walk-through still running after 2 minutes (a wait that never ended):\n%s", out.String())
	}
	return out.String(), err
}

// metricsURLs are every /metrics of the local stack: the gateway's, the
// launcher's (NATS and FerretDB run in it) and each service's.
func (s *localShop) metricsURLs() map[string]string {
	urls := map[string]string{
		"gateway":  "http://" + s.http + "/metrics",
		"launcher": fmt.Sprintf("http://127.0.0.1:%d/metrics", s.base+100),
	}
	for i, name := range []string{"menu", "order", "kitchen", "delivery"} {
		urls[name] = fmt.Sprintf("http://127.0.0.1:%d/metrics", s.base+101+i)
	}
	return urls
}

// scrapeSeries returns the series lines of a Prometheus endpoint and its
// size in bytes.
func scrapeSeries(t *testing.T, url string) ([]string, int) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d, %v", url, resp.StatusCode, err)
	}
	var series []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			series = append(series, l)
		}
	}
	return series, len(body)
}

// seriesName is the metric name of a series line.
func seriesName(line string) string {
	if i := strings.IndexAny(line, "{ "); i >= 0 {
		return line[:i]
	}
	return line
}

func checkDashboardMetrics(t *testing.T, s *localShop) {
	exposed := map[string]bool{}
	for name, url := range s.metricsURLs() {
		series, size := scrapeSeries(t, url)
		t.Logf("%-8s /metrics: %d series, %d bytes", name, len(series), size)
		for _, l := range series {
			exposed[seriesName(l)] = true
		}
	}
	dir := filepath.Join(s.root, "deploy", "compose", "grafana", "dashboards")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		t.Fatalf("no dashboards in %s", dir)
	}
	queried := 0
	for _, f := range files {
		exprs := dashboardExprs(t, f)
		if len(exprs) == 0 {
			t.Errorf("%s: no queries", filepath.Base(f))
		}
		for _, e := range exprs {
			names := promqlMetrics(e)
			if len(names) == 0 {
				t.Errorf("%s: found no metric in %q", filepath.Base(f), e)
			}
			for _, m := range names {
				queried++
				if !exposed[m] {
					t.Errorf("%s queries %s, which no process of the local stack exposes (in %q)", filepath.Base(f), m, e)
				}
			}
		}
	}
	t.Logf("%d dashboard file(s), %d metric references, all exposed", len(files), queried)
}

// dashboardExprs returns every PromQL expression of a Grafana dashboard,
// in panels and in panels nested in rows.
func dashboardExprs(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var d struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var exprs []string
	var walk func([]json.RawMessage)
	walk = func(ps []json.RawMessage) {
		for _, r := range ps {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatalf("%s: panel: %v", path, err)
			}
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					t.Errorf("%s: panel %q has a target without expr", filepath.Base(path), p.Title)
				}
				exprs = append(exprs, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return exprs
}

var (
	promStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers  = regexp.MustCompile(`\{[^}]*\}`)
	promRanges    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promFollowsBy = regexp.MustCompile(`^\s*\(`)
	promKeywords  = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}
)

// promqlMetrics returns the metric names a PromQL expression selects:
// identifiers that are not functions, keywords, label names in matchers or
// grouping clauses, or Grafana variables.
func promqlMetrics(expr string) []string {
	e := promStrings.ReplaceAllString(expr, `""`)
	e = promMatchers.ReplaceAllString(e, " ")
	e = promRanges.ReplaceAllString(e, " ")
	e = promGrouping.ReplaceAllString(e, " ")
	var names []string
	for _, loc := range promIdent.FindAllStringIndex(e, -1) {
		id := e[loc[0]:loc[1]]
		if promKeywords[strings.ToLower(id)] || promFollowsBy.MatchString(e[loc[1]:]) {
			continue // a keyword, or a function call
		}
		if loc[0] > 0 && (e[loc[0]-1] == '$' || (e[loc[0]-1] >= '0' && e[loc[0]-1] <= '9') || e[loc[0]-1] == '.') {
			continue // $__rate_interval, or part of a number like 0.95 or 1e3
		}
		if !slices.Contains(names, id) {
			names = append(names, id)
		}
	}
	sort.Strings(names)
	return names
}

func TestPromQLMetrics(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`sum by (service) (rate(rpc_server_call_duration_seconds_count{rpc_method!~"grpc[.]health.*"}[$__rate_interval]))`, []string{"rpc_server_call_duration_seconds_count"}},
		{`histogram_quantile(0.95, sum by (service, le) (rate(pizzashop_outbox_lag_seconds_bucket[5m])))`, []string{"pizzashop_outbox_lag_seconds_bucket"}},
		{`sum(pizzashop_kitchen_queue) / ignoring(x) sum(up{job="a"}) > bool 1e3`, []string{"pizzashop_kitchen_queue", "up"}},
		{`a_total offset 5m or b_total and on(service) c_total`, []string{"a_total", "b_total", "c_total"}},
	} {
		if got := promqlMetrics(tc.expr); !slices.Equal(got, tc.want) {
			t.Errorf("promqlMetrics(%q) = %v, want %v", tc.expr, got, tc.want)
		}
	}
}

// checkHostHeadersBounded sends 1,000 requests, each with a Host header no
// other request had, and finds the gateway's /metrics with as many series
// as before.
func checkHostHeadersBounded(t *testing.T, s *localShop) {
	url := "http://" + s.http + "/v1/menu"
	get := func(host string) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET /v1/menu with Host %s: %v", host, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /v1/menu with Host %s = %d, want 200", host, resp.StatusCode)
		}
	}
	get("localhost") // the series of this route and status exist from here on
	before, sizeBefore := scrapeSeries(t, "http://"+s.http+"/metrics")
	for i := range 1000 {
		get(fmt.Sprintf("client-%d.example:%d", i, 1024+i))
	}
	after, sizeAfter := scrapeSeries(t, "http://"+s.http+"/metrics")
	t.Logf("gateway /metrics: %d series (%d bytes) before 1,000 distinct Host headers, %d (%d bytes) after", len(before), sizeBefore, len(after), sizeAfter)
	if len(after) > len(before) {
		key := func(l string) string { return l[:max(strings.LastIndexByte(l, ' '), 0)] }
		had := map[string]bool{}
		for _, l := range before {
			had[key(l)] = true
		}
		var added []string
		for _, l := range after {
			if !had[key(l)] && len(added) < 5 {
				added = append(added, l)
			}
		}
		t.Errorf("gateway /metrics grew from %d to %d series after 1,000 distinct Host headers; new series include:\n  %s",
			len(before), len(after), strings.Join(added, "\n  "))
	}
	for _, l := range after {
		if strings.Contains(l, "client-") {
			t.Fatalf("a Host header became a label: %s", l)
		}
	}
}

// lockedBuffer is the launcher's terminal: written by its process, read
// by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
