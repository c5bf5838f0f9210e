package deliveryapi_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pizzashop/pizzashop/pkg/auth"
	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	deliveryv1 "github.com/pizzashop/pizzashop/proto/pizzashop/delivery/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"github.com/pizzashop/pizzashop/services/delivery/internal/delivery"
	"github.com/pizzashop/pizzashop/services/delivery/internal/deliveryapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	D = delivery.FulfillmentDelivery
	P = delivery.FulfillmentPickup
)

func TestSubject(t *testing.T) {
	for s, want := range map[delivery.Status]string{
		delivery.StatusWaiting:        "delivery.waiting.abc1",
		delivery.StatusOutForDelivery: "delivery.out_for_delivery.abc1",
		delivery.StatusDelivered:      "delivery.delivered.abc1",
		delivery.StatusPickedUp:       "delivery.picked_up.abc1",
	} {
		if got := deliveryapi.Subject(s, "abc1"); got != want {
			t.Errorf("Subject(%s, abc1) = %q, want %q", s, got, want)
		}
	}
}

func TestAccess(t *testing.T) {
	e := newEnv(t)
	e.seed(t, "d1", D, 0)
	e.seed(t, "p1", P, 1)

	calls := map[string]func(ctx context.Context) error{
		"ListDeliveries": func(ctx context.Context) error {
			_, err := e.client.ListDeliveries(ctx, &deliveryv1.ListDeliveriesRequest{})
			return err
		},
		"GetDelivery": func(ctx context.Context) error {
			_, err := e.client.GetDelivery(ctx, &deliveryv1.GetDeliveryRequest{Id: "d1"})
			return err
		},
		"DispatchDelivery": func(ctx context.Context) error {
			_, err := e.client.DispatchDelivery(ctx, &deliveryv1.DispatchDeliveryRequest{Id: "d1"})
			return err
		},
		"DeliverDelivery": func(ctx context.Context) error {
			_, err := e.client.DeliverDelivery(ctx, &deliveryv1.DeliverDeliveryRequest{Id: "d1"})
			return err
		},
		"PickupDelivery": func(ctx context.Context) error {
			_, err := e.client.PickupDelivery(ctx, &deliveryv1.PickupDeliveryRequest{Id: "p1"})
			return err
		},
		"WatchDeliveries": func(ctx context.Context) error {
			st, err := e.client.WatchDeliveries(ctx, &deliveryv1.WatchDeliveriesRequest{})
			if err != nil {
				return err
			}
			_, err = st.Recv()
			return err
		},
	}
	for _, method := range []string{"ListDeliveries", "GetDelivery", "DispatchDelivery", "DeliverDelivery", "PickupDelivery", "WatchDeliveries"} {
		call := calls[method]
		t.Run(method, func(t *testing.T) {
			checkCode(t, "customer "+method, call(e.as(t, auth.RoleCustomer, "cust1")), codes.PermissionDenied, "")
			checkCode(t, "kitchen "+method, call(e.as(t, auth.RoleKitchen, "cook1")), codes.PermissionDenied, "")
			checkCode(t, "anonymous "+method, call(testContext(t)), codes.Unauthenticated, "")
		})
	}
	// Staff who are not couriers may look, not move.
	checkCode(t, "admin DispatchDelivery", calls["DispatchDelivery"](e.as(t, auth.RoleAdmin, "boss")), codes.PermissionDenied, "")
	if err := calls["ListDeliveries"](e.as(t, auth.RoleAdmin, "boss")); err != nil {
		t.Errorf("admin ListDeliveries: %v", err)
	}
	if err := calls["GetDelivery"](e.as(t, auth.RoleService, "order")); err != nil {
		t.Errorf("service GetDelivery: %v", err)
	}
	// Nothing moved.
	got, err := e.store.Get(testContext(t), "d1")
	if err != nil || got.Status() != delivery.StatusWaiting || got.Revision() != 1 {
		t.Errorf("d1 after refused calls = %s revision %d (%v), want WAITING 1", got.Status(), got.Revision(), err)
	}
}

