package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// trackedRun plays a small lifecycle run through a tracker, as the streams
// and the answers would report it: four orders, one failing request, one
// order the display never shows and one shown twice.
func trackedRun(t *testing.T) *loader {
	t.Helper()
	tr := newTracker(true, true)
	var tickets, waiting []string
	tr.onTicket = func(id string) { tickets = append(tickets, id) }
	tr.onWaiting = func(id string, _ bool) { waiting = append(waiting, id) }
	idx := tr.begin("lifecycle", 10, 0)
	due := time.Now().Add(-50 * time.Millisecond)
	for i, id := range []string{"a", "b", "c", "d", ""} {
		tr.sent(idx, due, due, i == 4)
		if id == "" {
			tr.answered(idx, due, false, placed{status: 503, err: errors.New("status 503")})
			continue
		}
		if id == "b" {
			// The display shows b before its POST is answered.
			tr.ticket("b", "TICKET_STATUS_QUEUED", false)
		}
		tr.answered(idx, due, i%2 == 0, placed{id: id, status: 200})
	}
	tr.ticket("a", "TICKET_STATUS_QUEUED", false)
	tr.ticket("a", "TICKET_STATUS_QUEUED", true) // a snapshot after a reconnect: not a duplicate
	tr.ticket("c", "TICKET_STATUS_QUEUED", false)
	tr.ticket("c", "TICKET_STATUS_QUEUED", false)  // shown twice: a duplicate
	tr.ticket("zz", "TICKET_STATUS_QUEUED", false) // not ours
	for _, id := range []string{"a", "b", "c"} {
		tr.ticket(id, "TICKET_STATUS_READY", false)
		tr.delivery(id, "DELIVERY_STATUS_WAITING", false)
		tr.call(id, "kitchen start", 5*time.Millisecond, 200)
	}
	tr.completed("a")
	tr.completed("b")
	if got, want := strings.Join(tickets, ","), "b,a,c"; got != want {
		t.Errorf("staff asked to start tickets %s, want %s (each of ours once, b as soon as it was accepted)", got, want)
	}
	if got, want := strings.Join(waiting, ","), "a,b,c"; got != want {
		t.Errorf("staff asked to hand over %s, want %s", got, want)
	}
	if got := tr.backlog(idx); got != 2 {
		t.Errorf("backlog = %d, want 2 (c not completed, d never shown)", got)
	}
	l := &loader{o: options{url: "http://127.0.0.1:8080", mode: modeLifecycle, display: true}, t: tr}
	tr.phases[idx].sending = time.Second
	tr.phases[idx].cpu = cpuReport([]cpuSource{{name: "order", addr: "127.0.0.1:9192"}}, cpuSnapshot{"order": {cpu: 1}}, cpuSnapshot{"order": {cpu: 1.2}}, 4)
	return l
}

