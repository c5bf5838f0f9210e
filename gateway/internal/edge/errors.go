package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pizzashop/pizzashop/pkg/cardscan"
	"github.com/pizzashop/pizzashop/pkg/grpcx"
)

// statusByReason is the one table of HTTP statuses that differ from
// grpc-gateway's code mapping (runtime.HTTPStatusFromCode). It is keyed by the
// reason of the google.rpc.ErrorInfo (domain grpcx.ErrorDomain) in the
// error's details; errors without a listed reason keep the code's status.
//
// Add a reason here only when clients must tell it apart by status alone.
var statusByReason = map[string]int{
	// Same Idempotency-Key, different body (gRPC FAILED_PRECONDITION). The
	// retry is not the request the key was first used for.
	"IDEMPOTENCY_KEY_REUSED": http.StatusUnprocessableEntity,
	// The transition is no longer possible because the resource moved on
	// (gRPC FAILED_PRECONDITION): the request was fine, the state conflicts.
	"ORDER_NOT_CANCELLABLE": http.StatusConflict, // the kitchen started baking
	"INVALID_TRANSITION":    http.StatusConflict,
}

// Messages that replace upstream detail which is no business of a client.
const (
	msgInternal    = "internal error"
	msgUnavailable = "service temporarily unavailable; try again shortly"
	msgShutdown    = "gateway is shutting down; reconnect"
)

// serveError is the mux's error handler: every failed call answers a JSON
// google.rpc.Status with the HTTP status of its code, or of its reason.
func (h *Handler) serveError(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, _ *http.Request, err error) {
	if tooLarge(err) {
		h.writeStatus(w, http.StatusRequestEntityTooLarge, tooLargeStatus(h.maxBody))
		return
	}
	httpStatus := 0
	if hse, ok := errors.AsType[*runtime.HTTPStatusError](err); ok {
		httpStatus, err = hse.HTTPStatus, hse.Err
	}
	st := withoutCard(h.public(ctx, status.Convert(err)))
	if st.Code() == codes.ResourceExhausted && strings.Contains(st.Message(), "message larger than max") {
		// A service's request size cap (grpcx.MaxRequestBytes), reached by
		// a body within the gateway's own limit.
		httpStatus = http.StatusRequestEntityTooLarge
		st = status.New(codes.InvalidArgument, "request is too large")
	}
	if httpStatus == 0 {
		httpStatus = httpStatusOf(st)
	}
	h.writeStatus(w, httpStatus, st)
}

// streamError shapes the error line that ends a live stream after it has
// started (grpc-gateway writes {"error": <Status>}).
func (h *Handler) streamError(ctx context.Context, err error) *status.Status {
	st := status.Convert(err)
	if st.Code() == codes.Canceled && h.draining.Err() != nil {
		return status.New(codes.Unavailable, msgShutdown)
	}
	return withoutCard(h.public(ctx, st))
}

// msgCard answers a request refused for another reason whose error would
// quote the card number it held (a number where a string belongs, an
// unknown field or enum name).
const msgCard = "request holds what " + cardscan.Refusal

// withoutCard returns st, or st's code with msgCard when st's message or
// details quote a card number: an error answer never sends one back.
func withoutCard(st *status.Status) *status.Status {
	if !cardscan.Contains(st.Message()) && !detailsHoldCard(st) {
		return st
	}
	return status.New(st.Code(), msgCard)
}

func detailsHoldCard(st *status.Status) bool {
	for _, d := range st.Proto().GetDetails() {
		if cardscan.Contains(string(d.GetValue())) {
			return true
		}
	}
	return false
}

// serveRoutingError answers requests that match no route (404), or match a
// route under another method (405).
func (h *Handler) serveRoutingError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	var st *status.Status
	switch httpStatus {
	case http.StatusNotFound:
		st = status.Newf(codes.NotFound, "no such route: %s %s", r.Method, safePath(r.URL.Path))
	case http.StatusMethodNotAllowed:
		st = status.Newf(codes.Unimplemented, "method %s is not allowed on %s", r.Method, safePath(r.URL.Path))
	case http.StatusBadRequest:
		st = status.Newf(codes.InvalidArgument, "malformed request path %q", safePath(r.URL.Path))
	default:
		st = status.New(codes.Internal, msgInternal)
	}
	h.writeStatus(w, httpStatus, st)
}

