// Package grpcx is the gRPC kit every Pizzashop service is built on: a server
// with health, reflection, OpenTelemetry, panic recovery, credential checks,
// error-to-code mapping, card number checks, request size and live stream
// limits, graceful shutdown, and a client dialer with the same telemetry.
package grpcx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"time"

	"github.com/pizzashop/pizzashop/pkg/auth"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// MaxMessageBytes bounds every response message, and what a client of the
// shop sends. Requests a server accepts are bounded by MaxRequestBytes.
const MaxMessageBytes = 1 << 20

// streamWorkers is how many goroutines a server keeps to run calls on.
// A call on a fresh goroutine grows its stack, copying it each time, as it
// goes down through the interceptors and the store's driver; a kept one
// has grown already. Calls beyond this many at once (live streams hold a
// worker for as long as they last) get a fresh goroutine, as without them.
const streamWorkers = 16

// maxConnectionAge is how long a client connection lives before the server
// asks the client (GOAWAY) to open a new one; calls under way finish on the
// old one. A client balancing over a DNS name looks the name up again when
// a connection closes, so this is how soon it finds a replica that started
// after it last looked. Up to 10% is added or taken at random, so the
// connections of one client do not all close at once.
var maxConnectionAge = 5 * time.Minute

// Server is a gRPC server with its health service.
type Server struct {
	*grpc.Server
	Health *health.Server
	log    *slog.Logger
	// stopping is closed when shutdown begins; it ends server streams.
	stopping chan struct{}
}

// NewServer returns a server whose every call is traced, recovered from
// panics, authorized against policy, checked for card numbers (request
// fields and the Idempotency-Key and X-Request-Id metadata), bounded in
// size and, for live streams, in number per caller and in total, and has
// its errors mapped to codes. Register services on it, then call Run.
func NewServer(log *slog.Logger, signer *auth.Signer, policy auth.Policy, opts ...Option) *Server {
	cfg := serverConfig{maxRequest: MaxRequestBytes, streamsPerCaller: DefaultStreamsPerCaller, streams: DefaultStreams}
	for _, o := range opts {
		o.apply(&cfg)
	}
	authUnary, authStream := auth.Interceptors(signer, policy)
	limiter := newStreamLimiter(cfg.streamsPerCaller, cfg.streams)
	s := &Server{log: log, Health: health.NewServer(), stopping: make(chan struct{})}
	base := []grpc.ServerOption{
		grpc.StatsHandler(otelgrpc.NewServerHandler()),
		grpc.NumStreamWorkers(streamWorkers),
		grpc.MaxRecvMsgSize(cfg.maxRequest),
		grpc.MaxSendMsgSize(4 * MaxMessageBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute, MaxConnectionAge: maxConnectionAge, Time: time.Minute}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(s.unaryErrors, authUnary, unaryCheck),
		grpc.ChainStreamInterceptor(s.streamErrors, authStream, limiter.intercept, streamCheck),
	}
	s.Server = grpc.NewServer(append(base, cfg.grpcOpts...)...)
	healthpb.RegisterHealthServer(s.Server, s.Health)
	// Until shutdown begins (Health.Shutdown), for balancing clients.
	s.Health.SetServingStatus(ServingHealth, healthpb.HealthCheckResponse_SERVING)
	reflection.Register(s.Server)
	return s
}

// unaryErrors recovers panics and maps returned errors to status codes. It is
// the outermost interceptor, so it also sees errors from the auth check.
func (s *Server) unaryErrors(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.ErrorContext(ctx, "panic in handler", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			resp, err = nil, status.Error(codes.Internal, "internal error")
		}
	}()
	resp, err = h(ctx, req)
	err = ToStatus(ctx, s.log, info.FullMethod, err)
	if status.Code(err) == codes.Unavailable {
		// This replica answered: what it needs is down, and another try
		// would wait on the same store or service. A negative pushback
		// tells a client's retry policy not to try again; a replica that is
		// itself gone sends no trailer, and its calls are retried.
		_ = grpc.SetTrailer(ctx, metadata.Pairs("grpc-retry-pushback-ms", "-1"))
	}
	return resp, err
}

func (s *Server) streamErrors(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.ErrorContext(ss.Context(), "panic in handler", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = status.Error(codes.Internal, "internal error")
		}
	}()
	// Live streams never end on their own; end them when shutdown begins so
	// that GracefulStop does not wait out its grace period on them. Clients
	// get UNAVAILABLE and reconnect, to another replica or after the restart.
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	go func() {
		select {
		case <-s.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	err = h(srv, &stream{ServerStream: ss, ctx: ctx})
	select {
	case <-s.stopping:
		return status.Error(codes.Unavailable, "server shutting down; reconnect")
	default:
	}
	return ToStatus(ss.Context(), s.log, info.FullMethod, err)
}

type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }

// Run serves on addr until ctx is done, then reports NOT_SERVING, lets
// in-flight calls finish for up to grace, and stops.
func (s *Server) Run(ctx context.Context, addr string, grace time.Duration) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("grpc listen %s: %w", addr, err)
	}
	return s.Serve(ctx, lis, grace)
}

// Serve is Run on an existing listener.
func (s *Server) Serve(ctx context.Context, lis net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- s.Server.Serve(lis) }()
	s.log.InfoContext(ctx, "grpc server listening", "addr", lis.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("grpc serve: %w", err)
	case <-ctx.Done():
	}
	s.Health.Shutdown()
	close(s.stopping)
	done := make(chan struct{})
	go func() { s.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		s.log.Warn("graceful stop timed out; closing remaining calls", "grace", grace)
		s.Stop()
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// Check is a dependency probe used by WatchHealth.
type Check func(ctx context.Context) error

// WatchHealth runs checks every interval and reports SERVING for the whole
// server and for each named service only while all of them pass. It returns
// when ctx is done.
func (s *Server) WatchHealth(ctx context.Context, interval time.Duration, services []string, checks ...Check) {
	set := func(st healthpb.HealthCheckResponse_ServingStatus) {
		s.Health.SetServingStatus("", st)
		for _, name := range services {
			s.Health.SetServingStatus(name, st)
		}
	}
	last := healthpb.HealthCheckResponse_UNKNOWN
	probe := func() {
		cctx, cancel := context.WithTimeout(ctx, interval)
		defer cancel()
		st := healthpb.HealthCheckResponse_SERVING
		for _, c := range checks {
			if err := c(cctx); err != nil {
				st = healthpb.HealthCheckResponse_NOT_SERVING
				if last != st && ctx.Err() == nil {
					s.log.Warn("dependency check failed; reporting NOT_SERVING", "err", err)
				}
				break
			}
		}
		if st != last && ctx.Err() == nil {
			set(st)
			if st == healthpb.HealthCheckResponse_SERVING && last != healthpb.HealthCheckResponse_UNKNOWN {
				s.log.Info("dependencies back; reporting SERVING")
			}
			last = st
		}
	}
	probe()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			probe()
		}
	}
}

// Dial returns a client connection to target with tracing and the shop's
// message size limits. The connection is lazy: it connects on first use and
// reconnects on its own.
func Dial(target string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(insecureCreds()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(4*MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: time.Minute, PermitWithoutStream: true}),
	}
	conn, err := grpc.NewClient(target, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("grpc dial %s: %w", target, err)
	}
	return conn, nil
}
