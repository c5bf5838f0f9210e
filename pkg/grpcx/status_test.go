package grpcx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/errs"
	"github.com/pizzashop/pizzashop/pkg/grpcx"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	errNoPizza  = errs.New(errs.KindNotFound, "PIZZA_NOT_FOUND", "no such pizza")
	errExists   = errs.New(errs.KindAlreadyExists, "PIZZA_EXISTS", "a pizza with this name exists")
	errConflict = errs.New(errs.KindConflict, "ORDER_CHANGED", "the order changed meanwhile; read it and try again")
	errTooLate  = errs.New(errs.KindFailedPrecondition, "ORDER_NOT_CANCELLABLE", "the order can no longer be cancelled")
	errDown     = errs.New(errs.KindUnavailable, "STORE_UNAVAILABLE", "the store is unavailable, try again shortly")
	errKeyReuse = errs.New(errs.KindIdempotencyMismatch, "IDEMPOTENCY_KEY_REUSED", "the key was used for another request")
	errNoCred   = errs.New(errs.KindUnauthenticated, "LOGIN_REQUIRED", "log in first")
	errNotYours = errs.New(errs.KindPermissionDenied, "NOT_YOUR_ORDER", "not your order")
	errSlowDown = errs.New(errs.KindTooManyRequests, "RATE_LIMITED", "slow down")
)

