package kitchenapi_test

import (
	"context"
	"testing"

	"github.com/pizzashop/pizzashop/pkg/errs"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
)

// TestListTicketsPageToken: a token that names no ticket is the caller's
// mistake (400); a token the store could not look up is not, and the
// caller hears the store's failure instead of being told to fix the token.
func TestListTicketsPageToken(t *testing.T) {
	e := newEnv(t)
	e.seed(t, "page1", 0)

	_, err := e.srv.ListTickets(testContext(t), &kitchenv1.ListTicketsRequest{PageToken: "nosuchticket"})
	if errs.KindOf(err) != errs.KindInvalid {
		t.Errorf("unknown page token: err = %v (kind %v), want invalid argument", err, errs.KindOf(err))
	}

	gone, cancel := context.WithCancel(context.Background())
	cancel() // every store call of this request fails
	_, err = e.srv.ListTickets(gone, &kitchenv1.ListTicketsRequest{PageToken: "page1"})
	if err == nil || errs.KindOf(err) == errs.KindInvalid {
		t.Errorf("store failure while reading the page token: err = %v (kind %v), want the store's failure, not a bad token", err, errs.KindOf(err))
	}
}