func TestReportAddsUp(t *testing.T) {
	rep := trackedRun(t).report()
	if len(rep.Phases) != 1 {
		t.Fatalf("%d phases, want 1", len(rep.Phases))
	}
	p := rep.Phases[0]
	checks := []struct {
		name      string
		got, want int
	}{
		{"sent", p.Sent, 5},
		{"accepted", p.Accepted, 4},
		{"errors", p.Errors, 1},
		{"late", p.Late, 1},
		{"lost", p.Lost, 1},             // d
		{"duplicated", p.Duplicated, 1}, // c
		{"incomplete", p.Incomplete, 1}, // c
		{"order to display", p.OrderToDisplay.Count, 3},
		{"order to complete", p.OrderToComplete.Count, 2},
		{"statuses 200", p.Statuses["200"], 4},
		{"statuses 503", p.Statuses["503"], 1},
		{"report lost", rep.Lost, 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if p.Sent != p.Accepted+p.Errors {
		t.Errorf("sent %d != accepted %d + errors %d", p.Sent, p.Accepted, p.Errors)
	}
	if p.OrderToDisplay.P50ms < 50 {
		t.Errorf("order to display p50 = %gms, want at least the 50ms since the due time", p.OrderToDisplay.P50ms)
	}
	if rep.failed() == "" {
		t.Error("failed() is empty for a run that lost an order")
	}
	sum := 0
	for _, s := range p.Timeline {
		sum += s.Sent
	}
	if sum != p.Sent {
		t.Errorf("timeline sends add up to %d, want %d", sum, p.Sent)
	}
}

func TestReportJSON(t *testing.T) {
	rep := trackedRun(t).report()
	var buf bytes.Buffer
	if err := rep.writeJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatalf("the JSON report does not decode: %v", err)
	}
	p := back.Phases[0]
	if p.Sent != 5 || p.Accepted != 4 || p.CPU == nil || p.CPU.TotalMsPerOrder != 50 || len(p.Timeline) == 0 {
		t.Errorf("decoded phase = sent %d accepted %d cpu %+v timeline %d; want 5, 4, 50 ms/order, a timeline",
			p.Sent, p.Accepted, p.CPU, len(p.Timeline))
	}
	for _, key := range []string{`"order_to_display"`, `"cpu_ms_per_order"`, `"backlog_at_end"`, `"p99_ms"`, `"late"`, `"duplicated"`} {
		if !strings.Contains(buf.String(), key) {
			t.Errorf("the JSON report has no %s", key)
		}
	}
}

func TestReportHTML(t *testing.T) {
	rep := trackedRun(t).report()
	rep.Ramp = &RampResult{TargetP99ms: 50, MaxRate: 10, Steps: []RampStep{{Rate: 10, Pass: true, P99ms: 12}, {Rate: 20, Reason: "p99 <b>", P99ms: 80}}}
	var buf bytes.Buffer
	if err := rep.writeHTML(&buf); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if n := strings.Count(page, "<svg"); n != 4 {
		t.Errorf("%d charts, want 4 (throughput, latency, backlog, CPU)", n)
	}
	if strings.Count(page, "<svg") != strings.Count(page, "</svg>") {
		t.Error("unbalanced <svg> tags")
	}
	// Self-contained: nothing is fetched.
	if m := regexp.MustCompile(`(?i)(src=|href=|@import|url\()`).FindString(page); m != "" {
		t.Errorf("the page refers to something outside it: %q", m)
	}
	if strings.Contains(page, "p99 <b>") || !strings.Contains(page, "p99 &lt;b&gt;") {
		t.Error("text from the report is not escaped")
	}
	for _, want := range []string{"whole stack", "order to display", "Highest rate"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page does not show %q", want)
		}
	}
	// The polylines hold numbers only.
	for _, pts := range regexp.MustCompile(`points="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		if strings.Contains(pts[1], "NaN") || strings.Contains(pts[1], "Inf") {
			t.Errorf("a chart has points %q", pts[1])
		}
	}
}

func TestWriteFiles(t *testing.T) {
	rep := trackedRun(t).report()
	prefix := filepath.Join(t.TempDir(), "r")
	if err := rep.writeFiles(prefix); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{".json", ".html"} {
		if fi, err := os.Stat(prefix + ext); err != nil || fi.Size() == 0 {
			t.Errorf("%s%s: %v", prefix, ext, err)
		}
	}
	if err := rep.writeFiles(filepath.Join(t.TempDir(), "no", "such", "dir")); err == nil {
		t.Error("writeFiles into a missing directory: no error")
	}
	rep.print(io.Discard)
}

func TestLineChart(t *testing.T) {
	// A run too short for one second still draws.
	svg := lineChart("t", "ms", 0, []series{{"p99", nil}}, nil, 50)
	if !strings.HasPrefix(svg, "<svg") || strings.Contains(svg, "NaN") {
		t.Errorf("lineChart of nothing = %.80q...", svg)
	}
	// Seconds without an answer break the line instead of dropping to 0.
	nan := math.NaN()
	svg = lineChart("t", "ms", 6, []series{{"p99", []float64{1, 2, nan, 4, nan, 6}}}, nil, 0)
	if strings.Contains(svg, "NaN") || strings.Count(svg, "<polyline") != 1 || strings.Count(svg, "<circle") != 2 {
		t.Errorf("lineChart with gaps: %d lines, %d dots, NaN %v; want 1 line (1,2), dots at 4 and 6, no NaN",
			strings.Count(svg, "<polyline"), strings.Count(svg, "<circle"), strings.Contains(svg, "NaN"))
	}
}

func TestNiceStep(t *testing.T) {
	for _, tt := range []struct{ in, want float64 }{
		{0, 1}, {0.3, 0.5}, {1, 1}, {1.2, 2}, {2.2, 2.5}, {3, 5}, {7, 10}, {525, 1000}, {2000, 2000}, {2001, 2500},
	} {
		if got := niceStep(tt.in); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("niceStep(%g) = %g, want %g", tt.in, got, tt.want)
		}
	}
}

// A ticket first seen past QUEUED (the display reconnected meanwhile)
// reached the kitchen: it is late, not lost, and staff leave it alone.
func TestTicketFirstSeenReady(t *testing.T) {
	tr := newTracker(true, true)
	started := 0
	tr.onTicket = func(string) { started++ }
	idx := tr.begin("lifecycle", 1, 0)
	tr.answered(idx, time.Now(), false, placed{id: "e", status: 200})
	tr.ticket("e", "TICKET_STATUS_READY", true)
	l := &loader{o: options{mode: modeLifecycle, display: true}, t: tr}
	p := l.report().Phases[0]
	if p.Lost != 0 || p.OrderToDisplay.Count != 1 || p.OrderToReady.Count != 1 || started != 0 {
		t.Errorf("lost %d, displayed %d, ready %d, staff started %d; want 0, 1, 1, 0", p.Lost, p.OrderToDisplay.Count, p.OrderToReady.Count, started)
	}
}
