// Package app holds the few lines every Pizzashop main shares: build the
// logger, derive a context that ends on a stop signal, run, and exit in one
// place.
package app

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/pizzashop/pizzashop/pkg/logging"
)

// Version is set at build time with -ldflags "-X .../pkg/app.Version=...".
var Version = "dev"

// Main runs run with a JSON logger and a signal-bound context, and exits the
// process with status 1 if run fails. It never returns.
func Main(service string, run func(ctx context.Context, log *slog.Logger) error) {
	log := logging.New(os.Stdout, service, os.Getenv("LOG_LEVEL"))
	slog.SetDefault(log) // for the few library paths that log without a logger passed in
	ctx, stop := signal.NotifyContext(context.Background(), StopSignals()...)
	err := run(ctx, log)
	stop()
	if err != nil {
		log.Error("exiting on error", "err", err)
		os.Exit(1)
	}
	log.Info("stopped")
	os.Exit(0)
}

// StopSignals are the signals a Pizzashop process stops gracefully on:
// SIGINT (Ctrl-C), SIGTERM (Kubernetes, systemd, kill) and SIGHUP, which
// the kernel sends every process of a terminal's session when the terminal
// closes. Without it the launcher and its services would die at once,
// in no order, instead of stopping as on Ctrl-C. SIGHUP is left out when
// the process was started with it ignored (nohup): asking for it would
// undo nohup.
func StopSignals() []os.Signal {
	sigs := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) {
		sigs = append(sigs, syscall.SIGHUP)
	}
	return sigs
}
