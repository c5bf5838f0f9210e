// Command menu serves the Pizzashop menu over gRPC: reading and pricing for
// everyone, changes for managers, and a MenuChanged event for every change.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/app"
	"github.com/pizzashop/pizzashop/pkg/svc"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	"github.com/pizzashop/pizzashop/services/menu/internal/menu"
	"github.com/pizzashop/pizzashop/services/menu/internal/menuapi"
	"github.com/pizzashop/pizzashop/services/menu/internal/menudb"
)

// Config is the menu service's configuration.
type Config struct {
	svc.Common
	Currency string `env:"MENU_CURRENCY" default:"USD"`
}

func main() { app.Main("menu", run) }

func run(ctx context.Context, log *slog.Logger) error {
	var cfg Config
	return svc.Run(ctx, log, svc.Service{
		Name:     "menu",
		Defaults: svc.Defaults{GRPCAddr: "127.0.0.1:9091", MetricsAddr: "127.0.0.1:9191", MongoDatabase: "pizzashop_menu"},
		Config:   &cfg,
		Common:   &cfg.Common,
		Policy:   menuapi.Policy,
		Streams:  []jetstream.StreamConfig{menuapi.Stream},
		Setup: func(ctx context.Context, d *svc.Deps) error {
			if err := menu.CheckCurrency(cfg.Currency); err != nil {
				return fmt.Errorf("MENU_CURRENCY: %w", err)
			}
			store := menudb.New(d.DB, cfg.Currency)
			if err := store.Init(ctx, time.Now()); err != nil {
				return err
			}
			store.Tracker = d.Relay(store.Collections())
			srv := menuapi.NewServer(store)
			// Every replica empties its menu cache on every change, its own
			// or another's.
			if err := d.Listen(menuapi.SubjectChanged, func([]byte) { srv.MenuChanged() }); err != nil {
				return err
			}
			menuv1.RegisterMenuServiceServer(d.GRPC, srv)
			return nil
		},
	})
}