// logBuffer collects JSON log records; it is safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records returns the records logged so far.
func (b *logBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(b.buf.String()) {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

func newLog() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

type violation struct{ field, desc string }

var errStoreDown = errs.New(errs.KindUnavailable, "STORE_DOWN", "the store is unavailable")

// endedContext returns a context that has already ended with cause.
func endedContext(cause error) context.Context {
	if cause == context.DeadlineExceeded {
		// Born expired: its Err stays DeadlineExceeded after cancel.
		ctx, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
		cancel()
		return ctx
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestToStatus(t *testing.T) {
	existing := status.Error(codes.ResourceExhausted, "queue full")
	driverDetail := errors.New("dial tcp 10.1.2.3:27017: connection refused")
	tests := []struct {
		name       string
		ctx        context.Context // the request's; nil for a live one
		err        error
		code       codes.Code
		msg        string
		reason     string
		violations []violation
		logLevel   string // level of the one record logged, "" for none
		logDetail  string // the record's err must contain this
	}{
		{
			name: "invalid", err: errs.Invalid("name", "is required"),
			code: codes.InvalidArgument, msg: "name: is required", reason: "INVALID_ARGUMENT",
			violations: []violation{{"name", "is required"}},
		},
		{
			name: "invalid wrapped with context", err: fmt.Errorf("create pizza: %w", errs.Invalid("name", "is required")),
			code: codes.InvalidArgument, msg: "name: is required", reason: "INVALID_ARGUMENT",
			violations: []violation{{"name", "is required"}},
		},
		{
			name: "joined invalid",
			err:  errors.Join(errs.Invalid("name", "is required"), errs.Invalid("prices[0].amount", "must be positive, got %d", -1)),
			code: codes.InvalidArgument, msg: "name: is required\nprices[0].amount: must be positive, got -1", reason: "INVALID_ARGUMENT",
			violations: []violation{{"name", "is required"}, {"prices[0].amount", "must be positive, got -1"}},
		},
		{
			name: "joined invalid wrapped with context",
			err:  fmt.Errorf("create pizza: %w", errors.Join(errs.Invalid("name", "is required"), errs.Invalid("size", "unknown"))),
			code: codes.InvalidArgument, msg: "name: is required\nsize: unknown", reason: "INVALID_ARGUMENT",
			violations: []violation{{"name", "is required"}, {"size", "unknown"}},
		},
		{
			name: "not found", err: fmt.Errorf("get pizza %q: %w", "x", errNoPizza),
			code: codes.NotFound, msg: "no such pizza", reason: "PIZZA_NOT_FOUND",
		},
		{
			name: "not found with field", err: errs.Wrap(errNoPizza, "pizza_id", "no pizza %q", "x"),
			code: codes.NotFound, msg: `pizza_id: no pizza "x"`, reason: "PIZZA_NOT_FOUND",
			violations: []violation{{"pizza_id", `no pizza "x"`}},
		},
		{name: "already exists", err: errExists, code: codes.AlreadyExists, msg: errExists.Msg, reason: "PIZZA_EXISTS"},
		{name: "conflict is aborted", err: fmt.Errorf("update: %w", errConflict), code: codes.Aborted, msg: errConflict.Msg, reason: "ORDER_CHANGED"},
		{name: "failed precondition", err: errTooLate, code: codes.FailedPrecondition, msg: errTooLate.Msg, reason: "ORDER_NOT_CANCELLABLE"},
		{
			name: "unavailable hides the driver detail",
			err:  fmt.Errorf("update order %s: %w", "o1", fmt.Errorf("%w: %w", errDown, driverDetail)),
			code: codes.Unavailable, msg: errDown.Msg, reason: "STORE_UNAVAILABLE",
			logLevel: "WARN", logDetail: "connection refused",
		},
		{
			name: "unavailable with its own words",
			err:  fmt.Errorf("%w: %s", errs.Wrap(errDown, "", "the menu is unavailable"), "rpc error: code = Unavailable"),
			code: codes.Unavailable, msg: "the menu is unavailable", reason: "STORE_UNAVAILABLE",
			logLevel: "WARN", logDetail: "rpc error",
		},
		{name: "idempotency mismatch", err: errKeyReuse, code: codes.FailedPrecondition, msg: errKeyReuse.Msg, reason: "IDEMPOTENCY_KEY_REUSED"},
		{name: "unauthenticated", err: errNoCred, code: codes.Unauthenticated, msg: errNoCred.Msg, reason: "LOGIN_REQUIRED"},
		{name: "permission denied", err: errNotYours, code: codes.PermissionDenied, msg: errNotYours.Msg, reason: "NOT_YOUR_ORDER"},
		{name: "too many requests", err: errSlowDown, code: codes.ResourceExhausted, msg: errSlowDown.Msg, reason: "RATE_LIMITED"},
		{
			name: "plain error is internal and logged", err: fmt.Errorf("read config: %w", io.ErrUnexpectedEOF),
			code: codes.Internal, msg: "internal error", logLevel: "ERROR", logDetail: "read config: unexpected EOF",
		},
		{
			name: "internal kind is internal and logged", err: errs.New(errs.KindInternal, "BUG", "invariant broken: total < 0"),
			code: codes.Internal, msg: "internal error", logLevel: "ERROR", logDetail: "invariant broken",
		},
		{
			name: "unmapped kind is internal and logged", err: &errs.Error{Kind: errs.Kind(99), Reason: "NEW", Msg: "a kind with no code"},
			code: codes.Internal, msg: "internal error", logLevel: "ERROR", logDetail: "a kind with no code",
		},
		{name: "cancelled by the caller", ctx: endedContext(context.Canceled), err: fmt.Errorf("list: %w", context.Canceled), code: codes.Canceled, msg: "request cancelled"},
		{name: "the caller's deadline", ctx: endedContext(context.DeadlineExceeded), err: fmt.Errorf("list: %w", context.DeadlineExceeded), code: codes.DeadlineExceeded, msg: "deadline exceeded"},
		{
			name: "a dependency's timeout is unavailability", err: fmt.Errorf("list: %w", context.DeadlineExceeded),
			code: codes.Unavailable, msg: "a dependency timed out; try again shortly", logLevel: "WARN", logDetail: "deadline exceeded",
		},
		{
			name: "a classified error wrapping a timeout keeps its kind", err: fmt.Errorf("%w: %w", errStoreDown, context.DeadlineExceeded),
			code: codes.Unavailable, msg: "the store is unavailable", reason: "STORE_DOWN", logLevel: "WARN", logDetail: "deadline exceeded",
		},
		{name: "status error passes through", err: existing, code: codes.ResourceExhausted, msg: "queue full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logs := newLog()
			ctx := context.Background()
			if tt.ctx != nil {
				ctx = tt.ctx
			}
			got := grpcx.ToStatus(ctx, log, "/test.v1.Svc/Do", tt.err)
			if got == nil {
				t.Fatalf("ToStatus(%v) = nil, want code %v", tt.err, tt.code)
			}
			st, ok := status.FromError(got)
			if !ok {
				t.Fatalf("ToStatus(%v) = %v, not a status error", tt.err, got)
			}
			if st.Code() != tt.code || st.Message() != tt.msg {
				t.Errorf("ToStatus(%v) = %v %q, want %v %q", tt.err, st.Code(), st.Message(), tt.code, tt.msg)
			}
			if r := grpcx.Reason(got); r != tt.reason {
				t.Errorf("Reason(ToStatus(%v)) = %q, want %q", tt.err, r, tt.reason)
			}
			var vs []violation
			for _, d := range st.Details() {
				switch d := d.(type) {
				case *errdetails.BadRequest:
					for _, v := range d.GetFieldViolations() {
						vs = append(vs, violation{v.GetField(), v.GetDescription()})
					}
				case *errdetails.ErrorInfo:
					if d.GetDomain() != grpcx.ErrorDomain {
						t.Errorf("ErrorInfo domain = %q, want %q", d.GetDomain(), grpcx.ErrorDomain)
					}
				}
			}
			if fmt.Sprint(vs) != fmt.Sprint(tt.violations) {
				t.Errorf("field violations = %v, want %v", vs, tt.violations)
			}

			recs := logs.records(t)
			switch {
			case tt.logLevel == "" && len(recs) != 0:
				t.Errorf("logged %v, want nothing", recs)
			case tt.logLevel != "" && len(recs) != 1:
				t.Errorf("logged %d records %v, want one at %s", len(recs), recs, tt.logLevel)
			case tt.logLevel != "":
				r := recs[0]
				if r["level"] != tt.logLevel || r["method"] != "/test.v1.Svc/Do" || !strings.Contains(fmt.Sprint(r["err"]), tt.logDetail) {
					t.Errorf("log record = %v, want level %s, method /test.v1.Svc/Do, err containing %q", r, tt.logLevel, tt.logDetail)
				}
			}
			if tt.code == codes.Internal && strings.Contains(st.Message(), tt.logDetail) {
				t.Errorf("internal error message %q leaks the detail", st.Message())
			}
		})
	}
}

func TestToStatusNil(t *testing.T) {
	log, logs := newLog()
	if got := grpcx.ToStatus(context.Background(), log, "/m", nil); got != nil {
		t.Errorf("ToStatus(nil) = %v, want nil", got)
	}
	if recs := logs.records(t); len(recs) != 0 {
		t.Errorf("ToStatus(nil) logged %v", recs)
	}
}

func TestToStatusKeepsStatusError(t *testing.T) {
	in := status.Error(codes.PermissionDenied, "no")
	if got := grpcx.ToStatus(context.Background(), slog.New(slog.DiscardHandler), "/m", in); got != in {
		t.Errorf("ToStatus(status error) = %v, want the same error back", got)
	}
}

func TestReason(t *testing.T) {
	withInfo := grpcx.ToStatus(context.Background(), slog.New(slog.DiscardHandler), "/m", errNoPizza)
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"plain", io.EOF, ""},
		{"status without details", status.Error(codes.NotFound, "x"), ""},
		{"with ErrorInfo", withInfo, "PIZZA_NOT_FOUND"},
		{"wrapped status", fmt.Errorf("call menu: %w", withInfo), "PIZZA_NOT_FOUND"},
		{"BadRequest only", badRequestOnly(t), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := grpcx.Reason(tt.err); got != tt.want {
				t.Errorf("Reason(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

func badRequestOnly(t *testing.T) error {
	st, err := status.New(codes.InvalidArgument, "bad").WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "f", Description: "d"}},
	})
	if err != nil {
		t.Fatalf("WithDetails: %v", err)
	}
	return st.Err()
}
