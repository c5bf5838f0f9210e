package grpcx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"unicode/utf8"

	"github.com/pizzashop/pizzashop/pkg/errs"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
)

// ErrorDomain is the domain of every google.rpc.ErrorInfo the shop sends.
const ErrorDomain = "pizzashop"

// codeOf is the one table from error kinds to gRPC codes. The gateway maps
// codes to HTTP statuses with grpc-gateway's table, plus the few reasons
// listed in its own overrides (422 for a reused idempotency key, 409 for a
// transition that is no longer possible).
var codeOf = map[errs.Kind]codes.Code{
	errs.KindInternal:            codes.Internal,
	errs.KindInvalid:             codes.InvalidArgument,
	errs.KindNotFound:            codes.NotFound,
	errs.KindAlreadyExists:       codes.AlreadyExists,
	errs.KindConflict:            codes.Aborted,
	errs.KindFailedPrecondition:  codes.FailedPrecondition,
	errs.KindUnauthenticated:     codes.Unauthenticated,
	errs.KindPermissionDenied:    codes.PermissionDenied,
	errs.KindUnavailable:         codes.Unavailable,
	errs.KindTooManyRequests:     codes.ResourceExhausted,
	errs.KindIdempotencyMismatch: codes.FailedPrecondition,
}

// MaxViolations bounds the field problems one error lists, so that the
// answer to a bad request stays small however bad the request is.
const MaxViolations = 5

// Bounds on the text of an error, which may quote the caller's input.
const (
	maxMessage     = 2048
	maxDescription = 300
)

// truncate cuts s to at most n bytes, on a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// listFields is the message of an error with more than MaxViolations field
// problems: the first few, then how many more.
func listFields(fields []*errs.Error) string {
	var b strings.Builder
	for _, f := range fields[:MaxViolations] {
		b.WriteString(truncate(f.Error(), maxDescription))
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "(and %d more problems)", len(fields)-MaxViolations)
	return b.String()
}

// ToStatus turns an error returned by a handler into a gRPC status error.
// Classified errors keep their message, reason and field violations; unknown
// errors are logged here, once, and reach the caller as a bare "internal
// error".
func ToStatus(ctx context.Context, log *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return err
	}
	// Cancellation and deadlines belong to the caller only when the caller's
	// own context ended; a dependency's timeout (the store's server
	// selection, say) is that dependency being unavailable.
	if ctx.Err() != nil {
		switch {
		case errors.Is(err, context.Canceled):
			return status.Error(codes.Canceled, "request cancelled")
		case errors.Is(err, context.DeadlineExceeded):
			return status.Error(codes.DeadlineExceeded, "deadline exceeded")
		}
	}
	e, ok := errors.AsType[*errs.Error](err)
	if !ok && errors.Is(err, context.DeadlineExceeded) {
		log.WarnContext(ctx, "dependency timed out", "method", method, "err", err)
		return status.Error(codes.Unavailable, "a dependency timed out; try again shortly")
	}
	if !ok || e.Kind == errs.KindInternal || codeOf[e.Kind] == codes.OK { // a kind without a code would become success
		log.ErrorContext(ctx, "request failed", "method", method, "err", err)
		return status.Error(codes.Internal, "internal error")
	}
	// A join of field problems speaks for itself (its first few); a single
	// error speaks through its classified part, without the wrapping added
	// on the way up.
	fields := errs.Fields(err)
	msg := e.Error()
	for x := err; x != nil; x = errors.Unwrap(x) {
		if _, joined := x.(interface{ Unwrap() []error }); joined {
			msg = x.Error()
			if len(fields) > MaxViolations {
				msg = listFields(fields)
			}
			break
		}
		if _, classified := x.(*errs.Error); classified {
			break
		}
	}
	if e.Kind == errs.KindUnavailable {
		// Driver and network details stay in the log.
		log.WarnContext(ctx, "dependency unavailable", "method", method, "err", err)
		msg = e.Msg
	}
	st := status.New(codeOf[e.Kind], truncate(msg, maxMessage))
	var details []protoadapt.MessageV1
	if e.Reason != "" {
		details = append(details, &errdetails.ErrorInfo{Reason: e.Reason, Domain: ErrorDomain})
	}
	if len(fields) > 0 {
		br := &errdetails.BadRequest{}
		for _, f := range fields[:min(len(fields), MaxViolations)] {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
				Field: truncate(f.Field, maxDescription), Description: truncate(f.Msg, maxDescription)})
		}
		details = append(details, br)
	}
	if len(details) > 0 {
		if withDetails, derr := st.WithDetails(details...); derr == nil {
			st = withDetails
		}
	}
	return st.Err()
}

// Reason returns the google.rpc.ErrorInfo reason carried by a status error,
// or "".
func Reason(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.Reason
		}
	}
	return ""
}
