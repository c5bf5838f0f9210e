// Command delivery runs the Pizzashop delivery board and counter: ready
// orders go to couriers or wait for pickup.
package main

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/app"
	"github.com/pizzashop/pizzashop/pkg/svc"
	deliveryv1 "github.com/pizzashop/pizzashop/proto/pizzashop/delivery/v1"
	"github.com/pizzashop/pizzashop/services/delivery/internal/deliveryapi"
)

// Config is the delivery service's configuration.
type Config struct {
	svc.Common
}

func main() { app.Main("delivery", run) }

func run(ctx context.Context, log *slog.Logger) error {
	var cfg Config
	return svc.Run(ctx, log, svc.Service{
		Name:     "delivery",
		Defaults: svc.Defaults{GRPCAddr: "127.0.0.1:9094", MetricsAddr: "127.0.0.1:9194", MongoDatabase: "pizzashop_delivery"},
		Config:   &cfg,
		Common:   &cfg.Common,
		Policy:   deliveryapi.Policy,
		Streams:  []jetstream.StreamConfig{deliveryapi.Stream},
		Setup: func(ctx context.Context, d *svc.Deps) error {
			// Handover arrives with the delivery issue; until then the
			// service answers Unimplemented behind its access policy.
			deliveryv1.RegisterDeliveryServiceServer(d.GRPC, deliveryv1.UnimplementedDeliveryServiceServer{})
			return nil
		},
	})
}
