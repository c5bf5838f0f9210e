// Command kitchen runs the Pizzashop kitchen: it turns placed orders into
// tickets and lets kitchen staff work them.
package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/app"
	"github.com/pizzashop/pizzashop/pkg/svc"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	"github.com/pizzashop/pizzashop/services/kitchen/internal/kitchenapi"
	"github.com/pizzashop/pizzashop/services/kitchen/internal/kitchendb"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
)

// Config is the kitchen service's configuration.
type Config struct {
	svc.Common
	BakeTime time.Duration `env:"KITCHEN_BAKE_TIME" default:"8m"`
	Ovens    int           `env:"KITCHEN_OVENS" default:"2"`
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
			store := kitchendb.New(d.DB)
			if err := store.Init(ctx); err != nil {
				return err
			}
			store.Tracker = d.Relay(store.Collections())
			srv := kitchenapi.NewServer(store, d.Log, kitchenapi.Options{BakeTime: cfg.BakeTime, Ovens: cfg.Ovens, KeepAlive: cfg.StreamKeepAlive})
			// Every replica follows every ticket change, its own and the
			// others', to know the queue its estimates count and its
			// displays show.
			d.Bus.OnMissed(srv.QueueStale)
			if err := d.Listen("kitchen.*.*", srv.TicketChanged); err != nil {
				return err
			}
			d.Go("placed orders consumer", func(ctx context.Context) error {
				return d.Bus.Consume(ctx, kitchenapi.OrdersConsumer, srv.HandlePlaced)
			})
			// Read the queue now rather than at the first order or display:
			// on the embedded store that read goes through every ticket.
			d.Go("kitchen queue warm-up", func(ctx context.Context) error {
				if _, err := srv.QueueLength(ctx); err != nil && ctx.Err() == nil {
					d.Log.Warn("kitchen queue not read at start; the first order reads it", "err", err)
				}
				<-ctx.Done()
				return nil
			})
			kitchenv1.RegisterKitchenServiceServer(d.GRPC, srv)
			return observeQueue(srv)
		},
	})
}

// observeQueue reports the kitchen queue (queued and baking tickets) as the
// gauge pizzashop.kitchen.queue, from the length the server keeps.
func observeQueue(srv *kitchenapi.Server) error {
	_, err := otel.Meter("github.com/pizzashop/pizzashop/services/kitchen").Int64ObservableGauge("pizzashop.kitchen.queue",
		metric.WithDescription("Tickets queued or baking: the queue a new ticket joins"),
		metric.WithInt64Callback(func(ctx context.Context, o metric.Int64Observer) error {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			n, err := srv.QueueLength(cctx)
			if err != nil {
				return nil // the store is down: no value rather than a stale one
			}
			o.Observe(int64(n))
			return nil
		}))
	return err
}
