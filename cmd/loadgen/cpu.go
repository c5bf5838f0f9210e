package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cpuSource is one process whose CPU time a run counts: from the
// process_cpu_seconds_total of its /metrics (addr), or from /proc/PID/stat
// (pid) for a process that serves no metrics.
type cpuSource struct {
	name string
	addr string // host:port serving /metrics
	pid  int
}

func (s cpuSource) String() string {
	if s.addr != "" {
		return "http://" + s.addr + "/metrics"
	}
	return fmt.Sprintf("/proc/%d/stat", s.pid)
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// cpuReading is what a source says at one moment: the CPU seconds (user +
// system) its process has used, and when that process started (0 when
// unknown), which tells a process started again, its counter from 0,
// from the one read before.
type cpuReading struct {
	cpu   float64
	start float64 // seconds since the epoch (metrics) or clock ticks since boot (/proc)
	rss   float64 // resident memory in bytes; 0 when unknown
}

// read returns the CPU the process has used, and its start.
func (s cpuSource) read(ctx context.Context, client *http.Client) (cpuReading, error) {
	if s.addr == "" {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
		if err != nil {
			return cpuReading{}, fmt.Errorf("%s: %w", s.name, err)
		}
		v, err := parseProcStat(string(b))
		if err != nil {
			return cpuReading{}, fmt.Errorf("%s: /proc/%d/stat: %w", s.name, s.pid, err)
		}
		return v, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.addr+"/metrics", nil)
	if err != nil {
		return cpuReading{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return cpuReading{}, fmt.Errorf("%s: %w", s.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return cpuReading{}, fmt.Errorf("%s: GET %s: %s", s.name, s, resp.Status)
	}
	v, err := parseCPUSeconds(resp.Body)
	if err != nil {
		return cpuReading{}, fmt.Errorf("%s: %s: %w", s.name, s, err)
	}
	return v, nil
}

var errNoCPUMetric = errors.New("no process_cpu_seconds_total")

// parseCPUSeconds finds process_cpu_seconds_total, and
// process_start_time_seconds and process_resident_memory_bytes when they
// are there, in a Prometheus text exposition.
func parseCPUSeconds(r io.Reader) (cpuReading, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var out cpuReading
	found := false
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || (name != "process_cpu_seconds_total" && name != "process_start_time_seconds" && name != "process_resident_memory_bytes") {
			continue
		}
		fields := strings.Fields(value)
		if len(fields) == 0 {
			return cpuReading{}, fmt.Errorf("%s: no value", name)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return cpuReading{}, fmt.Errorf("%s: %q is not a number", name, fields[0])
		}
		switch name {
		case "process_start_time_seconds":
			out.start = v
		case "process_resident_memory_bytes":
			out.rss = v
		default:
			out.cpu, found = v, true
		}
	}
	if err := sc.Err(); err != nil {
		return cpuReading{}, err
	}
	if !found {
		return cpuReading{}, errNoCPUMetric
	}
	return out, nil
}

// parseProcStat returns utime + stime in seconds, starttime and the
// resident set from the contents of /proc/PID/stat. The command name
// (field 2) may hold spaces and parentheses, so fields are counted from its
// last ')'.
func parseProcStat(stat string) (cpuReading, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return cpuReading{}, errors.New("no command name")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15,
	// starttime field 22, rss (in pages) field 24.
	if len(f) < 22 {
		return cpuReading{}, fmt.Errorf("%d fields, want at least 24", len(f)+2)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	start, err3 := strconv.ParseUint(f[19], 10, 64)
	rss, err4 := strconv.ParseUint(f[21], 10, 64)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return cpuReading{}, err
	}
	return cpuReading{cpu: float64(ut+st) / clockTicks, start: float64(start), rss: float64(rss) * float64(os.Getpagesize())}, nil
}

// cpuSnapshot is the reading of every source at one moment; a source that
// could not be read is missing.
type cpuSnapshot map[string]cpuReading

// readAll reads every source at once.
func readAll(ctx context.Context, client *http.Client, sources []cpuSource) (cpuSnapshot, []error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var (
		mu   sync.Mutex
		snap = cpuSnapshot{}
		errs []error
		wg   sync.WaitGroup
	)
	for _, s := range sources {
		wg.Go(func() {
			v, err := s.read(ctx, client)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			snap[s.name] = v
		})
	}
	wg.Wait()
	return snap, errs
}

// CPUReport is the CPU the stack spent on a run: per process and in all,
// and per order (accepted orders, the drain included).
type CPUReport struct {
	Orders          int       `json:"orders"`
	Processes       []ProcCPU `json:"processes"`
	TotalSeconds    float64   `json:"total_cpu_s"`
	TotalMsPerOrder float64   `json:"total_cpu_ms_per_order"`
	// RSSBeforeMB and RSSAfterMB are the resident memory of the counted
	// processes together, before the phase and after its drain (MiB).
	RSSBeforeMB float64 `json:"rss_before_mb,omitempty"`
	RSSAfterMB  float64 `json:"rss_after_mb,omitempty"`
	// Missing names the processes that could not be read before and after.
	Missing []string `json:"missing,omitempty"`
	// Restarted names the processes started again during the run: their
	// counters began again from 0, so their CPU is not counted.
	Restarted []string `json:"restarted,omitempty"`
}

// ProcCPU is one process's share.
type ProcCPU struct {
	Name       string  `json:"name"`
	Source     string  `json:"source"`
	Seconds    float64 `json:"cpu_s"`
	MsPerOrder float64 `json:"cpu_ms_per_order"`
	// RSSBeforeMB and RSSAfterMB are its resident memory before the phase
	// and after its drain (MiB), when the source reports it.
	RSSBeforeMB float64 `json:"rss_before_mb,omitempty"`
	RSSAfterMB  float64 `json:"rss_after_mb,omitempty"`
}

// cpuReport turns two snapshots into a report for orders orders.
func cpuReport(sources []cpuSource, before, after cpuSnapshot, orders int) *CPUReport {
	r := &CPUReport{Orders: orders, Processes: []ProcCPU{}}
	for _, s := range sources {
		b, ok1 := before[s.name]
		a, ok2 := after[s.name]
		if !ok1 || !ok2 {
			r.Missing = append(r.Missing, s.name)
			continue
		}
		if a.start != b.start || a.cpu < b.cpu {
			r.Restarted = append(r.Restarted, s.name)
			continue
		}
		p := ProcCPU{Name: s.name, Source: s.String(), Seconds: round6(a.cpu - b.cpu),
			RSSBeforeMB: round3(b.rss / (1 << 20)), RSSAfterMB: round3(a.rss / (1 << 20))}
		if orders > 0 {
			p.MsPerOrder = round3(p.Seconds * 1000 / float64(orders))
		}
		r.Processes = append(r.Processes, p)
		r.TotalSeconds += p.Seconds
		r.RSSBeforeMB += p.RSSBeforeMB
		r.RSSAfterMB += p.RSSAfterMB
	}
	sort.SliceStable(r.Processes, func(i, j int) bool { return r.Processes[i].Seconds > r.Processes[j].Seconds })
	r.TotalSeconds = round6(r.TotalSeconds)
	r.RSSBeforeMB, r.RSSAfterMB = round3(r.RSSBeforeMB), round3(r.RSSAfterMB)
	if orders > 0 {
		r.TotalMsPerOrder = round3(r.TotalSeconds * 1000 / float64(orders))
	}
	return r
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
func round6(v float64) float64 { return math.Round(v*1e6) / 1e6 }

// settleLimit bounds how long settle waits for the stack to go quiet.
const settleLimit = 30 * time.Second

// quietCPU is the whole stack's CPU, in seconds a second, under which it
// counts as idle: what the processes spend on timers, heartbeats and
// answering these reads.
const quietCPU = 0.05

// settle waits, after a phase's drain, until the stack's CPU stops moving:
// the work an order causes after the load generator last saw it (in
// placement, the kitchen's accept and the order's ACCEPTED write, seconds
// after a burst's last ticket reached the display) belongs to the phase.
// It returns the last snapshot read, to be the phase's "after" reading,
// once two reads in a row, every apart, have each added less than quietCPU a
// second, or when limit passes.
func settle(ctx context.Context, client *http.Client, sources []cpuSource, every, limit time.Duration) (cpuSnapshot, []error) {
	total := func(s cpuSnapshot) float64 {
		var t float64
		for _, r := range s {
			t += r.cpu
		}
		return t
	}
	prev, errs := readAll(ctx, client, sources)
	if len(sources) == 0 {
		return prev, errs // nothing to wait for
	}
	deadline := time.Now().Add(limit)
	quiet := 0
	for quiet < 2 && len(errs) == 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return prev, errs
		case <-time.After(every):
		}
		cur, cerrs := readAll(ctx, client, sources)
		if len(cerrs) > 0 || len(cur) != len(prev) {
			return cur, cerrs
		}
		if total(cur)-total(prev) < quietCPU*every.Seconds() {
			quiet++
		} else {
			quiet = 0
		}
		prev = cur
	}
	return prev, errs
}
