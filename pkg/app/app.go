// Package app holds the few lines every Pizzashop main shares: build the
// logger, derive a context that ends on SIGINT or SIGTERM, run, and exit in
// one place.
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, log)
	stop()
	if err != nil {
		log.Error("exiting on error", "err", err)
		os.Exit(1)
	}
	log.Info("stopped")
	os.Exit(0)
}
