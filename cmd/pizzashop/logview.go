package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// logSink takes the output of one process (JSON log lines from slog, and
// anything else it writes, such as a panic): every line goes to its log
// file, lines at WARN and above also go to the terminal as one readable line,
// and the last lines are kept to show when the process dies.
type logSink struct {
	name  string
	width int // names are padded to this width on the terminal
	term  *syncWriter
	file  *os.File
	path  string

	mu      sync.Mutex
	partial []byte
	tail    []string // ring of the last tailLines lines
	next    int
}

const (
	tailLines = 25
	// maxLine bounds a line held while waiting for its newline.
	maxLine = 1 << 20
)

// newLogSink opens dir/<name>.log, keeping the previous run's file as
// <name>.log.1 so logs stay bounded yet the last crash can still be read.
func newLogSink(dir, name string, width int, term *syncWriter) (*logSink, error) {
	path := filepath.Join(dir, name+".log")
	if err := os.Rename(path, path+".1"); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return &logSink{name: name, width: width, term: term, file: f, path: path}, nil
}

// Write splits p into lines. os/exec calls it from one goroutine when the
// same sink is both Stdout and Stderr; slog calls it concurrently.
func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.partial = append(s.partial, p...)
			if len(s.partial) >= maxLine {
				s.line(s.partial)
				s.partial = s.partial[:0]
			}
			break
		}
		if len(s.partial) > 0 {
			s.partial = append(s.partial, p[:i]...)
			s.line(s.partial)
			s.partial = s.partial[:0]
		} else {
			s.line(p[:i])
		}
		p = p[i+1:]
	}
	return n, nil
}

// Close writes out a last line without its newline and closes the file.
func (s *logSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.partial) > 0 {
		s.line(s.partial)
		s.partial = nil
	}
	return s.file.Close()
}

func (s *logSink) line(b []byte) {
	b = bytes.TrimRight(b, "\r")
	// A failing log file must not stop the process whose output it is.
	_, _ = s.file.Write(append(b, '\n'))
	text := string(b)
	if len(s.tail) < tailLines {
		s.tail = append(s.tail, text)
	} else {
		s.tail[s.next] = text
		s.next = (s.next + 1) % tailLines
	}
	if rec, ok := parseRecord(b); ok && rec.severity >= severityWarn {
		s.term.Println(rec.format(s.name, s.width))
	}
}

// Tail returns the last lines written, oldest first, in terminal form.
func (s *logSink) Tail() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	lines := append(append([]string{}, s.tail[s.next:]...), s.tail[:s.next]...)
	if len(s.partial) > 0 {
		lines = append(lines, string(s.partial))
	}
	for i, l := range lines {
		if rec, ok := parseRecord([]byte(l)); ok {
			lines[i] = rec.format(s.name, s.width)
		} else {
			lines[i] = fmt.Sprintf("%-*s %s", s.width, s.name, l)
		}
	}
	return lines
}

// Severities of slog levels; slog writes levels between them as "WARN+2".
const (
	severityDebug = -4
	severityInfo  = 0
	severityWarn  = 4
	severityError = 8
)

// record is one parsed JSON log line.
type record struct {
	level    string
	severity int
	msg      string
	attrs    []string // key=value, in the order of the line
}

// parseRecord reads a slog JSON line, keeping the order of its keys. It
// reports false for anything else.
func parseRecord(b []byte) (record, bool) {
	b = bytes.TrimSpace(b)
	if len(b) < 2 || b[0] != '{' {
		return record{}, false
	}
	var rec record
	var haveLevel bool
	err := walkObject(b, "", func(key string, raw json.RawMessage) {
		switch key {
		case "time", "service":
			// The terminal shows the process name instead, and the time the
			// line is printed.
		case "level":
			_ = json.Unmarshal(raw, &rec.level)
			rec.severity, haveLevel = parseLevel(rec.level)
		case "msg":
			_ = json.Unmarshal(raw, &rec.msg)
		default:
			rec.attrs = append(rec.attrs, key+"="+formatValue(raw))
		}
	})
	if err != nil || !haveLevel {
		return record{}, false
	}
	return rec, true
}

// walkObject calls fn for every leaf of the JSON object in b, naming nested
// keys group.key as slog's text handler does.
func walkObject(b []byte, prefix string, fn func(key string, raw json.RawMessage)) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return fmt.Errorf("not a JSON object")
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		if len(raw) > 0 && raw[0] == '{' {
			if err := walkObject(raw, prefix+key+".", fn); err != nil {
				return err
			}
			continue
		}
		fn(prefix+key, raw)
	}
	if _, err := dec.Token(); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after JSON object")
	}
	return nil
}

// parseLevel reads "INFO", "WARN", "ERROR+2" and the like.
func parseLevel(s string) (int, bool) {
	s = strings.ToUpper(s)
	name, off := s, ""
	if i := strings.IndexAny(s, "+-"); i >= 0 {
		name, off = s[:i], s[i:]
	}
	var sev int
	switch name {
	case "DEBUG":
		sev = severityDebug
	case "INFO":
		sev = severityInfo
	case "WARN", "WARNING":
		sev = severityWarn
	case "ERROR", "FATAL", "PANIC":
		sev = severityError
	default:
		return 0, false
	}
	if off != "" {
		n, err := strconv.Atoi(off)
		if err != nil {
			return 0, false
		}
		sev += n
	}
	return sev, true
}

// formatValue prints strings bare unless they need quotes, and any other
// JSON value as it is.
func formatValue(raw json.RawMessage) string {
	var s string
	if len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
		if s == "" || strings.ContainsAny(s, " \t\n\r\"=") {
			return strconv.Quote(s)
		}
		return s
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) == nil {
		return buf.String()
	}
	return string(raw)
}

// format renders r as "menu      WARN  message key=value ...".
func (r record) format(name string, width int) string {
	var b strings.Builder
	msg := r.msg
	if strings.ContainsAny(msg, "\n\r") {
		msg = strings.Join(strings.Fields(msg), " ")
	}
	fmt.Fprintf(&b, "%-*s %-5s %s", width, name, r.level, msg)
	for _, a := range r.attrs {
		b.WriteByte(' ')
		b.WriteString(a)
	}
	return b.String()
}

// syncWriter serializes whole lines from many goroutines onto one writer.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *syncWriter) Println(a ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintln(w.w, a...)
}

func (w *syncWriter) Printf(format string, a ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.w, format, a...)
}
