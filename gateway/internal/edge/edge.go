// Package edge is the REST edge of the shop: grpc-gateway routes for every
// service, JSON google.rpc.Status errors, request body limits, menu caching,
// health and readiness probes, the OpenAPI document, metrics, the web pages
// (kitchen display, delivery board), tracing and an access log, all behind
// one http.Handler.
package edge

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	webfiles "github.com/pizzashop/pizzashop/gateway/web"
	"github.com/pizzashop/pizzashop/pkg/auth"
	"github.com/pizzashop/pizzashop/pkg/logging"
	"github.com/pizzashop/pizzashop/pkg/telemetry"
	deliveryv1 "github.com/pizzashop/pizzashop/proto/pizzashop/delivery/v1"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
)

// DefaultMaxBodyBytes bounds request bodies when Options.MaxBodyBytes is 0.
// The largest legitimate body, an order, is well under 2 KiB.
const DefaultMaxBodyBytes = 64 << 10

// Options configures New. A nil connection leaves that service's routes out
// (and out of readiness), which lets tests wire only what they exercise.
type Options struct {
	// Menu serves MenuService.
	Menu *grpc.ClientConn
	// Order serves OrderService and CustomerService.
	Order *grpc.ClientConn
	// Kitchen serves KitchenService.
	Kitchen *grpc.ClientConn
	// Delivery serves DeliveryService.
	Delivery *grpc.ClientConn

	// Logger receives the access log and upstream failures; nil discards.
	Logger *slog.Logger
	// MaxBodyBytes bounds every request body; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// OpenAPI is served at /openapi.json; empty leaves the route out.
	OpenAPI []byte
	// AsyncAPI, the event catalogue, is served at /asyncapi.json; empty
	// leaves the route out. The reference page /docs renders both.
	AsyncAPI []byte
	// Metrics is served at /metrics; nil leaves the route out.
	Metrics http.Handler
	// ReadyTimeout bounds one readiness probe of the upstreams; 0 means 2s.
	ReadyTimeout time.Duration
	// ReadyCacheTTL is how long a readiness result is reused, so that a storm
	// of probes does not fan out to every upstream; 0 means 1s.
	ReadyCacheTTL time.Duration
	// Signer checks credentials before a request body is read (see
	// limitBody); nil reads bodies up to MaxBodyBytes from anyone.
	Signer *auth.Signer
	// AnonymousBodyBytes bounds the body of a request without a valid
	// credential when Signer is set; 0 means DefaultAnonymousBodyBytes.
	AnonymousBodyBytes int64
	// BodyTimeout bounds the time to receive a body; 0 means
	// DefaultBodyTimeout.
	BodyTimeout time.Duration
	// StreamWriteTimeout bounds how long one write to a live stream may
	// block on a client that does not read; 0 means
	// DefaultStreamWriteTimeout.
	StreamWriteTimeout time.Duration
}

// setQueryParser installs strictQuery, once per process.
var setQueryParser sync.Once

// Handler is the gateway's HTTP handler.
type Handler struct {
	root    http.Handler
	log     *slog.Logger
	json    *jsonMarshaler
	maxBody int64
	ready   *readiness

	signer       *auth.Signer
	anonBody     int64
	bodyTimeout  time.Duration
	streamWrites time.Duration

	// draining ends open live streams once shutdown begins, so that
	// http.Server.Shutdown is not held up by them for the whole grace period.
	draining context.Context
	drain    context.CancelFunc
}

