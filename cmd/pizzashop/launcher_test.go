package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/auth"
)

func TestRecordFormat(t *testing.T) {
	tests := []struct {
		line string
		want string // "" when the line is not a log record
		warn bool   // shown on the terminal
	}{
		{
			line: `{"time":"2026-01-01T00:00:00Z","level":"INFO","msg":"grpc server listening","service":"menu","addr":"127.0.0.1:9091"}`,
			want: "menu     INFO  grpc server listening addr=127.0.0.1:9091",
		},
		{
			line: `{"time":"x","level":"WARN","msg":"slow call","service":"menu","config":{"a":1,"b":{"c":"two words"}},"ok":true,"list":[1, 2]}`,
			want: `menu     WARN  slow call config.a=1 config.b.c="two words" ok=true list=[1,2]`,
			warn: true,
		},
		{
			line: `{"level":"ERROR+2","msg":"line one\n  line two","empty":""}`,
			want: `menu     ERROR+2 line one line two empty=""`,
			warn: true,
		},
		{line: `panic: runtime error: index out of range`},
		{line: `{"msg":"no level"}`},
		{line: `{"level":"INFO","msg":"x"} trailing`},
	}
	for _, tt := range tests {
		rec, ok := parseRecord([]byte(tt.line))
		if !ok {
			if tt.want != "" {
				t.Errorf("parseRecord(%s) failed, want %q", tt.line, tt.want)
			}
			continue
		}
		if tt.want == "" {
			t.Errorf("parseRecord(%s) = %+v, want no record", tt.line, rec)
			continue
		}
		if got := rec.format("menu", nameWidth); got != tt.want {
			t.Errorf("format(%s)\n got %q\nwant %q", tt.line, got, tt.want)
		}
		if got := rec.severity >= severityWarn; got != tt.warn {
			t.Errorf("parseRecord(%s) shown on the terminal = %v, want %v", tt.line, got, tt.warn)
		}
	}
}

func TestLogSink(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "menu.log"), []byte("old run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var term bytes.Buffer
	s, err := newLogSink(dir, "menu", nameWidth, &syncWriter{w: &term})
	if err != nil {
		t.Fatal(err)
	}
	// Lines arrive split anywhere.
	input := `{"level":"INFO","msg":"hello"}` + "\n" + `{"level":"WARN","msg":"careful","n":1}` + "\n" + "panic: boom\n" + "no newline"
	for i := 0; i < len(input); i += 7 {
		if _, err := s.Write([]byte(input[i:min(i+7, len(input))])); err != nil {
			t.Fatal(err)
		}
	}
	tail := s.Tail()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	if got, want := term.String(), "menu     WARN  careful n=1\n"; got != want {
		t.Errorf("terminal got %q, want %q", got, want)
	}
	file, _ := os.ReadFile(filepath.Join(dir, "menu.log"))
	if got, want := string(file), input+"\n"; got != want {
		t.Errorf("menu.log = %q, want %q", got, want)
	}
	if old, _ := os.ReadFile(filepath.Join(dir, "menu.log.1")); string(old) != "old run\n" {
		t.Errorf("menu.log.1 = %q, want the previous run's log", old)
	}
	want := []string{"menu     INFO  hello", "menu     WARN  careful n=1", "menu     panic: boom", "menu     no newline"}
	if !slices.Equal(tail, want) {
		t.Errorf("Tail() = %q, want %q", tail, want)
	}
}

func TestChildEnv(t *testing.T) {
	parent := []string{"PATH=/bin", "GRPC_ADDR=:1", "AUTH_SECRET=parent", "OTEL_EXPORTER_OTLP_ENDPOINT=http://x", "MENU_ADDR=:2"}
	got := childEnv(parent, map[string]string{"GRPC_ADDR": "127.0.0.1:9091", "MENU_ADDR": "127.0.0.1:9091", "AUTH_SECRET": ""})
	want := []string{"PATH=/bin", "OTEL_EXPORTER_OTLP_ENDPOINT=http://x", "GRPC_ADDR=127.0.0.1:9091", "MENU_ADDR=127.0.0.1:9091"}
	if !slices.Equal(got, want) {
		t.Errorf("childEnv = %q, want %q", got, want)
	}
}

func TestToken(t *testing.T) {
	t.Setenv("AUTH_SECRET", "")
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"token", "--role", "admin", "--sub", "ada", "--name", "Ada", "--ttl", "1h"}, &out, &errOut)
	if err != nil {
		t.Fatalf("token: %v (%s)", err, errOut.String())
	}
	signer, _ := auth.NewSigner(auth.DevSecret)
	c, err := signer.Verify(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatalf("Verify(printed token): %v", err)
	}
	if c.Subject != "ada" || c.Role != auth.RoleAdmin || c.Name != "Ada" || time.Until(c.ExpiresAt) > time.Hour {
		t.Errorf("claims = %+v, want ada, admin, Ada, expiring within 1h", c)
	}

	for _, args := range [][]string{
		{"token", "--role", "chef", "--sub", "x"},
		{"token", "--role", "admin"},
		{"token", "--bogus"},
		{"token", "extra"},
		{"nonsense"},
	} {
		out.Reset()
		errOut.Reset()
		err := run(context.Background(), args, &out, &errOut)
		if code := exitCode(err, &errOut); code != 2 {
			t.Errorf("pizzashop %s: exit status %d, want 2", strings.Join(args, " "), code)
		}
		if errOut.Len() == 0 {
			t.Errorf("pizzashop %s: nothing on stderr, want the reason", strings.Join(args, " "))
		}
	}
}

func TestCheckBinaries(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"menu", "order", "gateway"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	err := checkBinaries(dir)
	if err == nil || !strings.Contains(err.Error(), "missing kitchen, delivery in") {
		t.Errorf("checkBinaries with kitchen and delivery missing = %v, want an error naming them", err)
	}
}
