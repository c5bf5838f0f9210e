package orderapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/pizzashop/pizzashop/pkg/errs"
	"github.com/pizzashop/pizzashop/pkg/grpcx"
	"github.com/pizzashop/pizzashop/pkg/mongox"
	"github.com/pizzashop/pizzashop/services/order/internal/order"
	"github.com/pizzashop/pizzashop/services/order/internal/orderdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestKeyedFailure: a keyed request whose order exists but cannot be read
// back answers as the read failed (503 for a store that timed out), so the
// client retries and gets its order; it once answered an internal error
// from the insert's duplicate key. Other failures keep their own answer.
func TestKeyedFailure(t *testing.T) {
	exists := fmt.Errorf("insert order o1: %w", orderdb.ErrExists)
	unavailable := fmt.Errorf("get order o1: %w: %w", mongox.ErrUnavailable, context.DeadlineExceeded)
	notFound := fmt.Errorf("get order o1: %w", order.ErrNotFound)
	soldOut := errs.New(errs.KindFailedPrecondition, "SOLD_OUT", "a topping is sold out")
	for _, tc := range []struct {
		name      string
		err, perr error
		want      error
		code      codes.Code
	}{
		{"exists, read timed out", exists, unavailable, unavailable, codes.Unavailable},
		{"exists, gone when read", exists, notFound, exists, codes.Internal},
		{"refused, never placed", soldOut, notFound, soldOut, codes.FailedPrecondition},
		{"refused, read timed out", soldOut, unavailable, soldOut, codes.FailedPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := keyedFailure(tc.err, tc.perr)
			if !errors.Is(got, tc.want) || got.Error() != tc.want.Error() {
				t.Errorf("keyedFailure(%v, %v) = %v, want %v", tc.err, tc.perr, got, tc.want)
			}
			st := status.Convert(grpcx.ToStatus(context.Background(), slog.New(slog.DiscardHandler), "CreateOrder", got))
			if st.Code() != tc.code {
				t.Errorf("answered %s %q, want %s", st.Code(), st.Message(), tc.code)
			}
		})
	}
}