func TestGetDelivery(t *testing.T) {
	e := newEnv(t)
	e.seed(t, "d1", D, 0)
	ctx := e.courier(t)
	resp, err := e.client.GetDelivery(ctx, &deliveryv1.GetDeliveryRequest{Id: "d1"})
	if err != nil {
		t.Fatalf("GetDelivery: %v", err)
	}
	want := &deliveryv1.Delivery{
		Id: "d1", Status: deliveryv1.DeliveryStatus_DELIVERY_STATUS_WAITING, Fulfillment: orderv1.Fulfillment_FULFILLMENT_DELIVERY,
		CustomerName: "Customer d1", CustomerPhone: "+39 06 555 0101",
		Address: &commonv1.Address{Line1: "Via Roma 1", City: "Napoli", PostalCode: "80100"},
		Summary: "Small Funghi", AmountDue: &commonv1.Money{AmountMinor: 1000, CurrencyCode: "EUR"},
		PaymentMethod: orderv1.PaymentMethod_PAYMENT_METHOD_CARD, ReadyTime: timestamppb.New(readyAt), Revision: 1,
	}
	if diff := cmp.Diff(want, resp.GetDelivery(), protocmp.Transform()); diff != "" {
		t.Errorf("GetDelivery(d1) (-want +got):\n%s", diff)
	}
	for _, id := range []string{"missing", "", "D1", "d-1", strings.Repeat("a", 65)} {
		_, err := e.client.GetDelivery(ctx, &deliveryv1.GetDeliveryRequest{Id: id})
		checkCode(t, "GetDelivery("+id+")", err, codes.NotFound, "DELIVERY_NOT_FOUND")
	}
}

