package svc_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/logging"
	"github.com/pizzashop/pizzashop/pkg/svc"
)

type testConfig struct{ svc.Common }

// serviceEnv points a service's configuration at the test's own NATS and
// store.
func serviceEnv(t *testing.T) {
	t.Helper()
	t.Setenv("NATS_URL", devstack.NATS(t))
	t.Setenv("MONGO_URI", devstack.Mongo(t))
	t.Setenv("GRPC_ADDR", devstack.FreeAddr(t))
	t.Setenv("METRICS_ADDR", "")
	t.Setenv("PIZZASHOP_DEMO", "true")
}

// runService runs a service whose Setup starts the given worker (after
// serviceEnv) and returns what Run returned.
func runService(ctx context.Context, work func(ctx context.Context) error) error {
	return runServiceWith(ctx, svc.Defaults{MongoDatabase: "svctest"}, work)
}

func runServiceWith(ctx context.Context, defaults svc.Defaults, work func(ctx context.Context) error) error {
	var cfg testConfig
	return svc.Run(ctx, logging.Discard(), svc.Service{
		Name:     "svctest",
		Defaults: defaults,
		Config:   &cfg,
		Common:   &cfg.Common,
		Setup: func(ctx context.Context, d *svc.Deps) error {
			d.Go("worker", work)
			return nil
		},
	})
}

// TestRunFailsWithItsWorker: a worker that fails stops the process with
// its error, so that the process exits with a failure status and its
// supervisor (the launcher, Kubernetes, systemd's on-failure) starts it
// again. It once stopped as after Ctrl-C, with status 0.
func TestRunFailsWithItsWorker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	boom := errors.New("consumer lost its stream")
	serviceEnv(t)
	err := runService(ctx, func(context.Context) error { return boom })
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "worker") {
		t.Fatalf("Run with a failed worker = %v, want an error naming the worker and wrapping %q", err, boom)
	}
	if ctx.Err() != nil {
		t.Fatal("Run returned only once the test's context ended")
	}
}

// TestRunStopsCleanly: a stop asked for (the context ends, as on SIGTERM)
// is not a failure.
func TestRunStopsCleanly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	done := make(chan error, 1)
	serviceEnv(t)
	go func() {
		done <- runService(ctx, func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("Run returned %v before it was stopped", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the worker never started")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after its context ended = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// TestMetricsAddr: an unset METRICS_ADDR serves /metrics on the service's
// default address, and one set to nothing turns the endpoint off, as the
// README's configuration table says. An empty value once took the default
// too, so the endpoint could not be turned off.
func TestMetricsAddr(t *testing.T) {
	get := func(addr string) (int, error) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	// serve runs the service until check has looked at addr.
	serve := func(t *testing.T, addr string, check func()) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			done <- runServiceWith(ctx, svc.Defaults{MongoDatabase: "svctest", MetricsAddr: addr}, func(ctx context.Context) error {
				check()
				cancel()
				return nil
			})
		}()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v", err)
		}
	}

	t.Run("unset serves the default", func(t *testing.T) {
		serviceEnv(t)
		os.Unsetenv("METRICS_ADDR") // t.Setenv in serviceEnv restores it
		addr := devstack.FreeAddr(t)
		serve(t, addr, func() {
			deadline := time.Now().Add(30 * time.Second)
			for {
				code, err := get(addr)
				if err == nil && code == http.StatusOK {
					return
				}
				if time.Now().After(deadline) {
					t.Errorf("GET /metrics on the default %s = %d, %v; want 200", addr, code, err)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	})
	t.Run("empty turns it off", func(t *testing.T) {
		serviceEnv(t) // METRICS_ADDR=""
		addr := devstack.FreeAddr(t)
		serve(t, addr, func() {
			// The endpoint would be up by now (it starts before the
			// workers); look for a while to be sure it never comes.
			for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
				if code, err := get(addr); err == nil {
					t.Errorf("GET /metrics on %s = %d with METRICS_ADDR empty; want nothing listening", addr, code)
					return
				}
			}
		})
	})
}
