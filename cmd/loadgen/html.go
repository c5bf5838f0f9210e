package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// The HTML report is one self-contained page: inline CSS and SVG charts
// drawn here, nothing fetched from anywhere.

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"}

type series struct {
	name string
	ys   []float64
}

// boundary marks where a phase starts on the time axis.
type boundary struct {
	x    int
	name string
}

const (
	chartW, chartH                     = 920, 240
	padLeft, padRight, padTop, padBott = 64, 16, 28, 34
)

// niceStep rounds v up to 1, 2, 2.5 or 5 times a power of ten: a step
// between axis ticks.
func niceStep(v float64) float64 {
	if v <= 0 || math.IsNaN(v) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if v <= m*p*(1+1e-9) {
			return m * p
		}
	}
	return 10 * p
}

// lineChart draws series over seconds 0..n-1. hline > 0 draws a dashed
// reference line (a target) at that value.
func lineChart(title, unit string, n int, ss []series, marks []boundary, hline float64) string {
	var b strings.Builder
	top := hline
	for _, s := range ss {
		for _, y := range s.ys {
			if !math.IsNaN(y) {
				top = max(top, y)
			}
		}
	}
	tick := niceStep(top * 1.05 / 4)
	ticks := max(1, int(math.Ceil(top*1.05/tick)))
	top = tick * float64(ticks)
	plotW, plotH := float64(chartW-padLeft-padRight), float64(chartH-padTop-padBott)
	span := float64(max(n-1, 1))
	x := func(i float64) float64 { return padLeft + i/span*plotW }
	y := func(v float64) float64 { return padTop + plotH - v/top*plotH }

	fmt.Fprintf(&b, `<svg viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`, chartW, chartH, chartW, chartH, html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="%d" y="16" class="title">%s</text>`, padLeft, html.EscapeString(title))
	for i := 0; i <= ticks; i++ {
		v := tick * float64(i)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" class="grid"/>`, padLeft, chartW-padRight, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" class="tick" text-anchor="end">%s</text>`, padLeft-6, y(v)+4, fmtNum(v))
	}
	fmt.Fprintf(&b, `<text x="12" y="%.1f" class="tick" transform="rotate(-90 12 %.1f)" text-anchor="middle">%s</text>`,
		padTop+plotH/2, padTop+plotH/2, html.EscapeString(unit))
	step := max(1, int(niceStep(float64(n)/10)))
	for i := 0; i < n; i += step {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="tick" text-anchor="middle">%ds</text>`, x(float64(i)), chartH-padBott+16, i)
	}
	for _, m := range marks {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" class="mark"/><text x="%.1f" y="%d" class="tick">%s</text>`,
			x(float64(m.x)), x(float64(m.x)), padTop, padTop+plotH, x(float64(m.x))+3, padTop+10, html.EscapeString(m.name))
	}
	if hline > 0 {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" class="target"/>`, padLeft, chartW-padRight, y(hline), y(hline))
	}
	for i, s := range ss {
		color := palette[i%len(palette)]
		// A second without a value (NaN: no answer in it) breaks the line.
		var pts []string
		flush := func() {
			if len(pts) == 1 {
				x, y, _ := strings.Cut(pts[0], ",")
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="1.8" fill="%s"/>`, x, y, color)
			} else if len(pts) > 1 {
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"/>`, color, strings.Join(pts, " "))
			}
			pts = pts[:0]
		}
		for j, v := range s.ys {
			if math.IsNaN(v) {
				flush()
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(j)), y(v)))
		}
		flush()
		lx := chartW - padRight - 130*(len(ss)-i)
		fmt.Fprintf(&b, `<rect x="%d" y="6" width="10" height="10" fill="%s"/><text x="%d" y="15" class="tick">%s</text>`,
			lx, color, lx+14, html.EscapeString(s.name))
	}
	b.WriteString(`<line x1="` + fmt.Sprint(padLeft) + `" x2="` + fmt.Sprint(padLeft) + `" y1="` + fmt.Sprint(padTop) + `" y2="` +
		fmt.Sprintf("%.1f", padTop+plotH) + `" class="axis"/></svg>`)
	return b.String()
}

type bar struct {
	label string
	value float64
}

