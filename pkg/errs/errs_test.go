package errs_test

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"

	"github.com/pizzashop/pizzashop/pkg/errs"
)

var (
	errNotFound = errs.New(errs.KindNotFound, "PIZZA_NOT_FOUND", "no such pizza")
	errSoldOut  = errs.New(errs.KindFailedPrecondition, "SOLD_OUT", "sold out")
	// Same reason as errNotFound under another kind.
	errNotFoundConflict = errs.New(errs.KindConflict, "PIZZA_NOT_FOUND", "no such pizza")
)

func TestConstructors(t *testing.T) {
	tests := []struct {
		name      string
		err       *errs.Error
		wantKind  errs.Kind
		reason    string
		field     string
		msg       string
		wantError string
	}{
		{"New", errNotFound, errs.KindNotFound, "PIZZA_NOT_FOUND", "", "no such pizza", "no such pizza"},
		{"Invalid", errs.Invalid("item.size", "must be %s or %s", "S", "M"), errs.KindInvalid, "INVALID_ARGUMENT",
			"item.size", "must be S or M", "item.size: must be S or M"},
		{"Invalid without args", errs.Invalid("name", "is required"), errs.KindInvalid, "INVALID_ARGUMENT",
			"name", "is required", "name: is required"},
		{"Wrap keeps the sentinel message", errs.Wrap(errNotFound, "pizza_id", ""), errs.KindNotFound, "PIZZA_NOT_FOUND",
			"pizza_id", "no such pizza", "pizza_id: no such pizza"},
		{"Wrap with words", errs.Wrap(errSoldOut, "item.toppings", "%s is sold out", "ham"), errs.KindFailedPrecondition, "SOLD_OUT",
			"item.toppings", "ham is sold out", "item.toppings: ham is sold out"},
		{"Wrap without field", errs.Wrap(errSoldOut, "", "today"), errs.KindFailedPrecondition, "SOLD_OUT", "", "today", "today"},
		{"cause appended", &errs.Error{Kind: errs.KindUnavailable, Msg: "store down", Err: io.ErrUnexpectedEOF},
			errs.KindUnavailable, "", "", "store down", "store down: unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tt.err
			if e.Kind != tt.wantKind || e.Reason != tt.reason || e.Field != tt.field || e.Msg != tt.msg {
				t.Errorf("got kind %v reason %q field %q msg %q; want %v %q %q %q",
					e.Kind, e.Reason, e.Field, e.Msg, tt.wantKind, tt.reason, tt.field, tt.msg)
			}
			if got := e.Error(); got != tt.wantError {
				t.Errorf("Error() = %q, want %q", got, tt.wantError)
			}
		})
	}
}

func TestUnwrap(t *testing.T) {
	e := &errs.Error{Kind: errs.KindUnavailable, Msg: "store down", Err: io.ErrUnexpectedEOF}
	if !errors.Is(e, io.ErrUnexpectedEOF) {
		t.Errorf("errors.Is(%v, io.ErrUnexpectedEOF) = false, want true", e)
	}
}

func TestIs(t *testing.T) {
	noReason := errs.New(errs.KindInternal, "", "something")
	tests := []struct {
		name   string
		err    error
		target error
		want   bool
	}{
		{"sentinel itself", errNotFound, errNotFound, true},
		{"Wrap", errs.Wrap(errNotFound, "pizza_id", "pizza %q", "x"), errNotFound, true},
		{"Wrap through fmt.Errorf", fmt.Errorf("get pizza: %w", errs.Wrap(errNotFound, "id", "")), errNotFound, true},
		{"Wrap inside a join", errors.Join(io.EOF, errs.Wrap(errSoldOut, "t", "")), errSoldOut, true},
		{"re-created with the same kind and reason", errs.New(errs.KindNotFound, "PIZZA_NOT_FOUND", "other words"), errNotFound, true},
		{"other reason", errSoldOut, errNotFound, false},
		{"same reason, other kind", errNotFoundConflict, errNotFound, false},
		{"Wrap of another sentinel", errs.Wrap(errSoldOut, "id", ""), errNotFound, false},
		{"two Invalid errors share their reason", errs.Invalid("a", "x"), errs.Invalid("b", "y"), true},
		{"empty reasons never match", errs.New(errs.KindInternal, "", "something"), noReason, false},
		{"empty reason matches itself", noReason, noReason, true},
		{"plain target", errNotFound, io.EOF, false},
		{"plain error", io.EOF, errNotFound, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errors.Is(tt.err, tt.target); got != tt.want {
				t.Errorf("errors.Is(%v, %v) = %v, want %v", tt.err, tt.target, got, tt.want)
			}
		})
	}
}