// httpStatusOf maps a status to HTTP: grpc-gateway's table, overridden by
// statusByReason.
func httpStatusOf(st *status.Status) int {
	if code, ok := statusByReason[reasonOf(st)]; ok {
		return code
	}
	return runtime.HTTPStatusFromCode(st.Code())
}

// reasonOf returns the reason of the shop's ErrorInfo in st, or "".
func reasonOf(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == grpcx.ErrorDomain {
			return info.GetReason()
		}
	}
	return ""
}

// public returns st as a client may see it. Server faults and unreachable
// upstreams keep their code but lose their message (it may name hosts,
// ports or internals); the original is logged here, once.
func (h *Handler) public(ctx context.Context, st *status.Status) *status.Status {
	var msg string
	level := slog.LevelError
	switch st.Code() {
	case codes.Internal, codes.Unknown, codes.DataLoss:
		msg = msgInternal
	case codes.Unavailable:
		msg, level = msgUnavailable, slog.LevelWarn
	default:
		return st
	}
	method, _ := runtime.RPCMethod(ctx)
	h.log.Log(ctx, level, "upstream call failed", "rpc", method, "code", st.Code().String(), "err", st.Message())
	return status.New(st.Code(), msg)
}

// writeStatus writes st as the JSON body of an httpStatus response.
func (h *Handler) writeStatus(w http.ResponseWriter, httpStatus int, st *status.Status) {
	hdr := w.Header()
	hdr.Del("Trailer")
	hdr.Del("Transfer-Encoding")
	hdr.Del("ETag")
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	switch httpStatus {
	case http.StatusUnauthorized:
		hdr.Set("WWW-Authenticate", `Bearer realm="pizzashop"`)
	case http.StatusServiceUnavailable:
		hdr.Set("Retry-After", "1")
	}
	buf, err := h.json.Marshal(st.Proto())
	if err != nil {
		h.log.Error("marshal error status", "err", err)
		httpStatus = http.StatusInternalServerError
		buf = []byte(`{"code":13,"message":"internal error","details":[]}`)
	}
	w.WriteHeader(httpStatus)
	_, _ = w.Write(append(buf, '\n'))
}

// errorHeaders ends the status line of the answers net/http writes itself,
// before any handler runs, to requests it cannot parse. Answers from
// handlers always carry a Date header and sort Connection before
// Content-Type, so they never match.
const errorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// serverErrorMessages are the messages of those answers, by status. The
// server's own text may quote the offending bytes, so it is not passed on.
var serverErrorMessages = map[int]string{
	http.StatusBadRequest:                  "malformed HTTP request: check the request line and headers (control characters such as NUL or DEL are not allowed in headers)",
	http.StatusRequestHeaderFieldsTooLarge: "request headers are too large",
	http.StatusNotImplemented:              "unsupported transfer encoding",
	http.StatusHTTPVersionNotSupported:     "unsupported HTTP version",
	http.StatusExpectationFailed:           "unsupported Expect header",
}

// jsonServerError rewrites one of net/http's own plain-text error answers
// as JSON google.rpc.Status; ok is false for anything else.
func jsonServerError(p []byte) (out []byte, ok bool) {
	if len(p) < 13 || !bytes.HasPrefix(p, []byte("HTTP/1.")) || p[8] != ' ' {
		return nil, false
	}
	end := bytes.Index(p, []byte(errorHeaders))
	if end < 0 || bytes.Contains(p[:end], []byte("\r\n")) {
		return nil, false
	}
	code, err := strconv.Atoi(string(p[9:12]))
	if err != nil || code < 400 {
		return nil, false
	}
	msg, known := serverErrorMessages[code]
	if !known {
		msg = http.StatusText(code)
	}
	grpcCode := codes.InvalidArgument
	if code >= 500 {
		grpcCode = codes.Unimplemented
	}
	return rawResponse(code, status.New(grpcCode, msg), ""), true
}

// rawJSON marshals statuses written straight to a connection the way
// writeStatus does.
var rawJSON = newJSONMarshaler()

// rawResponse is a whole HTTP/1.1 answer carrying st, that closes the
// connection. extra holds more header lines, each ending in CRLF.
func rawResponse(httpStatus int, st *status.Status, extra string) []byte {
	body, err := rawJSON.Marshal(st.Proto())
	if err != nil {
		body = []byte(`{"code":13,"message":"internal error","details":[]}`)
	}
	body = append(body, '\n')
	head := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nConnection: close\r\nContent-Length: %d\r\n%s\r\n",
		httpStatus, http.StatusText(httpStatus), len(body), extra)
	return append([]byte(head), body...)
}
