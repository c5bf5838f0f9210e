package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseCPUSeconds(t *testing.T) {
	expo := `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 12
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.37
process_cpu_seconds_total_other 99
# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1.76954712345e+09
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 2.6017792e+07
`
	got, err := parseCPUSeconds(strings.NewReader(expo))
	if err != nil || got.cpu != 12.37 || got.start != 1.76954712345e+09 || got.rss != 26017792 {
		t.Errorf("parseCPUSeconds = %+v, %v; want 12.37 s since a start at 1.76954712345e+09, 26017792 bytes resident", got, err)
	}
	if _, err := parseCPUSeconds(strings.NewReader("go_goroutines 3\n")); !errors.Is(err, errNoCPUMetric) {
		t.Errorf("parseCPUSeconds without the metric: err = %v, want errNoCPUMetric", err)
	}
	if _, err := parseCPUSeconds(strings.NewReader("process_cpu_seconds_total x\n")); err == nil {
		t.Error("parseCPUSeconds of a value that is no number: no error")
	}
	// A line with no value is an error, not a panic.
	if _, err := parseCPUSeconds(strings.NewReader("process_cpu_seconds_total \n")); err == nil {
		t.Error("parseCPUSeconds of a line without a value: no error")
	}
}

func TestParseProcStat(t *testing.T) {
	// A command name holding spaces and a ')' must not shift the fields.
	stat := "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 130 0 0 20 0 9 0 100 200000 300 18446744073709551615"
	got, err := parseProcStat(stat)
	if want := float64(300 * os.Getpagesize()); err != nil || got.cpu != 3.8 || got.start != 100 || got.rss != want {
		t.Errorf("parseProcStat = %+v, %v; want 3.8 s (250+130 ticks) since a start at tick 100, %g bytes resident (300 pages)", got, err, want)
	}
	if _, err := parseProcStat("4242 (x) S 1 2"); err == nil {
		t.Error("parseProcStat of a short line: no error")
	}
	// Our own process reads.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", os.Getpid()))
	if err != nil {
		t.Skip("no /proc here")
	}
	if v, err := parseProcStat(string(b)); err != nil || v.cpu < 0 || v.start <= 0 || v.rss < 1<<20 {
		t.Errorf("parseProcStat(own stat) = %+v, %v", v, err)
	}
}

func TestCPUReport(t *testing.T) {
	sources := []cpuSource{{name: "launcher", addr: "127.0.0.1:9190"}, {name: "order", addr: "127.0.0.1:9192"}, {name: "store", pid: 7}}
	before := cpuSnapshot{"launcher": {cpu: 10, rss: 100 << 20}, "order": {cpu: 2, rss: 20 << 20}}
	after := cpuSnapshot{"launcher": {cpu: 12, rss: 150 << 20}, "order": {cpu: 2.5, rss: 30 << 20}, "store": {cpu: 1, rss: 1 << 30}}
	r := cpuReport(sources, before, after, 500)
	if r.RSSBeforeMB != 120 || r.RSSAfterMB != 180 {
		t.Errorf("resident memory %g -> %g MiB; want 120 -> 180 (the store, not read before, left out)", r.RSSBeforeMB, r.RSSAfterMB)
	}
	if p := r.Processes[0]; p.RSSBeforeMB != 100 || p.RSSAfterMB != 150 {
		t.Errorf("%s resident memory %g -> %g MiB; want 100 -> 150", p.Name, p.RSSBeforeMB, p.RSSAfterMB)
	}
	if r.TotalSeconds != 2.5 || r.TotalMsPerOrder != 5 {
		t.Errorf("total = %g s, %g ms/order; want 2.5 s, 5 ms/order", r.TotalSeconds, r.TotalMsPerOrder)
	}
	if len(r.Processes) != 2 || r.Processes[0].Name != "launcher" || r.Processes[0].MsPerOrder != 4 || r.Processes[1].MsPerOrder != 1 {
		t.Errorf("processes = %+v, want launcher 4 ms/order then order 1 ms/order", r.Processes)
	}
	if len(r.Missing) != 1 || r.Missing[0] != "store" {
		t.Errorf("missing = %v, want [store] (not read before)", r.Missing)
	}
	sum := 0.0
	for _, p := range r.Processes {
		sum += p.MsPerOrder
	}
	if sum != r.TotalMsPerOrder {
		t.Errorf("processes add up to %g ms/order, total says %g", sum, r.TotalMsPerOrder)
	}
}

