package svc_test

import (
	"context"
	"errors"
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
	var cfg testConfig
	return svc.Run(ctx, logging.Discard(), svc.Service{
		Name:     "svctest",
		Defaults: svc.Defaults{MongoDatabase: "svctest"},
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
