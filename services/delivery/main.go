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
	"github.com/pizzashop/pizzashop/services/delivery/internal/deliverydb"
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
			store := deliverydb.New(d.DB)
			if err := store.Init(ctx); err != nil {
				return err
			}
			store.Tracker = d.Relay(store.Collections())
			srv := deliveryapi.NewServer(store, d.Bus.Conn, d.Log)
			srv.KeepAlive = cfg.StreamKeepAlive
			d.Go("ready orders consumer", func(ctx context.Context) error {
				return d.Bus.Consume(ctx, deliveryapi.ReadyConsumer, srv.HandleReady)
			})
			// Live board streams never end on their own; end them when
			// shutdown begins so the graceful stop does not wait out its
			// grace period, and boards reconnect elsewhere.
			context.AfterFunc(ctx, srv.EndWatches)
			deliveryv1.RegisterDeliveryServiceServer(d.GRPC, srv)
			return nil
		},
	})
}