// A process started again during the run (killed under load, restarted by
// the launcher) has a counter that began again from 0: the difference is
// not what it spent, and must not be counted as if it were.
func TestCPUReportRestarted(t *testing.T) {
	sources := []cpuSource{{name: "launcher", addr: "127.0.0.1:9190"}, {name: "order", addr: "127.0.0.1:9192"}, {name: "kitchen", addr: "127.0.0.1:9193"}}
	before := cpuSnapshot{"launcher": {cpu: 10, start: 1000}, "order": {cpu: 40, start: 1000}, "kitchen": {cpu: 5, start: 1000}}
	// The order service restarted and spent 3 s; the kitchen restarted and
	// has already spent more than the first one had.
	after := cpuSnapshot{"launcher": {cpu: 12, start: 1000}, "order": {cpu: 3, start: 1030}, "kitchen": {cpu: 9, start: 1030}}
	r := cpuReport(sources, before, after, 1000)
	if len(r.Processes) != 1 || r.Processes[0].Name != "launcher" || r.TotalSeconds != 2 {
		t.Errorf("processes %+v, total %g s; want the launcher alone, 2 s", r.Processes, r.TotalSeconds)
	}
	if strings.Join(r.Restarted, ",") != "order,kitchen" {
		t.Errorf("restarted = %v, want [order kitchen]", r.Restarted)
	}
	for _, p := range r.Processes {
		if p.Seconds < 0 {
			t.Errorf("%s spent %g s", p.Name, p.Seconds)
		}
	}
}

func TestCPUSources(t *testing.T) {
	got, err := cpuSources("", "", 19090, 1, "127.0.0.1:18080")
	if err != nil {
		t.Fatal(err)
	}
	want := "launcher=http://127.0.0.1:19190/metrics menu=http://127.0.0.1:19191/metrics order=http://127.0.0.1:19192/metrics " +
		"kitchen=http://127.0.0.1:19193/metrics delivery=http://127.0.0.1:19194/metrics gateway=http://127.0.0.1:18080/metrics"
	if s := sourcesString(got); s != want {
		t.Errorf("sources of base 19090 =\n%s\nwant\n%s", s, want)
	}
	got, err = cpuSources("gateway=127.0.0.1:1234,order=127.0.0.1:99", "store=42", 9090, 1, "ignored:1")
	if err != nil {
		t.Fatal(err)
	}
	if s, want := sourcesString(got), "gateway=http://127.0.0.1:1234/metrics order=http://127.0.0.1:99/metrics store=/proc/42/stat"; s != want {
		t.Errorf("sources from flags = %s, want %s", s, want)
	}
	for _, bad := range [][2]string{{"gateway", ""}, {"gateway=nohost", ""}, {"a=1.2.3.4:5,a=1.2.3.4:6", ""}, {"", "x=notapid"}, {"", "launcher=5"}} {
		if _, err := cpuSources(bad[0], bad[1], 9090, 1, "127.0.0.1:8080"); err == nil {
			t.Errorf("cpuSources(-metrics %q, -pid %q): no error", bad[0], bad[1])
		}
	}
}

func sourcesString(ss []cpuSource) string {
	var parts []string
	for _, s := range ss {
		parts = append(parts, s.name+"="+s.String())
	}
	return strings.Join(parts, " ")
}

// TestSettleWaitsForTheStack: work the stack still does after the drain
// (an order's last writes) lands in the phase's "after" reading, which is
// taken once the CPU stops moving.
func TestSettleWaitsForTheStack(t *testing.T) {
	var reads atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := min(reads.Add(1), 5) // busy for the first five reads, then idle
		fmt.Fprintf(w, "process_cpu_seconds_total %g\nprocess_start_time_seconds 1.7e9\n", 10+0.25*float64(n))
	}))
	defer srv.Close()
	sources := []cpuSource{{name: "launcher", addr: strings.TrimPrefix(srv.URL, "http://")}}
	after, errs := settle(context.Background(), srv.Client(), sources, 10*time.Millisecond, 5*time.Second)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if got, want := after["launcher"].cpu, 10+0.25*5; got != want {
		t.Errorf("after reading %g CPU seconds, want %g: the work after the drain is missed", got, want)
	}
	if n := reads.Load(); n < 7 {
		t.Errorf("%d reads, want at least 7 (five busy, then two quiet)", n)
	}

	// A stack that never goes quiet is read when the limit passes.
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "process_cpu_seconds_total %g\n", float64(reads.Add(1)))
	}))
	defer busy.Close()
	begin := time.Now()
	_, errs = settle(context.Background(), busy.Client(), []cpuSource{{name: "x", addr: strings.TrimPrefix(busy.URL, "http://")}}, 10*time.Millisecond, 200*time.Millisecond)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("settle on a stack that never goes quiet took %s, want the 200ms limit", d)
	}
}