// New builds the gateway handler for the given upstreams.
func New(o Options) (*Handler, error) {
	if o.Logger == nil {
		o.Logger = logging.Discard()
	}
	if o.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("edge: MaxBodyBytes = %d, want >= 0", o.MaxBodyBytes)
	}
	if o.StreamWriteTimeout < 0 {
		return nil, fmt.Errorf("edge: StreamWriteTimeout = %s, want >= 0", o.StreamWriteTimeout)
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 2 * time.Second
	}
	if o.ReadyCacheTTL <= 0 {
		o.ReadyCacheTTL = time.Second
	}

	h := &Handler{
		log:         o.Logger,
		json:        newJSONMarshaler(),
		maxBody:     o.MaxBodyBytes,
		signer:      o.Signer,
		anonBody:    cmp.Or(o.AnonymousBodyBytes, DefaultAnonymousBodyBytes),
		bodyTimeout: cmp.Or(o.BodyTimeout, DefaultBodyTimeout),

		streamWrites: cmp.Or(o.StreamWriteTimeout, DefaultStreamWriteTimeout),
	}
	h.draining, h.drain = context.WithCancel(context.Background())

	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, h.json),
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		runtime.WithOutgoingHeaderMatcher(dropMetadata),
		runtime.WithOutgoingTrailerMatcher(dropMetadata),
		runtime.WithErrorHandler(h.serveError),
		runtime.WithStreamErrorHandler(h.streamError),
		runtime.WithRoutingErrorHandler(h.serveRoutingError),
		runtime.WithForwardResponseOption(menuETag),
		runtime.WithForwardResponseRewriter(skipEncoding),
		// A POST with a form body must not reach a GET route, and a header
		// must not change the method: each route has exactly one method.
		runtime.WithDisablePathLengthFallback(),
		runtime.WithDisableHTTPMethodOverride(),
		runtime.WithMiddlewares(nameRoute, conditionalGET, h.endStreamsOnShutdown),
	)
	// grpc-gateway keeps one query parser for the whole process, in a
	// variable its handlers read unlocked: set it once.
	setQueryParser.Do(func() { runtime.SetQueryParameterParser(&strictQuery{})(mux) })

	// Register*HandlerClient never fails today; the errors are kept in case
	// generated code starts to validate.
	ctx := context.Background()
	var (
		upstreams []upstream
		errs      []error
	)
	if c := o.Menu; c != nil {
		errs = append(errs, menuv1.RegisterMenuServiceHandlerClient(ctx, mux, menuv1.NewMenuServiceClient(c)))
		upstreams = append(upstreams, newUpstream("menu", c))
	}
	if c := o.Order; c != nil {
		errs = append(errs,
			orderv1.RegisterOrderServiceHandlerClient(ctx, mux, orderv1.NewOrderServiceClient(c)),
			orderv1.RegisterCustomerServiceHandlerClient(ctx, mux, orderv1.NewCustomerServiceClient(c)))
		upstreams = append(upstreams, newUpstream("order", c))
	}
	if c := o.Kitchen; c != nil {
		errs = append(errs, kitchenv1.RegisterKitchenServiceHandlerClient(ctx, mux, kitchenv1.NewKitchenServiceClient(c)))
		upstreams = append(upstreams, newUpstream("kitchen", c))
	}
	if c := o.Delivery; c != nil {
		errs = append(errs, deliveryv1.RegisterDeliveryServiceHandlerClient(ctx, mux, deliveryv1.NewDeliveryServiceClient(c)))
		upstreams = append(upstreams, newUpstream("delivery", c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("edge: register routes: %w", err)
	}
	h.ready = newReadiness(upstreams, o.ReadyTimeout, o.ReadyCacheTTL)

	// The gateway's own routes share the mux, so that unknown paths and wrong
	// methods get the same JSON 404 and 405 everywhere.
	type page struct {
		path  string
		serve http.HandlerFunc
	}
	pages := []page{
		{"/healthz", serveHealthz},
		{"/readyz", h.ready.serveHTTP},
	}
	web, err := webRoutes(webfiles.Files)
	if err != nil {
		return nil, err
	}
	for _, route := range slices.Sorted(maps.Keys(web)) {
		pages = append(pages, page{route, web[route]})
	}
	if len(o.OpenAPI) > 0 {
		pages = append(pages, page{"/openapi.json", serveDocument("openapi", o.OpenAPI)})
	}
	if len(o.AsyncAPI) > 0 {
		pages = append(pages, page{"/asyncapi.json", serveDocument("asyncapi", o.AsyncAPI)})
	}
	if o.Metrics != nil {
		pages = append(pages, page{"/metrics", o.Metrics.ServeHTTP})
	}
	for _, p := range pages {
		err := mux.HandlePath(http.MethodGet, p.path, func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
			p.serve(w, r)
		})
		if err != nil {
			return nil, fmt.Errorf("edge: route %s: %w", p.path, err)
		}
	}

	// Outermost first: tracing sees everything, the access log runs inside the
	// span so its lines carry trace_id, and the header checks and the body
	// limit apply before routing.
	var root http.Handler = mux
	root = h.limitBody(root)
	root = h.checkHeaders(root)
	root = h.checkQuery(root)
	root = secureHeaders(root)
	root = accessLog(h.log, root)
	root = restoreURL(root)
	// A caller's traceparent names the trace but does not decide whether
	// the shop records it: that is the shop's sampler's decision, as for a
	// request without one (see telemetry.EdgePropagator). The services
	// behind follow the gateway's decision.
	root = otelhttp.NewHandler(root, "gateway",
		otelhttp.WithPropagators(telemetry.EdgePropagator()),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }),
		otelhttp.WithFilter(func(r *http.Request) bool { return !isProbe(r.URL.Path) }),
	)
	root = redactURL(root)
	h.root = root
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.root.ServeHTTP(w, r) }

