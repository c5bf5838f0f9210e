// Command kitchen runs the Pizzashop kitchen: it turns placed orders into
// tickets and lets kitchen staff work them.
package main

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/app"
	"github.com/pizzashop/pizzashop/pkg/svc"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	"github.com/pizzashop/pizzashop/services/kitchen/internal/kitchenapi"
)

// Config is the kitchen service's configuration.
type Config struct {
	svc.Common
}

func main() { app.Main("kitchen", run) }

func run(ctx context.Context, log *slog.Logger) error {
	var cfg Config
	return svc.Run(ctx, log, svc.Service{
		Name:     "kitchen",
		Defaults: svc.Defaults{GRPCAddr: "127.0.0.1:9093", MetricsAddr: "127.0.0.1:9193", MongoDatabase: "pizzashop_kitchen"},
		Config:   &cfg,
		Common:   &cfg.Common,
		Policy:   kitchenapi.Policy,
		Streams:  []jetstream.StreamConfig{kitchenapi.Stream},
		Setup: func(ctx context.Context, d *svc.Deps) error {
			// Ticket handling arrives with the kitchen issue; until then the
			// service answers Unimplemented behind its access policy.
			kitchenv1.RegisterKitchenServiceServer(d.GRPC, kitchenv1.UnimplementedKitchenServiceServer{})
			return nil
		},
	})
}
