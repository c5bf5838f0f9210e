// Package errs gives domain errors a kind, so that one table at the transport
// edge can turn them into status codes without knowing the domain.
//
// Domain packages declare sentinels with New and return them wrapped with
// context; callers branch on them with errors.Is. errs imports nothing from
// gRPC, Mongo or NATS.
package errs

import (
	"errors"
	"fmt"
)

// Kind classifies an error for the caller: it decides the status code.
type Kind int

// The kinds. Unknown errors have KindInternal.
const (
	KindInternal Kind = iota
	KindInvalid
	KindNotFound
	KindAlreadyExists
	KindConflict
	KindFailedPrecondition
	KindUnauthenticated
	KindPermissionDenied
	KindUnavailable
	KindTooManyRequests
	KindIdempotencyMismatch
)

var kindNames = [...]string{"internal", "invalid", "not_found", "already_exists", "conflict",
	"failed_precondition", "unauthenticated", "permission_denied", "unavailable",
	"too_many_requests", "idempotency_mismatch"}

func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is a classified error. Reason is a stable UPPER_SNAKE identifier that
// clients may branch on; Field names the offending request field, if any.
type Error struct {
	Kind   Kind
	Reason string
	Field  string
	Msg    string
	Err    error
}

func (e *Error) Error() string {
	msg := e.Msg
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.Err != nil {
		return msg + ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is lets errors.Is match two *Error values that carry the same kind and
// reason, so sentinels survive being re-created with a field attached.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	return t.Kind == e.Kind && t.Reason != "" && t.Reason == e.Reason
}

// New returns a sentinel error of the given kind and reason.
func New(kind Kind, reason, msg string) *Error {
	return &Error{Kind: kind, Reason: reason, Msg: msg}
}

// Invalid reports bad input in one field. The message should say what is
// wrong, for example Invalid("item.size", "must be SIZE_SMALL, SIZE_MEDIUM or SIZE_LARGE").
func Invalid(field, format string, args ...any) *Error {
	return &Error{Kind: KindInvalid, Reason: "INVALID_ARGUMENT", Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Wrap attaches a field and extra words to a sentinel while keeping it
// matchable with errors.Is.
func Wrap(sentinel *Error, field, format string, args ...any) *Error {
	msg := sentinel.Msg
	if format != "" {
		msg = fmt.Sprintf(format, args...)
	}
	return &Error{Kind: sentinel.Kind, Reason: sentinel.Reason, Field: field, Msg: msg}
}

// KindOf returns the kind of the first *Error in err's chain, or
// KindInternal.
func KindOf(err error) Kind {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Kind
	}
	return KindInternal
}

// Fields collects every field violation in err, which may be a join of
// several errors.
func Fields(err error) []*Error {
	var out []*Error
	var visit func(error)
	visit = func(err error) {
		switch x := err.(type) {
		case nil:
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				visit(e)
			}
		case *Error:
			if x.Field != "" {
				out = append(out, x)
			}
		default:
			visit(errors.Unwrap(err))
		}
	}
	visit(err)
	return out
}
