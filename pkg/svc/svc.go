// Package svc runs one Pizzashop service process: telemetry, the store, the
// bus, the gRPC server with health, a metrics endpoint and background workers,
// started in order and stopped in reverse when the context ends.
package svc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/app"
	"github.com/pizzashop/pizzashop/pkg/auth"
	"github.com/pizzashop/pizzashop/pkg/config"
	"github.com/pizzashop/pizzashop/pkg/grpcx"
	"github.com/pizzashop/pizzashop/pkg/mongox"
	"github.com/pizzashop/pizzashop/pkg/natsx"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	"github.com/pizzashop/pizzashop/pkg/telemetry"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Common is the configuration every service shares. Fields left empty by the
// environment take the service's Defaults, except METRICS_ADDR: set to
// nothing, it turns the metrics endpoint off.
type Common struct {
	GRPCAddr        string        `env:"GRPC_ADDR"`
	MetricsAddr     string        `env:"METRICS_ADDR"`
	MongoURI        string        `env:"MONGO_URI" default:"mongodb://127.0.0.1:27017/"`
	MongoDatabase   string        `env:"MONGO_DATABASE"`
	MongoMaxPool    uint64        `env:"MONGO_MAX_POOL" default:"16"`
	MongoTimeout    time.Duration `env:"MONGO_TIMEOUT" default:"3s"`
	NATSURL         string        `env:"NATS_URL" default:"nats://127.0.0.1:4222"`
	StreamReplicas  int           `env:"NATS_STREAM_REPLICAS" default:"1"`
	AuthSecret      string        `env:"AUTH_SECRET" secret:"true"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" default:"10s"`
	HealthInterval  time.Duration `env:"HEALTH_INTERVAL" default:"2s"`
	StreamKeepAlive time.Duration `env:"STREAM_KEEPALIVE" default:"15s"`
	// OutboxScan is how often the outbox relay looks for the marks of
	// relays that stopped moving (a replica crashed and never came back)
	// and publishes what documents written since hold: a range query on
	// outbox_at, indexed on MongoDB, a read of every document on the
	// embedded store, and only when such a mark exists.
	OutboxScan time.Duration `env:"OUTBOX_SCAN_INTERVAL" default:"5m"`
}

// Defaults are a service's own values for the Common fields that differ
// between services.
type Defaults struct {
	GRPCAddr      string
	MetricsAddr   string
	MongoDatabase string
}

func (c *Common) applyDefaults(d Defaults, lookup func(string) (string, bool)) {
	if c.GRPCAddr == "" {
		c.GRPCAddr = d.GRPCAddr
	}
	// METRICS_ADDR set to nothing turns the metrics endpoint off; only an
	// unset one takes the service's default.
	if _, set := lookup("METRICS_ADDR"); c.MetricsAddr == "" && !set {
		c.MetricsAddr = d.MetricsAddr
	}
	if c.MongoDatabase == "" {
		c.MongoDatabase = d.MongoDatabase
	}
}

// Service describes one service to Run.
type Service struct {
	Name     string
	Defaults Defaults
	// Config points to the service's configuration struct. It must embed
	// Common (by value) and is filled from the environment by Run.
	Config any
	// Common points to the Common embedded in Config.
	Common *Common
	// Policy is the access rule of every gRPC method the service serves.
	Policy auth.Policy
	// Streams are the JetStream streams the service owns; Run declares them.
	Streams []jetstream.StreamConfig
	// Setup registers gRPC services and starts workers with Deps.Go.
	Setup func(ctx context.Context, d *Deps) error
}

// Deps are what Setup builds the service from.
type Deps struct {
	Log    *slog.Logger
	Mongo  *mongo.Client
	DB     *mongo.Database
	Bus    *natsx.Bus
	Signer *auth.Signer
	GRPC   *grpcx.Server

	workers    []worker
	relays     []worker
	outboxScan time.Duration
	instance   string
}

type worker struct {
	name string
	run  func(ctx context.Context) error
}

// Go registers a worker (an outbox relay, a consumer) that runs from the
// moment the gRPC server starts until after it has stopped, so work
// accepted by the last calls is still handed on.
func (d *Deps) Go(name string, run func(ctx context.Context) error) {
	d.workers = append(d.workers, worker{name, run})
}

// Listen calls fn with the data of every message on subject, from now until
// the service stops. It is for caches every replica keeps fresh from
// events (the menu, prices, the kitchen queue): plain NATS, no ack, as a
// missed message is healed by the cache's own refresh.
func (d *Deps) Listen(subject string, fn func(data []byte)) error {
	sub, err := d.Bus.Conn.Subscribe(subject, func(m *nats.Msg) { fn(m.Data) })
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	d.Go("listener on "+subject, func(ctx context.Context) error {
		<-ctx.Done()
		return sub.Unsubscribe()
	})
	return nil
}

