package orderapi

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/pizzashop/pizzashop/pkg/auth"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"github.com/pizzashop/pizzashop/services/order/internal/order"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// cancellingKitchen agrees to cancel every ticket, or refuses all as
// started when baking is set, and remembers what it was asked.
type cancellingKitchen struct {
	kitchenv1.KitchenServiceClient
	baking bool
	mu     sync.Mutex
	asked  []*kitchenv1.CancelTicketRequest
}

func (k *cancellingKitchen) CancelTicket(_ context.Context, req *kitchenv1.CancelTicketRequest, _ ...grpc.CallOption) (*kitchenv1.CancelTicketResponse, error) {
	k.mu.Lock()
	k.asked = append(k.asked, req)
	k.mu.Unlock()
	if k.baking {
		return nil, status.Error(codes.FailedPrecondition, "ticket is BAKING; only a QUEUED ticket can become CANCELLED")
	}
	return &kitchenv1.CancelTicketResponse{Ticket: &kitchenv1.Ticket{Id: req.GetId(), Status: kitchenv1.TicketStatus_TICKET_STATUS_CANCELLED}}, nil
}

// as is a call from subject with role, bounded by the test's deadline.
func as(t *testing.T, role auth.Role, subject string) context.Context {
	return auth.WithClaims(testContext(t), auth.Claims{Subject: subject, Role: role})
}

func lastReason(o *orderv1.Order) string {
	h := o.GetHistory()
	return h[len(h)-1].GetReason()
}

func TestCancelOrder(t *testing.T) {
	s, _ := newServer(t)
	k := &cancellingKitchen{}
	s.kitchen = k
	placed, err := s.CreateOrder(asCustomer(t, "ann", "c1"), pickup("margherita"))
	if err != nil {
		t.Fatal(err)
	}
	id := placed.GetOrder().GetId()

	if _, err := s.CancelOrder(as(t, auth.RoleCustomer, "bob"), &orderv1.CancelOrderRequest{Id: id}); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("another customer's cancel = %v, want ErrNotFound", err)
	}
	if len(k.asked) != 0 {
		t.Errorf("another customer's cancel reached the kitchen: %v", k.asked)
	}
	got, err := s.CancelOrder(as(t, auth.RoleCustomer, "ann"), &orderv1.CancelOrderRequest{Id: id, Reason: "  changed my mind "})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetOrder().GetStatus() != orderv1.OrderStatus_ORDER_STATUS_CANCELLED || lastReason(got.GetOrder()) != "changed my mind" {
		t.Errorf("cancel = %s %q, want CANCELLED with the customer's reason", got.GetOrder().GetStatus(), lastReason(got.GetOrder()))
	}
	again, err := s.CancelOrder(as(t, auth.RoleCustomer, "ann"), &orderv1.CancelOrderRequest{Id: id})
	if err != nil || again.GetOrder().GetRevision() != got.GetOrder().GetRevision() {
		t.Errorf("cancel again = %v, %v; want the cancelled order unchanged", again.GetOrder(), err)
	}
}

func TestCancelOrderKitchenStarted(t *testing.T) {
	s, _ := newServer(t)
	s.kitchen = &cancellingKitchen{baking: true}
	placed, err := s.CreateOrder(asCustomer(t, "ann", "c1"), pickup("margherita"))
	if err != nil {
		t.Fatal(err)
	}
	id := placed.GetOrder().GetId()
	if _, err := s.CancelOrder(as(t, auth.RoleCustomer, "ann"), &orderv1.CancelOrderRequest{Id: id}); !errors.Is(err, order.ErrNotCancellable) {
		t.Errorf("cancel of an order the kitchen started = %v, want ErrNotCancellable", err)
	}
	o, err := s.store.Get(testContext(t), id)
	if err != nil || o.Status != order.StatusPlaced || o.Revision != 1 {
		t.Errorf("after a refused cancel: %v, %v; want the order untouched", o, err)
	}
}

// TestCancelOrderByShop: an admin may cancel any order; its history must
// not say the customer did.
func TestCancelOrderByShop(t *testing.T) {
	s, _ := newServer(t)
	s.kitchen = &cancellingKitchen{}
	placed, err := s.CreateOrder(asCustomer(t, "ann", "c1"), pickup("margherita"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.CancelOrder(as(t, auth.RoleAdmin, "ada"), &orderv1.CancelOrderRequest{Id: placed.GetOrder().GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if r := lastReason(got.GetOrder()); strings.Contains(r, "customer") {
		t.Errorf("admin's cancel recorded reason %q, want one that does not blame the customer", r)
	}
}