func TestListDeliveries(t *testing.T) {
	e := newEnv(t)
	// Ready in this order: d1, p1, d2, p2, d3; d3 is then delivered.
	e.seed(t, "d1", D, 0)
	e.seed(t, "p1", P, 1)
	e.seed(t, "d2", D, 2)
	e.seed(t, "p2", P, 3)
	e.seed(t, "d3", D, 4)
	ctx := e.courier(t)
	if _, err := e.client.DispatchDelivery(ctx, &deliveryv1.DispatchDeliveryRequest{Id: "d2"}); err != nil {
		t.Fatalf("DispatchDelivery(d2): %v", err)
	}
	if _, err := e.client.DispatchDelivery(ctx, &deliveryv1.DispatchDeliveryRequest{Id: "d3"}); err != nil {
		t.Fatalf("DispatchDelivery(d3): %v", err)
	}
	e.waitFlushed(t)
	if _, err := e.client.DeliverDelivery(ctx, &deliveryv1.DeliverDeliveryRequest{Id: "d3"}); err != nil {
		t.Fatalf("DeliverDelivery(d3): %v", err)
	}

	list := func(req *deliveryv1.ListDeliveriesRequest) ([]string, string) {
		t.Helper()
		resp, err := e.client.ListDeliveries(ctx, req)
		if err != nil {
			t.Fatalf("ListDeliveries(%v): %v", req, err)
		}
		ids := []string{}
		for _, d := range resp.GetDeliveries() {
			ids = append(ids, d.GetId())
		}
		return ids, resp.GetNextPageToken()
	}
	for _, tc := range []struct {
		name string
		req  *deliveryv1.ListDeliveriesRequest
		want []string
	}{
		{"open by default", &deliveryv1.ListDeliveriesRequest{}, []string{"d1", "p1", "d2", "p2"}},
		{"waiting", &deliveryv1.ListDeliveriesRequest{Status: deliveryv1.DeliveryStatus_DELIVERY_STATUS_WAITING}, []string{"d1", "p1", "p2"}},
		{"delivered", &deliveryv1.ListDeliveriesRequest{Status: deliveryv1.DeliveryStatus_DELIVERY_STATUS_DELIVERED}, []string{"d3"}},
		{"open pickups", &deliveryv1.ListDeliveriesRequest{Fulfillment: orderv1.Fulfillment_FULFILLMENT_PICKUP}, []string{"p1", "p2"}},
		{"waiting deliveries", &deliveryv1.ListDeliveriesRequest{
			Status: deliveryv1.DeliveryStatus_DELIVERY_STATUS_WAITING, Fulfillment: orderv1.Fulfillment_FULFILLMENT_DELIVERY}, []string{"d1"}},
	} {
		if got, tok := list(tc.req); !cmp.Equal(tc.want, got) || tok != "" {
			t.Errorf("%s: ListDeliveries = %v (next %q), want %v (no next page)", tc.name, got, tok, tc.want)
		}
	}

	// Pages of two, in ready order, ending with an empty token.
	var pages [][]string
	tok := ""
	for range 5 {
		ids, next := list(&deliveryv1.ListDeliveriesRequest{PageSize: 2, PageToken: tok})
		pages = append(pages, ids)
		if tok = next; tok == "" {
			break
		}
	}
	if diff := cmp.Diff([][]string{{"d1", "p1"}, {"d2", "p2"}}, pages); diff != "" {
		t.Errorf("pages of 2 (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		name string
		req  *deliveryv1.ListDeliveriesRequest
	}{
		{"negative page size", &deliveryv1.ListDeliveriesRequest{PageSize: -1}},
		{"unknown status", &deliveryv1.ListDeliveriesRequest{Status: 9}},
		{"unknown fulfillment", &deliveryv1.ListDeliveriesRequest{Fulfillment: 7}},
		{"made-up token", &deliveryv1.ListDeliveriesRequest{PageToken: "nosuchdelivery"}},
		{"malformed token", &deliveryv1.ListDeliveriesRequest{PageToken: "../etc"}},
	} {
		_, err := e.client.ListDeliveries(ctx, tc.req)
		checkCode(t, tc.name, err, codes.InvalidArgument, "INVALID_ARGUMENT")
	}
}

func TestListDeliveriesPageSizeCap(t *testing.T) {
	e := newEnv(t)
	for i := range 205 {
		e.seed(t, fmt.Sprintf("o%03d", i), P, i)
	}
	ctx := e.courier(t)
	for _, tc := range []struct {
		size int32
		want int
	}{{0, 50}, {7, 7}, {500, 200}} {
		resp, err := e.client.ListDeliveries(ctx, &deliveryv1.ListDeliveriesRequest{PageSize: tc.size})
		if err != nil {
			t.Fatalf("ListDeliveries(page size %d): %v", tc.size, err)
		}
		if got := len(resp.GetDeliveries()); got != tc.want || resp.GetNextPageToken() == "" {
			t.Errorf("ListDeliveries(page size %d) = %d deliveries (next %q), want %d and a next page", tc.size, got, resp.GetNextPageToken(), tc.want)
		}
	}
}

func TestHandover(t *testing.T) {
	e := newEnv(t)
	e.seed(t, "d1", D, 0)
	e.seed(t, "p1", P, 1)
	ctx := e.courier(t)
	before := time.Now().Add(-time.Second)

	disp, err := e.client.DispatchDelivery(ctx, &deliveryv1.DispatchDeliveryRequest{Id: "d1"})
	if err != nil {
		t.Fatalf("DispatchDelivery: %v", err)
	}
	d := disp.GetDelivery()
	if d.GetStatus() != deliveryv1.DeliveryStatus_DELIVERY_STATUS_OUT_FOR_DELIVERY || d.GetCourierId() != "courier-ann" ||
		d.GetRevision() != 2 || d.GetDispatchTime().AsTime().Before(before) || d.GetCompleteTime() != nil {
		t.Errorf("DispatchDelivery = %v, want OUT_FOR_DELIVERY with courier-ann, revision 2, dispatch time now, no complete time", d)
	}
	got, err := e.client.GetDelivery(ctx, &deliveryv1.GetDeliveryRequest{Id: "d1"})
	if err != nil {
		t.Fatalf("GetDelivery: %v", err)
	}
	if diff := cmp.Diff(d, got.GetDelivery(), protocmp.Transform()); diff != "" {
		t.Errorf("GetDelivery after dispatch differs from what DispatchDelivery returned (-returned +read):\n%s", diff)
	}

	e.waitFlushed(t)
	del, err := e.client.DeliverDelivery(ctx, &deliveryv1.DeliverDeliveryRequest{Id: "d1"})
	if err != nil {
		t.Fatalf("DeliverDelivery: %v", err)
	}
	if d := del.GetDelivery(); d.GetStatus() != deliveryv1.DeliveryStatus_DELIVERY_STATUS_DELIVERED || d.GetRevision() != 3 ||
		d.GetCompleteTime() == nil || d.GetCourierId() != "courier-ann" {
		t.Errorf("DeliverDelivery = %v, want DELIVERED, revision 3, complete time, courier kept", d)
	}

	// The counter is staffed by someone with the courier role too.
	pick, err := e.client.PickupDelivery(e.as(t, auth.RoleCourier, "counter-bob"), &deliveryv1.PickupDeliveryRequest{Id: "p1"})
	if err != nil {
		t.Fatalf("PickupDelivery: %v", err)
	}
	if d := pick.GetDelivery(); d.GetStatus() != deliveryv1.DeliveryStatus_DELIVERY_STATUS_PICKED_UP || d.GetRevision() != 2 ||
		d.GetCompleteTime() == nil || d.GetCourierId() != "" || d.GetAddress() != nil {
		t.Errorf("PickupDelivery = %v, want PICKED_UP, revision 2, complete time, no courier, no address", d)
	}

	// Every move is published once, in order per delivery.
	evs := e.waitPublished(t, "delivery.out_for_delivery.d1", "delivery.delivered.d1", "delivery.picked_up.p1")
	moves := map[string][]string{}
	for _, ev := range evs {
		d := ev.GetDelivery()
		moves[d.GetId()] = append(moves[d.GetId()], fmt.Sprintf("%s@%d", ev.GetStatus(), d.GetRevision()))
		if ev.GetStatus() == deliveryv1.DeliveryStatus_DELIVERY_STATUS_DELIVERED && !cmp.Equal(d, del.GetDelivery(), protocmp.Transform()) {
			t.Errorf("delivered event carries %v, want the delivery as returned: %v", d, del.GetDelivery())
		}
	}
	want := map[string][]string{
		"d1": {"DELIVERY_STATUS_OUT_FOR_DELIVERY@2", "DELIVERY_STATUS_DELIVERED@3"},
		"p1": {"DELIVERY_STATUS_PICKED_UP@2"},
	}
	if diff := cmp.Diff(want, moves); diff != "" {
		t.Errorf("published events (-want +got):\n%s", diff)
	}
}

func TestWrongMoves(t *testing.T) {
	e := newEnv(t)
	e.seed(t, "waiting", D, 0)
	e.seed(t, "out", D, 1)
	e.seed(t, "done", D, 2)
	e.seed(t, "pickup", P, 3)
	e.seed(t, "collected", P, 4)
	ctx := e.courier(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.client.DispatchDelivery(ctx, &deliveryv1.DispatchDeliveryRequest{Id: "out"})
	must(err)
	_, err = e.client.DispatchDelivery(ctx, &deliveryv1.DispatchDeliveryRequest{Id: "done"})
	must(err)
	e.waitFlushed(t)
	_, err = e.client.DeliverDelivery(ctx, &deliveryv1.DeliverDeliveryRequest{Id: "done"})
	must(err)
	_, err = e.client.PickupDelivery(ctx, &deliveryv1.PickupDeliveryRequest{Id: "collected"})
	must(err)

	e.waitFlushed(t)

	dispatch := func(id string) error {
		_, err := e.client.DispatchDelivery(e.as(t, auth.RoleCourier, "courier-cat"), &deliveryv1.DispatchDeliveryRequest{Id: id})
		return err
	}
	deliver := func(id string) error {
		_, err := e.client.DeliverDelivery(ctx, &deliveryv1.DeliverDeliveryRequest{Id: id})
		return err
	}
	pickup := func(id string) error {
		_, err := e.client.PickupDelivery(ctx, &deliveryv1.PickupDeliveryRequest{Id: id})
		return err
	}
	for _, tc := range []struct {
		name string
		err  error
		msg  string
	}{
		{"deliver a waiting delivery", deliver("waiting"), "delivery waiting is still waiting; dispatch it"},
		{"pick up a delivery order", pickup("waiting"), "delivery waiting is a delivery order"},
		{"dispatch a dispatched delivery", dispatch("out"), "already out for delivery with courier courier-ann"},
		{"pick up a dispatched delivery", pickup("out"), "is a delivery order"},
		{"dispatch a delivered order", dispatch("done"), "was already delivered"},
		{"deliver a delivered order", deliver("done"), "was already delivered"},
		{"dispatch a pickup", dispatch("pickup"), "delivery pickup is a pickup order; mark it picked up at the counter"},
		{"deliver a pickup", deliver("pickup"), "is a pickup order"},
		{"pick up a collected order", pickup("collected"), "was already picked up"},
	} {
		checkCode(t, tc.name, tc.err, codes.FailedPrecondition, "INVALID_TRANSITION")
		if tc.err != nil && !strings.Contains(tc.err.Error(), tc.msg) {
			t.Errorf("%s: error %q does not say %q", tc.name, tc.err, tc.msg)
		}
	}
	for _, id := range []string{"missing", "BAD"} {
		checkCode(t, "dispatch "+id, dispatch(id), codes.NotFound, "DELIVERY_NOT_FOUND")
		checkCode(t, "deliver "+id, deliver(id), codes.NotFound, "DELIVERY_NOT_FOUND")
		checkCode(t, "pickup "+id, pickup(id), codes.NotFound, "DELIVERY_NOT_FOUND")
	}

	// The refused moves changed nothing.
	for id, want := range map[string]int64{"waiting": 1, "out": 2, "done": 3, "pickup": 1, "collected": 2} {
		d, err := e.store.Get(testContext(t), id)
		if err != nil || d.Revision() != want {
			t.Errorf("%s after refused moves: revision %d (%v), want %d", id, d.Revision(), err, want)
		}
	}
}

// TestBackToBackMoves dispatches and delivers orders as fast as it can
// while the relay publishes: no move may be lost and each is published once.
func TestBackToBackMoves(t *testing.T) {
	e := newEnv(t)
	ctx := e.courier(t)
	const n = 20
	var subjects []string
	for i := range n {
		id := fmt.Sprintf("b%02d", i)
		e.seed(t, id, D, i)
		if _, err := e.client.DispatchDelivery(ctx, &deliveryv1.DispatchDeliveryRequest{Id: id}); err != nil {
			t.Fatalf("DispatchDelivery(%s): %v", id, err)
		}
		if _, err := e.client.DeliverDelivery(ctx, &deliveryv1.DeliverDeliveryRequest{Id: id}); err != nil {
			t.Fatalf("DeliverDelivery(%s): %v", id, err)
		}
		subjects = append(subjects, "delivery.out_for_delivery."+id, "delivery.delivered."+id)
	}
	evs := e.waitPublished(t, subjects...)
	if len(evs) != 2*n {
		t.Errorf("%d events published, want %d", len(evs), 2*n)
	}
	e.waitFlushed(t)
	for i := range n {
		id := fmt.Sprintf("b%02d", i)
		d, err := e.store.Get(testContext(t), id)
		if err != nil || d.Status() != delivery.StatusDelivered || d.Revision() != 3 {
			t.Errorf("%s = %s revision %d (%v), want DELIVERED 3", id, d.Status(), d.Revision(), err)
		}
	}
}

// TestDeliverOnlyByItsCourier: a delivery out with one courier is handed
// over by that courier; another courier tapping the wrong row on the board
// must not close it while the pizza is still on its way.
func TestDeliverOnlyByItsCourier(t *testing.T) {
	e := newEnv(t)
	e.seed(t, "d1", D, 0)
	ann, cat := e.courier(t), e.as(t, auth.RoleCourier, "courier-cat")
	if _, err := e.client.DispatchDelivery(ann, &deliveryv1.DispatchDeliveryRequest{Id: "d1"}); err != nil {
		t.Fatal(err)
	}
	_, err := e.client.DeliverDelivery(cat, &deliveryv1.DeliverDeliveryRequest{Id: "d1"})
	checkCode(t, "another courier's DeliverDelivery", err, codes.PermissionDenied, "NOT_YOUR_DELIVERY")
	if err != nil && !strings.Contains(err.Error(), "courier-ann") {
		t.Errorf("error %q does not say who has the delivery", err)
	}
	d, err := e.store.Get(testContext(t), "d1")
	if err != nil || d.Status() != delivery.StatusOutForDelivery || d.Revision() != 2 {
		t.Errorf("d1 after the refused deliver = %s revision %d (%v), want OUT_FOR_DELIVERY 2", d.Status(), d.Revision(), err)
	}
	resp, err := e.client.DeliverDelivery(ann, &deliveryv1.DeliverDeliveryRequest{Id: "d1"})
	if err != nil || resp.GetDelivery().GetStatus() != deliveryv1.DeliveryStatus_DELIVERY_STATUS_DELIVERED {
		t.Errorf("DeliverDelivery by its courier = %v, %v; want DELIVERED", resp.GetDelivery().GetStatus(), err)
	}
}