// BeginShutdown makes /readyz answer 503 from now on, so load balancers stop
// sending traffic, and ends every open live stream with an UNAVAILABLE error
// line, so clients reconnect elsewhere and http.Server.Shutdown only waits for
// unary calls. Call it before http.Server.Shutdown.
func (h *Handler) BeginShutdown() {
	h.EndReadiness()
	h.drain()
}

// EndReadiness makes /readyz answer 503 from now on while everything else
// is served as before: the start of a shutdown that gives load balancers
// time to notice (SHUTDOWN_DELAY) before BeginShutdown.
func (h *Handler) EndReadiness() { h.ready.shuttingDown.Store(true) }

// isProbe reports whether path is polled by machines often enough that
// tracing it would only add noise and its access log lines go to debug.
func isProbe(path string) bool {
	return path == "/healthz" || path == "/readyz" || path == "/metrics"
}

// nameRoute names the request's span "METHOD /route" and labels its metrics
// with http.route, once the mux has picked the route. It runs per route, so
// the name is computed once per route, on its first request.
func nameRoute(next runtime.HandlerFunc) runtime.HandlerFunc {
	var (
		once  sync.Once
		name  string
		route string
	)
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		once.Do(func() {
			pat, _ := runtime.HTTPPattern(r.Context())
			// The pattern prints a variable as {id=*}; the API documents {id}.
			route = strings.ReplaceAll(pat.String(), "=*}", "}")
			name = r.Method + " " + route
		})
		ctx := r.Context()
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			span.SetName(name)
			span.SetAttributes(semconv.HTTPRoute(route))
		}
		if l, ok := otelhttp.LabelerFromContext(ctx); ok {
			l.Add(semconv.HTTPRoute(route))
		}
		next(w, r, params)
	}
}

// endStreamsOnShutdown ties every live stream (a :watch route) to the
// draining context, so BeginShutdown ends it, and bounds each of its writes
// by the stream write timeout, so a client that stops reading cannot hold
// the handler and its upstream stream once the buffers between are full.
func (h *Handler) endStreamsOnShutdown(next runtime.HandlerFunc) runtime.HandlerFunc {
	var (
		once   sync.Once
		stream bool
	)
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		once.Do(func() {
			pat, _ := runtime.HTTPPattern(r.Context())
			stream = pat.Verb() == "watch"
		})
		if !stream {
			next(w, r, params)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stop := context.AfterFunc(h.draining, cancel)
		defer stop()
		sw := &streamWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: h.streamWrites}
		// net/http keeps a write deadline for the connection's next
		// request; the stream's must not outlive it.
		defer func() { _ = sw.rc.SetWriteDeadline(time.Time{}) }()
		next(sw, r.WithContext(ctx), params)
	}
}

// streamWriter gives every write and flush of a live stream a deadline.
// Between writes the connection may stay quiet for as long as the stream
// does: the deadline only bounds a write the client does not take.
type streamWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (w *streamWriter) Write(p []byte) (int, error) {
	// Writers without deadlines (tests' recorders) write unbounded.
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.ResponseWriter.Write(p)
}

// FlushError is what http.ResponseController.Flush calls, as grpc-gateway
// does after every message.
func (w *streamWriter) FlushError() error {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *streamWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// rawURLKey carries a request's own URL past otelhttp (see redactURL).
type rawURLKey struct{}

// redactURL hands otelhttp, which records every request's path as the
// url.path of its span, the path as the access log writes it (safePath):
// a card number or token a client put in a path must not reach the traces
// either. restoreURL, inside otelhttp, gives the handlers the real one.
func redactURL(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		safe := safePath(r.URL.Path)
		if safe == r.URL.Path {
			next.ServeHTTP(w, r)
			return
		}
		u := *r.URL
		u.Path, u.RawPath = safe, ""
		redacted := r.WithContext(context.WithValue(r.Context(), rawURLKey{}, r.URL))
		redacted.URL = &u
		next.ServeHTTP(w, redacted)
	})
}

// restoreURL undoes redactURL.
func restoreURL(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, ok := r.Context().Value(rawURLKey{}).(*url.URL); ok {
			r = r.WithContext(r.Context())
			r.URL = u
		}
		next.ServeHTTP(w, r)
	})
}

func serveHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}
