package edge

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Bounds on what one connection or request may hold.
const (
	// DefaultAnonymousBodyBytes bounds the body of a request without a
	// valid credential: the public calls (pricing, registering) take a few
	// hundred bytes.
	DefaultAnonymousBodyBytes = 4 << 10
	// DefaultBodyTimeout is how long a client may take to send a body.
	DefaultBodyTimeout = 10 * time.Second
	// DefaultStreamWriteTimeout is how long one write to a live stream
	// may wait for a client to read. Streams send a keep-alive every 15s,
	// so a client reading normally never comes near it.
	DefaultStreamWriteTimeout = 30 * time.Second
	// DefaultMaxConns bounds the gateway's open connections.
	DefaultMaxConns = 2048
)

// limitBody reads every request body before anything else sees it, within
// its limits:
//
//   - A request that carries an Authorization header must carry a valid
//     credential (when the gateway has the signing key): an invalid one is
//     refused with 401 before a byte of its body is read.
//   - A request without a valid credential may send DefaultAnonymousBodyBytes,
//     one with a valid credential MaxBodyBytes. A declared Content-Length
//     over the limit is refused before reading; a chunked body is cut off
//     at the limit. Either way: 413.
//   - The whole body must arrive within the body timeout, or the request
//     gets 408 and its connection is closed.
//
// Requests without a body (every GET, live streams included) pass
// untouched and never have a read deadline.
func (h *Handler) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		limit := h.maxBody
		if h.signer != nil {
			authz := r.Header.Get("Authorization")
			scheme, token, _ := strings.Cut(authz, " ")
			bearer := strings.EqualFold(scheme, "Bearer")
			switch {
			case authz == "" || publicBody[r.URL.Path]:
				// Public calls ignore a stale or bad credential (pkg/auth):
				// a browser holding an expired token can still price a pizza
				// and sign in again. Their bodies get the anonymous limit.
				limit = min(limit, h.anonBody)
			case !bearer:
				h.refuseBody(w, http.StatusUnauthorized, status.New(codes.Unauthenticated, `invalid credential: send "Authorization: Bearer <token>"`))
				return
			default:
				if _, err := h.signer.Verify(strings.TrimSpace(token)); err != nil {
					h.refuseBody(w, http.StatusUnauthorized, status.Newf(codes.Unauthenticated, "invalid credential: %v", err))
					return
				}
			}
		}
		if r.ContentLength > limit {
			h.refuseBody(w, http.StatusRequestEntityTooLarge, tooLargeStatus(limit))
			return
		}
		rc := http.NewResponseController(w)
		// Not every writer supports deadlines (tests' recorders); then the
		// server's own timeouts are all there is.
		deadline := rc.SetReadDeadline(time.Now().Add(h.bodyTimeout)) == nil
		body, err := io.ReadAll(http.MaxBytesReader(innermost(w), r.Body, limit))
		if err != nil {
			// The read deadline stays as it is: a connection that timed
			// out fails its next read and is closed, rather than the server
			// draining what is left of a slow body.
			switch _, over := errors.AsType[*http.MaxBytesError](err); {
			case over:
				h.refuseBody(w, http.StatusRequestEntityTooLarge, tooLargeStatus(limit))
			case errors.Is(err, os.ErrDeadlineExceeded):
				h.refuseBody(w, http.StatusRequestTimeout, status.Newf(codes.DeadlineExceeded, "request body not received within %s", h.bodyTimeout))
			default: // the client went away
				h.refuseBody(w, http.StatusBadRequest, status.New(codes.InvalidArgument, "request body could not be read"))
			}
			return
		}
		if deadline {
			_ = rc.SetReadDeadline(time.Time{})
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}

// publicBody are the routes with a body that need no credential.
var publicBody = map[string]bool{"/v1/menu:price": true, "/v1/customers": true, "/v1/customers:signIn": true}

// refuseBody answers a request whose body was not read, or not all of it,
// and closes the connection: what is left of the body would be read as the
// next request.
func (h *Handler) refuseBody(w http.ResponseWriter, httpStatus int, st *status.Status) {
	w.Header().Set("Connection", "close")
	h.writeStatus(w, httpStatus, st)
}

func tooLargeStatus(limit int64) *status.Status {
	return status.New(codes.InvalidArgument, "request body is larger than "+strconv.FormatInt(limit, 10)+" bytes")
}

// tooLarge reports whether err is the body limit.
func tooLarge(err error) bool {
	_, ok := errors.AsType[*http.MaxBytesError](err)
	return ok
}

// innermost unwraps middleware response writers down to the server's own.
func innermost(w http.ResponseWriter) http.ResponseWriter {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}

// Listen wraps lis for the gateway's http.Server: at most maxConns
// connections are open at once, a connection over the cap is answered 503
// and closed at once, and the server's own error answers (malformed
// requests, bad header bytes, headers too large) are JSON google.rpc.Status
// like every other error.
func Listen(lis net.Listener, maxConns int) net.Listener {
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	return &capListener{Listener: lis, slots: make(chan struct{}, maxConns)}
}

type capListener struct {
	net.Listener
	slots chan struct{}
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &edgeConn{Conn: c, release: func() { <-l.slots }}, nil
		default:
			go refuseConn(c)
		}
	}
}

// refuseConn answers a connection over the cap with 503 and closes it.
func refuseConn(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(time.Second))
	_, _ = c.Write(rawResponse(http.StatusServiceUnavailable,
		status.New(codes.Unavailable, "too many connections; try again shortly"), "Retry-After: 1\r\n"))
	_ = c.Close()
}

// edgeConn frees its slot when closed and rewrites the server's plain-text
// error answers (see jsonServerError).
type edgeConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *edgeConn) Write(p []byte) (int, error) {
	if b, ok := jsonServerError(p); ok {
		if _, err := c.Conn.Write(b); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *edgeConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
