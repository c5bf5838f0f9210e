// Command gateway is the shop's REST edge: it serves the storefront API under
// /v1 by forwarding to the menu, order, kitchen and delivery gRPC services,
// plus the OpenAPI document, probes and metrics.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/pizzashop/pizzashop/gateway/internal/edge"
	"github.com/pizzashop/pizzashop/gateway/openapi"
	"github.com/pizzashop/pizzashop/pkg/app"
	"github.com/pizzashop/pizzashop/pkg/auth"
	"github.com/pizzashop/pizzashop/pkg/config"
	"github.com/pizzashop/pizzashop/pkg/telemetry"
)

// Config is the gateway's configuration; the defaults fit `make run`.
type Config struct {
	HTTPAddr        string        `env:"HTTP_ADDR" default:"127.0.0.1:8080"`
	MenuAddr        string        `env:"MENU_ADDR" default:"127.0.0.1:9091"`
	OrderAddr       string        `env:"ORDER_ADDR" default:"127.0.0.1:9092"`
	KitchenAddr     string        `env:"KITCHEN_ADDR" default:"127.0.0.1:9093"`
	DeliveryAddr    string        `env:"DELIVERY_ADDR" default:"127.0.0.1:9094"`
	MaxBodyBytes    int64         `env:"MAX_BODY_BYTES" default:"65536"`
	AnonBodyBytes   int64         `env:"ANONYMOUS_BODY_BYTES" default:"4096"`
	BodyTimeout     time.Duration `env:"BODY_TIMEOUT" default:"10s"`
	StreamTimeout   time.Duration `env:"STREAM_WRITE_TIMEOUT" default:"30s"`
	MaxConns        int           `env:"MAX_CONNS" default:"2048"`
	AuthSecret      string        `env:"AUTH_SECRET" secret:"true"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" default:"10s"`
	ShutdownDelay   time.Duration `env:"SHUTDOWN_DELAY" default:"0s"`
	ReadyTimeout    time.Duration `env:"READY_TIMEOUT" default:"2s"`
}

func main() { app.Main("gateway", run) }

func run(ctx context.Context, log *slog.Logger) (err error) {
	var cfg Config
	if err := config.Load(&cfg); err != nil {
		return err
	}
	if cfg.MaxBodyBytes <= 0 {
		return fmt.Errorf("config: MAX_BODY_BYTES=%d, want > 0", cfg.MaxBodyBytes)
	}
	log.Info("starting", "version", app.Version, "config", config.LogValue(&cfg))

	tel, err := telemetry.Setup(ctx, "gateway", app.Version)
	if err != nil {
		return err
	}
	defer func() {
		// The signal context is done by now; flushing needs its own.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = errors.Join(err, tel.Shutdown(sctx))
	}()

	conns, err := dialUpstreams(map[string]string{
		"menu": cfg.MenuAddr, "order": cfg.OrderAddr, "kitchen": cfg.KitchenAddr, "delivery": cfg.DeliveryAddr,
	})
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer func() {
		for name, c := range conns {
			if cerr := c.Close(); cerr != nil {
				log.Warn("close upstream connection", "upstream", name, "err", cerr)
			}
		}
	}()

	// With the signing key the gateway checks credentials before it reads a
	// body; the services check them again, and decide what each role may
	// do. Without it (unset outside a local demo) bodies are read first.
	var signer *auth.Signer
	secret, err := config.Secret("AUTH_SECRET", cfg.AuthSecret, auth.DevSecret)
	switch {
	case err == nil:
		if signer, err = auth.NewSigner(secret); err != nil {
			return err
		}
	case cfg.AuthSecret == "" && errors.Is(err, config.ErrUnsafeSecret):
		log.Warn("AUTH_SECRET is not set: request bodies are read before credentials are checked. Give the gateway the services' AUTH_SECRET.")
	default:
		return err
	}

	gw, err := edge.New(edge.Options{
		Menu:         conns["menu"],
		Order:        conns["order"],
		Kitchen:      conns["kitchen"],
		Delivery:     conns["delivery"],
		Logger:       log,
		MaxBodyBytes: cfg.MaxBodyBytes,
		OpenAPI:      openapi.Spec,
		AsyncAPI:     openapi.Events,
		Metrics:      tel.Metrics,
		ReadyTimeout: cfg.ReadyTimeout,

		Signer:             signer,
		AnonymousBodyBytes: cfg.AnonBodyBytes,
		BodyTimeout:        cfg.BodyTimeout,
		StreamWriteTimeout: cfg.StreamTimeout,
	})
	if err != nil {
		return err
	}

	lis, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", cfg.HTTPAddr, err)
	}
	// At most MaxConns connections; net/http's own error answers as JSON.
	lis = edge.Listen(lis, cfg.MaxConns)
	srv := &http.Server{
		Handler:           app.WithProfiler(gw),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// No ReadTimeout or WriteTimeout: net/http applies them to the whole
		// exchange, so either would cut live streams off. Bodies have their
		// own deadline (BODY_TIMEOUT, see edge.Options.BodyTimeout), and
		// each write to a live stream its own (STREAM_WRITE_TIMEOUT).
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	log.Info("http server listening", "addr", lis.Addr().String())

	select {
	case err := <-errc:
		return fmt.Errorf("http serve: %w", err)
	case <-ctx.Done():
	}

	if cfg.ShutdownDelay > 0 {
		// Not ready, but still serving: a load balancer that polls
		// /readyz stops sending new requests before the listener closes,
		// instead of seeing refused connections.
		log.Info("not ready; serving on until the listener closes", "delay", cfg.ShutdownDelay.String())
		gw.EndReadiness()
		select {
		case <-time.After(cfg.ShutdownDelay):
		case err := <-errc:
			return fmt.Errorf("http serve: %w", err)
		}
	}
	log.Info("shutting down", "grace", cfg.ShutdownTimeout.String())
	gw.BeginShutdown()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("graceful shutdown timed out; closing remaining connections", "err", err)
		_ = srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http serve: %w", err)
	}
	return nil
}