func TestKindOf(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want errs.Kind
	}{
		{"nil", nil, errs.KindInternal},
		{"plain", io.EOF, errs.KindInternal},
		{"direct", errNotFound, errs.KindNotFound},
		{"Invalid", errs.Invalid("f", "bad"), errs.KindInvalid},
		{"fmt.Errorf", fmt.Errorf("get: %w", errNotFound), errs.KindNotFound},
		{"fmt.Errorf twice", fmt.Errorf("a: %w", fmt.Errorf("b: %w", errSoldOut)), errs.KindFailedPrecondition},
		{"errors.Join after a plain error", errors.Join(io.EOF, errSoldOut), errs.KindFailedPrecondition},
		{"errors.Join wrapped", fmt.Errorf("ctx: %w", errors.Join(io.EOF, errs.Invalid("f", "x"))), errs.KindInvalid},
		{"first of two", errors.Join(errNotFound, errSoldOut), errs.KindNotFound},
		{"multi %w", fmt.Errorf("%w: %w", errs.New(errs.KindUnavailable, "DOWN", "down"), io.EOF), errs.KindUnavailable},
		{"classified cause of a plain error is not looked past", fmt.Errorf("x: %v", errNotFound), errs.KindInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errs.KindOf(tt.err); got != tt.want {
				t.Errorf("KindOf(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestKindString(t *testing.T) {
	tests := []struct {
		k    errs.Kind
		want string
	}{
		{errs.KindInternal, "internal"},
		{errs.KindInvalid, "invalid"},
		{errs.KindNotFound, "not_found"},
		{errs.KindAlreadyExists, "already_exists"},
		{errs.KindConflict, "conflict"},
		{errs.KindFailedPrecondition, "failed_precondition"},
		{errs.KindUnauthenticated, "unauthenticated"},
		{errs.KindPermissionDenied, "permission_denied"},
		{errs.KindUnavailable, "unavailable"},
		{errs.KindTooManyRequests, "too_many_requests"},
		{errs.KindIdempotencyMismatch, "idempotency_mismatch"},
		{errs.KindIdempotencyMismatch + 1, "kind(11)"},
		{errs.Kind(-1), "kind(-1)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.k.String(); got != tt.want {
				t.Errorf("Kind(%d).String() = %q, want %q", int(tt.k), got, tt.want)
			}
		})
	}
}

func TestFields(t *testing.T) {
	a := errs.Invalid("name", "is required")
	b := errs.Invalid("price", "must be positive")
	c := errs.Wrap(errSoldOut, "toppings[0]", "ham is sold out")
	tests := []struct {
		name string
		err  error
		want []*errs.Error
	}{
		{"nil", nil, nil},
		{"plain", io.EOF, nil},
		{"one", a, []*errs.Error{a}},
		{"no field", errNotFound, nil},
		{"wrapped", fmt.Errorf("create: %w", a), []*errs.Error{a}},
		{"join", errors.Join(a, b), []*errs.Error{a, b}},
		{"join skips plain and fieldless errors", errors.Join(io.EOF, a, errNotFound, c), []*errs.Error{a, c}},
		{"wrapped join", fmt.Errorf("validate: %w", errors.Join(a, b)), []*errs.Error{a, b}},
		{"join of wrapped errors", errors.Join(fmt.Errorf("x: %w", a), fmt.Errorf("y: %w", b)), []*errs.Error{a, b}},
		{"nested joins keep order", errors.Join(errors.Join(a, b), c), []*errs.Error{a, b, c}},
		{"multi %w", fmt.Errorf("%w; %w", a, c), []*errs.Error{a, c}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := errs.Fields(tt.err)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Fields(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
