package grpcx

import (
	"context"
	"sync"

	"github.com/pizzashop/pizzashop/pkg/auth"
	"github.com/pizzashop/pizzashop/pkg/cardscan"
	"github.com/pizzashop/pizzashop/pkg/errs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Limits on what one request may cost a server.
const (
	// MaxRequestBytes bounds a request message on the wire. The largest
	// legitimate request, an order with a full address and note, is under
	// 5 KiB; the cap keeps what one decode may allocate to well under a
	// megabyte. Servers that need more say so with WithMaxRequestBytes.
	MaxRequestBytes = 16 << 10
	// DefaultStreamsPerCaller bounds the live streams one caller (a token's
	// subject, or an address for anonymous callers) may hold open on one
	// server: a kitchen's few displays, a customer's few orders.
	DefaultStreamsPerCaller = 16
	// DefaultStreams bounds the live streams of one server in total.
	DefaultStreams = 1000
	// maxKeyLen bounds the Idempotency-Key and X-Request-Id metadata.
	maxKeyLen = 200
)

// Metadata keys checked on every call, with the header names clients know
// them by.
var checkedMetadata = []struct{ key, header string }{
	{"idempotency-key", "Idempotency-Key"},
	{"x-request-id", "X-Request-Id"},
}

// checkRequest refuses a request message or checked metadata holding a card
// number, and metadata values outside printable ASCII.
func checkRequest(ctx context.Context, req any) error {
	for _, c := range checkedMetadata {
		// One key's values, not metadata.FromIncomingContext's copy of all.
		for _, v := range metadata.ValueFromIncomingContext(ctx, c.key) {
			if err := CheckHeaderValue(c.header, v); err != nil {
				return err
			}
		}
	}
	if m, ok := req.(proto.Message); ok {
		if field, found := cardscan.Find(m); found {
			return errs.Invalid(field, cardscan.Refusal)
		}
	}
	return nil
}

// CheckHeaderValue checks an identifier sent as a header (Idempotency-Key,
// X-Request-Id): 1 to 200 printable ASCII characters without spaces, and no
// card number. The error names the header.
func CheckHeaderValue(header, v string) error {
	if v == "" || len(v) > maxKeyLen {
		return errs.Invalid(header, "must be 1 to %d characters", maxKeyLen)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x21 || v[i] > 0x7e {
			return errs.Invalid(header, "must be printable ASCII without spaces")
		}
	}
	if cardscan.Contains(v) {
		return errs.Invalid(header, cardscan.Refusal)
	}
	return nil
}

func unaryCheck(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := checkRequest(ctx, req); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func streamCheck(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := checkRequest(ss.Context(), nil); err != nil {
		return err
	}
	return h(srv, &checkedStream{ss})
}

// checkedStream scans every message a client streams in.
type checkedStream struct{ grpc.ServerStream }

func (s *checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if pm, ok := m.(proto.Message); ok {
		if field, found := cardscan.Find(pm); found {
			return errs.Invalid(field, cardscan.Refusal) // mapped by streamErrors
		}
	}
	return nil
}

// streamLimiter bounds live streams per caller and in total.
type streamLimiter struct {
	perCaller, total int

	mu     sync.Mutex
	open   map[string]int
	opened int
}

func newStreamLimiter(perCaller, total int) *streamLimiter {
	return &streamLimiter{perCaller: perCaller, total: total, open: map[string]int{}}
}

// callerKey names who holds a stream: the token's subject, or the address
// of an anonymous caller.
func callerKey(ctx context.Context) string {
	if c, ok := auth.FromContext(ctx); ok {
		return "sub:" + c.Subject
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return "addr:" + p.Addr.String()
	}
	return "anonymous"
}

func (l *streamLimiter) acquire(key string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key] >= l.perCaller {
		return status.Errorf(codes.ResourceExhausted, "too many live streams: at most %d per caller; close one first", l.perCaller)
	}
	if l.opened >= l.total {
		return status.Error(codes.ResourceExhausted, "too many live streams on this server; try again shortly")
	}
	l.open[key]++
	l.opened++
	return nil
}

func (l *streamLimiter) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key]--; l.open[key] <= 0 {
		delete(l.open, key)
	}
	l.opened--
}

// intercept runs after the credential check, so the caller is known.
func (l *streamLimiter) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if info.FullMethod == "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo" ||
		info.FullMethod == "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo" {
		return h(srv, ss) // tools, short-lived
	}
	key := callerKey(ss.Context())
	if err := l.acquire(key); err != nil {
		return err
	}
	defer l.release(key)
	return h(srv, ss)
}

// Option configures NewServer beyond grpc.ServerOption.
type Option interface{ apply(*serverConfig) }

type serverConfig struct {
	maxRequest       int
	streamsPerCaller int
	streams          int
	grpcOpts         []grpc.ServerOption
}

type optionFunc func(*serverConfig)

func (f optionFunc) apply(c *serverConfig) { f(c) }

// WithMaxRequestBytes raises or lowers MaxRequestBytes for one server.
func WithMaxRequestBytes(n int) Option {
	return optionFunc(func(c *serverConfig) { c.maxRequest = n })
}

// WithStreamLimits sets the live streams allowed per caller and in total.
func WithStreamLimits(perCaller, total int) Option {
	return optionFunc(func(c *serverConfig) { c.streamsPerCaller, c.streams = perCaller, total })
}

// WithGRPCOptions passes options through to grpc.NewServer.
func WithGRPCOptions(opts ...grpc.ServerOption) Option {
	return optionFunc(func(c *serverConfig) { c.grpcOpts = append(c.grpcOpts, opts...) })
}
