package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
)

// Report is everything a load run measured. Every figure of the text and
// HTML reports is in it.
type Report struct {
	Generated time.Time `json:"generated"`
	Target    string    `json:"target"`
	Mode      string    `json:"mode"`
	// Display is whether the kitchen display was followed; without it,
	// nothing after the answer to the POST is measured.
	Display           bool        `json:"display"`
	Phases            []Phase     `json:"phases"`
	Ramp              *RampResult `json:"ramp,omitempty"`
	Sent              int         `json:"sent"`
	Accepted          int         `json:"accepted"`
	Errors            int         `json:"errors"`
	Lost              int         `json:"lost"`
	Unseen            int         `json:"unseen"`
	Duplicated        int         `json:"duplicated"`
	Incomplete        int         `json:"incomplete"`
	DisplayReconnects int         `json:"display_reconnects"`
}

// Phase is one run, or one step of a ramp.
type Phase struct {
	Name    string  `json:"name"`
	Model   string  `json:"model"` // open or closed
	Rate    float64 `json:"rate,omitempty"`
	Clients int     `json:"clients,omitempty"`
	// Sent = Accepted + Errors; Late counts requests that started more
	// than -late after their due time (open model).
	Sent         int              `json:"sent"`
	Accepted     int              `json:"accepted"`
	Errors       int              `json:"errors"`
	Late         int              `json:"late"`
	Statuses     map[string]int   `json:"statuses"`
	SendingS     float64          `json:"sending_s"`
	DrainS       float64          `json:"drain_s"`
	AcceptedPerS float64          `json:"accepted_per_s"`
	Place        Stats            `json:"place"` // latency of POST /v1/orders from its due time
	Calls        map[string]Stats `json:"calls,omitempty"`
	// From the due time of an accepted order to its ticket on the kitchen
	// display, to READY there, and to delivered or picked up.
	OrderToDisplay  *Stats `json:"order_to_display,omitempty"`
	OrderToReady    *Stats `json:"order_to_ready,omitempty"`
	OrderToComplete *Stats `json:"order_to_complete,omitempty"`
	// BacklogAtEnd is the accepted orders not yet through when sending
	// stopped. Lost never reached the kitchen display; Incomplete reached
	// it but their lifecycle did not end (in lifecycle mode, Unseen
	// orders too: loadgen never worked them); Duplicated were shown or
	// answered twice.
	BacklogAtEnd int `json:"backlog_at_end"`
	Lost         int `json:"lost"`
	// Unseen never showed on the display, though the order service says
	// the kitchen took them: the display stream fell behind (it starts
	// over from a snapshot), not the shop.
	Unseen     int        `json:"unseen"`
	Incomplete int        `json:"incomplete"`
	Duplicated int        `json:"duplicated"`
	CPU        *CPUReport `json:"cpu,omitempty"`
	Timeline   []Second   `json:"timeline"`
}

