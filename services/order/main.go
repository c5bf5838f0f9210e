// Command order runs Pizzashop ordering: customers register, place one pizza
// per order, follow it live and cancel it while the kitchen allows. Every
// change is published through a transactional outbox.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/app"
	"github.com/pizzashop/pizzashop/pkg/auth"
	"github.com/pizzashop/pizzashop/pkg/grpcx"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	"github.com/pizzashop/pizzashop/pkg/svc"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"github.com/pizzashop/pizzashop/services/order/internal/orderapi"
	"github.com/pizzashop/pizzashop/services/order/internal/orderdb"
)

// Config is the order service's configuration.
type Config struct {
	svc.Common
	MenuAddr    string        `env:"MENU_ADDR" default:"127.0.0.1:9091"`
	KitchenAddr string        `env:"KITCHEN_ADDR" default:"127.0.0.1:9093"`
	TokenTTL    time.Duration `env:"CUSTOMER_TOKEN_TTL" default:"720h"`
	CallTimeout time.Duration `env:"CALL_TIMEOUT" default:"3s"`
	// RelayDisabled stops publishing from the outbox; events pile up in the
	// documents until a process without it runs. For fault drills and tests.
	RelayDisabled bool `env:"OUTBOX_RELAY_DISABLED" default:"false"`
}

func main() { app.Main("order", run) }

func run(ctx context.Context, log *slog.Logger) error {
	var cfg Config
	return svc.Run(ctx, log, svc.Service{
		Name:     "order",
		Defaults: svc.Defaults{GRPCAddr: "127.0.0.1:9092", MetricsAddr: "127.0.0.1:9192", MongoDatabase: "pizzashop_order"},
		Config:   &cfg,
		Common:   &cfg.Common,
		Policy:   orderapi.Policy,
		Streams:  []jetstream.StreamConfig{orderapi.Stream},
		Setup: func(ctx context.Context, d *svc.Deps) error {
			store := orderdb.New(d.DB)
			if err := store.Init(ctx); err != nil {
				return err
			}
			// Round robin over the replicas of each (a comma-separated
			// list); only pricing, a read, is retried on another replica.
			menuConn, err := grpcx.DialBalanced(cfg.MenuAddr, []string{menuv1.MenuService_PriceOrder_FullMethodName},
				auth.DialServiceCredentials(d.Signer, "order"))
			if err != nil {
				return fmt.Errorf("MENU_ADDR: %w", err)
			}
			kitchenConn, err := grpcx.DialBalanced(cfg.KitchenAddr, nil, auth.DialServiceCredentials(d.Signer, "order"))
			if err != nil {
				return fmt.Errorf("KITCHEN_ADDR: %w", err)
			}
			d.Go("grpc clients", func(ctx context.Context) error {
				<-ctx.Done()
				_ = menuConn.Close()
				return kitchenConn.Close()
			})
			if cfg.RelayDisabled {
				d.Log.Warn("OUTBOX_RELAY_DISABLED is set: order events stay in the outbox until a relay runs")
			}
			store.Tracker = d.Relay(store.Collections(), outbox.WithPaused(cfg.RelayDisabled))
			srv := orderapi.NewServer(store, menuv1.NewMenuServiceClient(menuConn), kitchenv1.NewKitchenServiceClient(kitchenConn),
				d.Signer, orderapi.NATSWatcher{Conn: d.Bus.Conn}, d.Log,
				orderapi.Options{TokenTTL: cfg.TokenTTL, CallTimeout: cfg.CallTimeout, KeepAlive: cfg.StreamKeepAlive})
			// Every menu change empties the price cache, whichever menu
			// replica made it.
			if err := d.Listen(orderapi.MenuChangedSubject, srv.PricesChanged); err != nil {
				return err
			}
			d.Go("kitchen events consumer", func(ctx context.Context) error {
				return d.Bus.Consume(ctx, orderapi.KitchenConsumer, srv.HandleKitchen)
			})
			d.Go("delivery events consumer", func(ctx context.Context) error {
				return d.Bus.Consume(ctx, orderapi.DeliveryConsumer, srv.HandleDelivery)
			})
			orderv1.RegisterOrderServiceServer(d.GRPC, srv)
			orderv1.RegisterCustomerServiceServer(d.GRPC, srv)
			return nil
		},
	})
}