// Relay starts the outbox relay of colls as a worker and returns it as the
// Tracker a store tells of its writes. Its mark is kept under the
// instance's name, so a process that restarts in the same place (host and
// gRPC address) resumes at once what its last run left.
func (d *Deps) Relay(colls []*mongo.Collection, opts ...outbox.Option) outbox.Tracker {
	opts = append([]outbox.Option{outbox.WithInterval(d.outboxScan), outbox.WithName(d.instance)}, opts...)
	r := outbox.NewRelay(d.Bus, d.Log, colls, opts...)
	d.relays = append(d.relays, worker{"outbox relay", r.Run})
	return r
}

// Run runs s until ctx ends.
func Run(ctx context.Context, log *slog.Logger, s Service) error {
	if err := config.Load(s.Config); err != nil {
		return err
	}
	c := s.Common
	c.applyDefaults(s.Defaults, os.LookupEnv)
	log.Info("starting", "version", app.Version, "config", config.LogValue(s.Config))

	tel, err := telemetry.Setup(ctx, s.Name, app.Version)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("telemetry shutdown", "err", err)
		}
	}()

	// Outside a local demo (PIZZASHOP_DEMO=true, which `make run` sets) no
	// service signs with the public development key or a placeholder.
	secret, err := config.Secret("AUTH_SECRET", c.AuthSecret, auth.DevSecret)
	if err != nil {
		return err
	}
	if c.AuthSecret == "" {
		log.Warn("AUTH_SECRET is not set; using the public development key, as this is a local demo (PIZZASHOP_DEMO=true).")
	}
	signer, err := auth.NewSigner(secret)
	if err != nil {
		return err
	}

	for name, u := range map[string]string{"NATS_URL": c.NATSURL, "MONGO_URI": c.MongoURI} {
		if err := config.URLSecrets(name, u); err != nil {
			return err
		}
	}

	mc, err := mongox.Connect(c.MongoURI, c.MongoMaxPool, mongox.WithTimeout(c.MongoTimeout))
	if err != nil {
		return err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = mc.Disconnect(dctx)
	}()

	bus, err := natsx.Connect(c.NATSURL, s.Name, log)
	if err != nil {
		return err
	}
	defer bus.Close()
	bus.Replicas = max(1, c.StreamReplicas)
	for _, st := range s.Streams {
		st.Replicas = bus.Replicas
		if err := bus.EnsureStream(ctx, st); err != nil {
			return err
		}
	}

	d := &Deps{Log: log, Mongo: mc, DB: mc.Database(c.MongoDatabase), Bus: bus, Signer: signer,
		GRPC: grpcx.NewServer(log, signer, s.Policy), outboxScan: c.OutboxScan,
		instance: instanceName(s.Name, c.GRPCAddr)}
	if err := s.Setup(ctx, d); err != nil {
		return fmt.Errorf("setup: %w", err)
	}

	stopMetrics := serveMetrics(log, c.MetricsAddr, tel.Metrics)
	defer stopMetrics()

	// Workers outlive the gRPC server: they stop after it, and the outbox
	// relays stop last, so the events of the final calls and of the last
	// messages consumed still go out before the process ends.
	werr := make(chan error, len(d.workers)+len(d.relays))
	start := func(ctx context.Context, ws []worker, wg *sync.WaitGroup) {
		for _, w := range ws {
			wg.Go(func() {
				if err := w.run(ctx); err != nil && !errors.Is(err, context.Canceled) {
					werr <- fmt.Errorf("%s: %w", w.name, err)
				}
			})
		}
	}
	rctx, stopRelays := context.WithCancel(context.WithoutCancel(ctx))
	var relays sync.WaitGroup
	start(rctx, d.relays, &relays)
	defer func() { stopRelays(); relays.Wait() }()
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	start(wctx, d.workers, &wg)
	defer func() { stopWorkers(); wg.Wait() }()

	hctx, stopHealth := context.WithCancel(ctx)
	defer stopHealth()
	go d.GRPC.WatchHealth(hctx, c.HealthInterval, serviceNames(d), mongox.Ping(mc), bus.Ping)

	// A failed worker stops the process with its error, so that it exits
	// with a failure status and whatever supervises it starts it again.
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case err := <-werr:
			log.Error("worker failed; shutting down", "err", err)
			cancel(fmt.Errorf("worker failed: %w", err))
		case <-sctx.Done():
		}
	}()
	if err := d.GRPC.Run(sctx, c.GRPCAddr, c.ShutdownTimeout); err != nil {
		return err
	}
	if ctx.Err() == nil {
		return context.Cause(sctx)
	}
	return nil
}

// instanceName names this process by its service, host and gRPC address:
// the same after a restart in the same place, different between replicas.
func instanceName(service, grpcAddr string) string {
	host, err := os.Hostname()
	if err != nil {
		host = "localhost"
	}
	return service + "@" + host + "/" + grpcAddr
}

func serviceNames(d *Deps) []string {
	var names []string
	for name := range d.GRPC.GetServiceInfo() {
		names = append(names, name)
	}
	return names
}

func serveMetrics(log *slog.Logger, addr string, h http.Handler) (stop func()) {
	if addr == "" {
		return func() {}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	app.HandleProfiler(mux)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "addr", addr, "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}