// Second is one second of a phase.
type Second struct {
	T         int     `json:"t"`
	Sent      int     `json:"sent"`
	Accepted  int     `json:"accepted"`
	Errors    int     `json:"errors"`
	Late      int     `json:"late"`
	Displayed int     `json:"displayed"`
	Completed int     `json:"completed"`
	Backlog   int     `json:"backlog"`
	Inflight  int     `json:"inflight"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
}

// report builds the report of every phase; call it after the drains.
func (l *loader) report() *Report {
	t := l.t
	t.mu.Lock()
	defer t.mu.Unlock()
	rep := &Report{Generated: time.Now().UTC().Round(time.Second), Target: l.o.url, Mode: l.o.mode, Display: l.o.display,
		DisplayReconnects: int(l.reconnects.Load())}
	type lat struct{ display, ready, complete []time.Duration }
	per := make([]lat, len(t.phases))
	lost := make([]int, len(t.phases))
	unseen := make([]int, len(t.phases))
	incomplete := make([]int, len(t.phases))
	dup := make([]int, len(t.phases))
	for _, o := range t.orders {
		i := o.phase
		if o.queued > 1 || o.boarded > 1 {
			dup[i]++
		}
		if !l.o.display {
			continue
		}
		if o.displayed.IsZero() {
			if o.confirmed {
				unseen[i]++
				// Never shown, so loadgen never worked it: in a
				// lifecycle run it did not finish either.
				if t.lifecycle && o.completed.IsZero() {
					incomplete[i]++
				}
			} else {
				lost[i]++
			}
			continue
		}
		per[i].display = append(per[i].display, o.displayed.Sub(o.due))
		if !o.ready.IsZero() {
			per[i].ready = append(per[i].ready, o.ready.Sub(o.due))
		}
		if !o.completed.IsZero() {
			per[i].complete = append(per[i].complete, o.completed.Sub(o.due))
		} else if t.lifecycle {
			incomplete[i]++
		}
	}
	for i, p := range t.phases {
		ph := Phase{Name: p.name, Model: "open", Rate: p.rate, Clients: p.clients,
			Sent: p.sent, Accepted: p.accepted, Errors: p.errors, Late: p.late, Statuses: p.statuses,
			SendingS: round3(p.sending.Seconds()), DrainS: round3(p.drain.Seconds()),
			Place:        summarize(slices.Clone(p.placeLat), nil),
			BacklogAtEnd: p.backlog, Lost: lost[i], Unseen: unseen[i], Incomplete: incomplete[i], Duplicated: dup[i] + p.dupIDs,
			CPU: p.cpu, Timeline: []Second{}}
		if p.clients > 0 {
			ph.Model, ph.Rate = "closed", 0
		}
		if p.sending > 0 {
			ph.AcceptedPerS = round3(float64(p.accepted) / p.sending.Seconds())
		}
		if len(p.calls) > 0 {
			ph.Calls = map[string]Stats{}
			for name, c := range p.calls {
				ph.Calls[name] = summarize(slices.Clone(c.lat), c.statuses)
			}
		}
		if l.o.display {
			s := summarize(per[i].display, nil)
			ph.OrderToDisplay = &s
		}
		if t.lifecycle {
			r, c := summarize(per[i].ready, nil), summarize(per[i].complete, nil)
			ph.OrderToReady, ph.OrderToComplete = &r, &c
		}
		for j, s := range p.seconds {
			lat := slices.Clone(s.lat)
			slices.Sort(lat)
			ph.Timeline = append(ph.Timeline, Second{T: j, Sent: s.sent, Accepted: s.accepted, Errors: s.errors, Late: s.late,
				Displayed: s.displayed, Completed: s.completed, Backlog: s.backlog, Inflight: s.inflight,
				P50ms: ms(percentile(lat, 0.5)), P99ms: ms(percentile(lat, 0.99))})
		}
		rep.Phases = append(rep.Phases, ph)
		rep.Sent += ph.Sent
		rep.Accepted += ph.Accepted
		rep.Errors += ph.Errors
		rep.Lost += ph.Lost
		rep.Unseen += ph.Unseen
		rep.Duplicated += ph.Duplicated
		rep.Incomplete += ph.Incomplete
	}
	return rep
}

// failed names what makes the run a failure: lost, duplicated or
// unfinished orders.
func (r *Report) failed() string {
	if r.Lost > 0 || r.Duplicated > 0 || r.Incomplete > 0 {
		return fmt.Sprintf("%d lost, %d duplicated, %d incomplete orders", r.Lost, r.Duplicated, r.Incomplete)
	}
	return ""
}

func (r *Report) writeJSON(w io.Writer) error { return jsonEncoder(w).Encode(r) }

func jsonEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc
}

// writeFiles writes prefix.json and prefix.html.
func (r *Report) writeFiles(prefix string) error {
	for _, f := range []struct {
		ext   string
		write func(io.Writer) error
	}{{".json", r.writeJSON}, {".html", r.writeHTML}} {
		out, err := os.Create(prefix + f.ext)
		if err != nil {
			return fmt.Errorf("write the report: %w", err)
		}
		err = f.write(out)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", prefix+f.ext, err)
		}
	}
	return nil
}

// print writes the report as text.
func (r *Report) print(w io.Writer) {
	fmt.Fprintf(w, "target %s, mode %s\n", r.Target, r.Mode)
	for _, p := range r.Phases {
		load := fmt.Sprintf("%g orders/s open model", p.Rate)
		if p.Model == "closed" {
			load = fmt.Sprintf("%d clients closed loop", p.Clients)
		}
		fmt.Fprintf(w, "\n== %s (%s)\n", p.Name, load)
		fmt.Fprintf(w, "sent %d = accepted %d + errors %d; late %d; %.1f accepted/s over %.1fs, drain %.1fs, backlog at end %d\n",
			p.Sent, p.Accepted, p.Errors, p.Late, p.AcceptedPerS, p.SendingS, p.DrainS, p.BacklogAtEnd)
		fmt.Fprintf(w, "%-22s %7s %9s %9s %9s %9s  statuses\n", "", "count", "p50 ms", "p95 ms", "p99 ms", "max ms")
		line := func(name string, s *Stats) {
			if s != nil {
				fmt.Fprintf(w, "%-22s %7d %9.1f %9.1f %9.1f %9.1f  %s\n", name, s.Count, s.P50ms, s.P95ms, s.P99ms, s.Maxms, fmtStatuses(s.Statuses))
			}
		}
		place := p.Place
		place.Statuses = p.Statuses
		line("POST /v1/orders", &place)
		for _, n := range sortedKeys(p.Calls) {
			s := p.Calls[n]
			line(n, &s)
		}
		line("order->display", p.OrderToDisplay)
		line("order->ready", p.OrderToReady)
		line("order->complete", p.OrderToComplete)
		if r.Display {
			fmt.Fprintf(w, "lost %d, duplicated %d, incomplete %d, unseen on the display but taken by the kitchen %d\n", p.Lost, p.Duplicated, p.Incomplete, p.Unseen)
		}
		if c := p.CPU; c != nil {
			fmt.Fprintf(w, "whole-stack CPU per order: %.3f ms (%d orders, drain included)\n", c.TotalMsPerOrder, c.Orders)
			if c.RSSAfterMB > 0 {
				fmt.Fprintf(w, "resident memory of those processes: %.1f MiB before, %.1f MiB after\n", c.RSSBeforeMB, c.RSSAfterMB)
			}
			for _, pc := range c.Processes {
				fmt.Fprintf(w, "  %-18s %8.3f ms/order %9.3f s  %s  %s\n", pc.Name, pc.MsPerOrder, pc.Seconds, fmtRSS(pc), pc.Source)
			}
			for _, m := range c.Missing {
				fmt.Fprintf(w, "  %-18s not read\n", m)
			}
			for _, m := range c.Restarted {
				fmt.Fprintf(w, "  %-18s started again during the run: not counted\n", m)
			}
		}
	}
	if r.Ramp != nil {
		fmt.Fprintf(w, "\n== ramp: highest rate with p99 <= %gms, no errors, no backlog: %g orders/s\n", r.Ramp.TargetP99ms, r.Ramp.MaxRate)
		for _, s := range r.Ramp.Steps {
			verdict := "holds"
			if !s.Pass {
				verdict = "fails: " + s.Reason
			}
			fmt.Fprintf(w, "  %8g/s  p99 %7.1fms  late %5d  %s\n", s.Rate, s.P99ms, s.Late, verdict)
		}
	}
	fmt.Fprintf(w, "\nin all: sent %d, accepted %d, errors %d, lost %d, duplicated %d, incomplete %d, unseen %d, display reconnects %d\n",
		r.Sent, r.Accepted, r.Errors, r.Lost, r.Duplicated, r.Incomplete, r.Unseen, r.DisplayReconnects)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// fmtStatuses is "200:98 503:2", or empty.
func fmtStatuses(m map[string]int) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s:%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// fmtRSS is a process's resident memory before and after a phase, or
// nothing when its source does not say.
func fmtRSS(p ProcCPU) string {
	if p.RSSAfterMB == 0 {
		return ""
	}
	return fmt.Sprintf("RSS %.1f -> %.1f MiB", p.RSSBeforeMB, p.RSSAfterMB)
}