// barChart draws horizontal bars, labelled with their values in unit.
func barChart(title, unit string, bars []bar) string {
	const rowH, labelW, valueW = 22, 150, 140
	h := padTop + rowH*len(bars) + 8
	top := 0.0
	for _, br := range bars {
		top = max(top, br.value)
	}
	if top <= 0 {
		top = 1
	}
	w := float64(chartW - labelW - valueW)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`, chartW, h, chartW, h, html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="0" y="16" class="title">%s</text>`, html.EscapeString(title))
	for i, br := range bars {
		yy := padTop + i*rowH
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="tick" text-anchor="end">%s</text>`, labelW-8, yy+14, html.EscapeString(br.label))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`, labelW, yy+2, max(br.value, 0)/top*w, rowH-6, palette[i%len(palette)])
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="tick">%s %s</text>`, float64(labelW)+max(br.value, 0)/top*w+6, yy+14, fmtNum(br.value), html.EscapeString(unit))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func fmtNum(v float64) string {
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e9:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

const pageStyle = `body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:980px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}.bad{color:#b00020;font-weight:bold}
svg{display:block;margin:8px 0}.title{font-weight:600;font-size:13px}.tick{font-size:11px;fill:#444}
.grid{stroke:#e5e5e5}.axis{stroke:#888}.mark{stroke:#999;stroke-dasharray:4 3}.target{stroke:#b00020;stroke-dasharray:6 4}`

// writeHTML writes the report as one self-contained page.
func (r *Report) writeHTML(w io.Writer) error {
	var b strings.Builder
	esc := html.EscapeString
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Pizzashop load report</title><style>")
	b.WriteString(pageStyle)
	b.WriteString("</style></head><body>\n")
	fmt.Fprintf(&b, "<h1>Pizzashop load report</h1><p>%s, mode <b>%s</b>, generated %s.</p>\n",
		esc(r.Target), esc(r.Mode), r.Generated.Format("2006-01-02 15:04:05 MST"))
	bad := func(n int) string {
		if n > 0 {
			return fmt.Sprintf(`<td class="bad">%d</td>`, n)
		}
		return fmt.Sprintf("<td>%d</td>", n)
	}
	b.WriteString("<h2>Summary</h2><table><tr><th>phase</th><th>load</th><th>sent</th><th>accepted</th><th>errors</th><th>late</th>" +
		"<th>accepted/s</th><th>p50 ms</th><th>p99 ms</th><th>display p99 ms</th><th>backlog at end</th><th>lost</th><th>duplicated</th>" +
		"<th>incomplete</th><th>CPU ms/order</th></tr>\n")
	for _, p := range r.Phases {
		load := fmt.Sprintf("%g/s open", p.Rate)
		if p.Model == "closed" {
			load = fmt.Sprintf("%d clients closed", p.Clients)
		}
		disp, cpu := "-", "-"
		if p.OrderToDisplay != nil {
			disp = fmtNum(p.OrderToDisplay.P99ms)
		}
		if p.CPU != nil {
			cpu = fmtNum(p.CPU.TotalMsPerOrder)
		}
		fmt.Fprintf(&b, "<tr><td>%s</td><td>%s</td><td>%d</td><td>%d</td>%s<td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td>%s%s%s<td>%s</td></tr>\n",
			esc(p.Name), load, p.Sent, p.Accepted, bad(p.Errors), p.Late, fmtNum(p.AcceptedPerS), fmtNum(p.Place.P50ms), fmtNum(p.Place.P99ms),
			disp, p.BacklogAtEnd, bad(p.Lost), bad(p.Duplicated), bad(p.Incomplete), cpu)
	}
	b.WriteString("</table>\n")
	if r.Ramp != nil {
		fmt.Fprintf(&b, "<h2>Ramp</h2><p>Highest rate with p99 &le; %s ms, no errors and no backlog: <b>%s orders/s</b>.</p><table><tr><th>rate</th><th>p99 ms</th><th>late</th><th>verdict</th></tr>\n",
			fmtNum(r.Ramp.TargetP99ms), fmtNum(r.Ramp.MaxRate))
		for _, s := range r.Ramp.Steps {
			verdict := "holds"
			if !s.Pass {
				verdict = "fails: " + s.Reason
			}
			fmt.Fprintf(&b, "<tr><td>%s/s</td><td>%s</td><td>%d</td><td>%s</td></tr>\n", fmtNum(s.Rate), fmtNum(s.P99ms), s.Late, esc(verdict))
		}
		b.WriteString("</table>\n")
	}

	// The timelines of every phase, one after the other.
	var (
		marks                                      []boundary
		sent, accepted, displayed, completed, errs []float64
		p50, p99, backlog, inflight                []float64
		anyCompleted                               bool
	)
	for _, p := range r.Phases {
		if len(r.Phases) > 1 {
			marks = append(marks, boundary{x: len(sent), name: p.Name})
		}
		for _, s := range p.Timeline {
			sent = append(sent, float64(s.Sent))
			accepted = append(accepted, float64(s.Accepted))
			displayed = append(displayed, float64(s.Displayed))
			completed = append(completed, float64(s.Completed))
			errs = append(errs, float64(s.Errors))
			if s.Accepted == 0 {
				p50, p99 = append(p50, math.NaN()), append(p99, math.NaN())
			} else {
				p50, p99 = append(p50, s.P50ms), append(p99, s.P99ms)
			}
			backlog = append(backlog, float64(s.Backlog))
			inflight = append(inflight, float64(s.Inflight))
			anyCompleted = anyCompleted || s.Completed > 0
		}
	}
	b.WriteString("<h2>Over time</h2>\n")
	tp := []series{{"sent", sent}, {"accepted", accepted}}
	if r.Display {
		tp = append(tp, series{"on display", displayed})
	}
	if anyCompleted {
		tp = append(tp, series{"completed", completed})
	}
	tp = append(tp, series{"errors", errs})
	b.WriteString(lineChart("Throughput per second", "orders/s", len(sent), tp, marks, 0))
	target := 0.0
	if r.Ramp != nil {
		target = r.Ramp.TargetP99ms
	}
	b.WriteString(lineChart("Latency of POST /v1/orders from its due time", "ms", len(sent), []series{{"p50", p50}, {"p99", p99}}, marks, target))
	b.WriteString(lineChart("Backlog (accepted, not through yet) and requests in flight", "orders", len(sent),
		[]series{{"backlog", backlog}, {"in flight", inflight}}, marks, 0))

	b.WriteString("<h2>CPU per order by process</h2>\n<p>From each process's <code>process_cpu_seconds_total</code> (or <code>/proc/PID/stat</code>), read before a phase and after its drain, divided by its accepted orders.</p>\n")
	for _, p := range r.Phases {
		if p.CPU == nil {
			continue
		}
		bars := []bar{{"whole stack", p.CPU.TotalMsPerOrder}}
		for _, pc := range p.CPU.Processes {
			bars = append(bars, bar{pc.Name, pc.MsPerOrder})
		}
		b.WriteString(barChart(fmt.Sprintf("%s: %d orders", p.Name, p.CPU.Orders), "ms/order", bars))
		if p.CPU.RSSAfterMB > 0 {
			fmt.Fprintf(&b, "<p>Resident memory, before the phase and after its drain: whole stack %s &rarr; %s MiB", fmtNum(p.CPU.RSSBeforeMB), fmtNum(p.CPU.RSSAfterMB))
			for _, pc := range p.CPU.Processes {
				if pc.RSSAfterMB > 0 {
					fmt.Fprintf(&b, "; %s %s &rarr; %s", esc(pc.Name), fmtNum(pc.RSSBeforeMB), fmtNum(pc.RSSAfterMB))
				}
			}
			b.WriteString(".</p>\n")
		}
		if len(p.CPU.Missing) > 0 {
			fmt.Fprintf(&b, "<p class=\"bad\">Not read: %s</p>\n", esc(strings.Join(p.CPU.Missing, ", ")))
		}
		if len(p.CPU.Restarted) > 0 {
			fmt.Fprintf(&b, "<p class=\"bad\">Started again during the run, not counted: %s</p>\n", esc(strings.Join(p.CPU.Restarted, ", ")))
		}
	}

	b.WriteString("<h2>Calls</h2>\n<table><tr><th>phase</th><th>call</th><th>count</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>max ms</th><th>statuses</th></tr>\n")
	row := func(phase, name string, s *Stats, statuses map[string]int) {
		if s == nil {
			return
		}
		fmt.Fprintf(&b, "<tr><td>%s</td><td>%s</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>\n",
			esc(phase), esc(name), s.Count, fmtNum(s.P50ms), fmtNum(s.P95ms), fmtNum(s.P99ms), fmtNum(s.Maxms), esc(fmtStatuses(statuses)))
	}
	for _, p := range r.Phases {
		row(p.Name, "POST /v1/orders", &p.Place, p.Statuses)
		for _, name := range sortedKeys(p.Calls) {
			s := p.Calls[name]
			row(p.Name, name, &s, s.Statuses)
		}
		row(p.Name, "order to display", p.OrderToDisplay, nil)
		row(p.Name, "order to ready", p.OrderToReady, nil)
		row(p.Name, "order to complete", p.OrderToComplete, nil)
	}
	b.WriteString("</table>\n</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
