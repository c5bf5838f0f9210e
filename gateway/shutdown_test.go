package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestShutdownDelayKeepsServing stops the gateway with SHUTDOWN_DELAY set:
// /readyz turns 503 at once, while the listener still answers, and the
// gateway exits once the delay has passed.
func TestShutdownDelayKeepsServing(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	t.Setenv("HTTP_ADDR", addr)
	const delay = 2 * time.Second
	t.Setenv("SHUTDOWN_DELAY", delay.String())
	t.Setenv("PIZZASHOP_DEMO", "true")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- run(ctx, slog.New(slog.DiscardHandler)) }()

	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, err := get(base + "/healthz"); err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not answer /healthz on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Taken before the stop: the gateway cannot be done with its delay
	// before stopped+2s, however slowly the checks below run.
	stopped := time.Now()
	stop()
	deadline = stopped.Add(time.Second)
	for {
		code, err := get(base + "/readyz")
		if err != nil {
			t.Fatalf("GET /readyz %s after the stop: %v; want 503 while the delay runs", time.Since(stopped), err)
		}
		if code == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /readyz = %d a second after the stop, want 503", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, err := get(base + "/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("GET /healthz during the delay = %d, %v; want 200", code, err)
	}
	select {
	case err := <-done:
		if took := time.Since(stopped); took < delay {
			t.Fatalf("run returned %v %s after the stop, before the %s delay", err, took, delay)
		}
		if err != nil {
			t.Fatalf("run = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("run still going %s after the stop", time.Since(stopped))
	}
	if _, err := get(base + "/healthz"); err == nil {
		t.Errorf("GET /healthz answered after the gateway stopped")
	}
}

func get(url string) (int, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}
