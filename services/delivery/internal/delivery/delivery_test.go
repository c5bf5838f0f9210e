package delivery_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pizzashop/pizzashop/pkg/errs"
	"github.com/pizzashop/pizzashop/services/delivery/internal/delivery"
)

var (
	ready = time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)
	now   = ready.Add(5 * time.Minute)
	later = now.Add(20 * time.Minute)
)

func handover(f delivery.Fulfillment) delivery.Handover {
	h := delivery.Handover{
		Fulfillment: f, CustomerName: "Ada Lovelace", CustomerPhone: "+44 20 7946 0000",
		Summary: "Large Margherita + mushrooms", AmountDue: delivery.Money{AmountMinor: 1650, Currency: "EUR"},
		Payment: delivery.PaymentCash,
	}
	if f == delivery.FulfillmentDelivery {
		h.Address = &delivery.Address{Line1: "12 Analytical Row", City: "London", PostalCode: "N1 7AA"}
	}
	return h
}

// at returns a delivery of fulfillment f moved to status s.
func at(t *testing.T, f delivery.Fulfillment, s delivery.Status) delivery.Delivery {
	t.Helper()
	d, err := delivery.New("o1", handover(f), ready, ready)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	var steps []func() error
	switch s {
	case delivery.StatusOutForDelivery:
		steps = append(steps, func() error { return d.Dispatch("courier-1", ready) })
	case delivery.StatusDelivered:
		steps = append(steps, func() error { return d.Dispatch("courier-1", ready) }, func() error { return d.Deliver("courier-1", ready) })
	case delivery.StatusPickedUp:
		steps = append(steps, func() error { return d.Pickup(ready) })
	}
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("moving %s delivery to %s: %v", f, s, err)
		}
	}
	return d
}

func TestNew(t *testing.T) {
	d, err := delivery.New("o1", handover(delivery.FulfillmentDelivery), ready, now)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	want := delivery.Record{
		ID: "o1", Status: delivery.StatusWaiting, Handover: handover(delivery.FulfillmentDelivery),
		ReadyTime: ready, UpdateTime: now, Revision: 1,
	}
	if diff := cmp.Diff(want, d.Record()); diff != "" {
		t.Errorf("New record (-want +got):\n%s", diff)
	}

	// A pickup keeps no address, even if the order carried one.
	h := handover(delivery.FulfillmentPickup)
	h.Address = &delivery.Address{Line1: "somewhere"}
	d, err = delivery.New("o2", h, time.Time{}, now)
	if err != nil {
		t.Fatalf("New(pickup): %v", err)
	}
	if r := d.Record(); r.Handover.Address != nil || !r.ReadyTime.Equal(now) {
		t.Errorf("New(pickup) address = %v, ready = %v; want nil, %v (now)", r.Handover.Address, r.ReadyTime, now)
	}

	for _, tc := range []struct {
		name, id string
		f        delivery.Fulfillment
		field    string
	}{
		{"empty id", "", delivery.FulfillmentDelivery, "id"},
		{"upper-case id", "O1", delivery.FulfillmentDelivery, "id"},
		{"long id", strings.Repeat("a", 65), delivery.FulfillmentDelivery, "id"},
		{"no fulfillment", "o1", 0, "fulfillment"},
		{"unknown fulfillment", "o1", 3, "fulfillment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := delivery.New(tc.id, handover(tc.f), ready, now)
			if errs.KindOf(err) != errs.KindInvalid || len(errs.Fields(err)) != 1 || errs.Fields(err)[0].Field != tc.field {
				t.Errorf("New(%q, fulfillment %d) error = %v, want invalid %s", tc.id, tc.f, err, tc.field)
			}
		})
	}
}

func TestRecordIsACopy(t *testing.T) {
	d := at(t, delivery.FulfillmentDelivery, delivery.StatusWaiting)
	r := d.Record()
	r.Handover.Address.Line1 = "elsewhere"
	if got := d.Record().Handover.Address.Line1; got != "12 Analytical Row" {
		t.Errorf("address after changing a record = %q, want it unchanged", got)
	}
	back := delivery.Restore(d.Record())
	if diff := cmp.Diff(d.Record(), back.Record()); diff != "" {
		t.Errorf("Restore(Record()) (-want +got):\n%s", diff)
	}
}

func TestMoves(t *testing.T) {
	type move struct {
		name string
		do   func(d *delivery.Delivery) error
	}
	dispatch := move{"Dispatch", func(d *delivery.Delivery) error { return d.Dispatch("courier-7", later) }}
	deliver := move{"Deliver", func(d *delivery.Delivery) error { return d.Deliver("courier-1", later) }}
	pickup := move{"Pickup", func(d *delivery.Delivery) error { return d.Pickup(later) }}

	const (
		D = delivery.FulfillmentDelivery
		P = delivery.FulfillmentPickup
	)
	for _, tc := range []struct {
		f    delivery.Fulfillment
		from delivery.Status
		move move
		// to is the status after the move; zero when it must fail, with
		// msg in the error.
		to  delivery.Status
		msg string
	}{
		{D, delivery.StatusWaiting, dispatch, delivery.StatusOutForDelivery, ""},
		{D, delivery.StatusWaiting, deliver, 0, "is still waiting; dispatch it"},
		{D, delivery.StatusWaiting, pickup, 0, "is a delivery order; dispatch it to a courier"},
		{D, delivery.StatusOutForDelivery, dispatch, 0, "already out for delivery with courier courier-1"},
		{D, delivery.StatusOutForDelivery, deliver, delivery.StatusDelivered, ""},
		{D, delivery.StatusOutForDelivery, pickup, 0, "is a delivery order"},
		{D, delivery.StatusDelivered, dispatch, 0, "was already delivered"},
		{D, delivery.StatusDelivered, deliver, 0, "was already delivered"},
		{D, delivery.StatusDelivered, pickup, 0, "was already delivered"},
		{P, delivery.StatusWaiting, dispatch, 0, "is a pickup order; mark it picked up at the counter"},
		{P, delivery.StatusWaiting, deliver, 0, "is a pickup order; mark it picked up at the counter"},
		{P, delivery.StatusWaiting, pickup, delivery.StatusPickedUp, ""},
		{P, delivery.StatusPickedUp, dispatch, 0, "was already picked up"},
		{P, delivery.StatusPickedUp, deliver, 0, "was already picked up"},
		{P, delivery.StatusPickedUp, pickup, 0, "was already picked up"},
	} {
		t.Run(tc.f.String()+"/"+tc.from.String()+"/"+tc.move.name, func(t *testing.T) {
			d := at(t, tc.f, tc.from)
			before := d.Record()
			err := tc.move.do(&d)
			got := d.Record()
			if tc.to == 0 {
				if !errors.Is(err, delivery.ErrInvalidTransition) {
					t.Fatalf("%s on %s %s delivery: error = %v, want ErrInvalidTransition", tc.move.name, tc.from, tc.f, err)
				}
				if errs.KindOf(err) != errs.KindFailedPrecondition {
					t.Errorf("error kind = %v, want %v", errs.KindOf(err), errs.KindFailedPrecondition)
				}
				if msg := err.Error(); !strings.Contains(msg, tc.msg) || !strings.HasPrefix(msg, "delivery o1 ") {
					t.Errorf("error = %q, want it to start with %q and say %q", msg, "delivery o1 ", tc.msg)
				}
				if diff := cmp.Diff(before, got); diff != "" {
					t.Errorf("a refused move changed the delivery (-before +after):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s on %s %s delivery: %v", tc.move.name, tc.from, tc.f, err)
			}
			want := before
			want.Status = tc.to
			want.UpdateTime = later
			want.Revision = before.Revision + 1
			switch tc.to {
			case delivery.StatusOutForDelivery:
				want.DispatchTime, want.CourierID = later, "courier-7"
			default:
				want.CompleteTime = later
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("after %s (-want +got):\n%s", tc.move.name, diff)
			}
		})
	}
}

func TestDispatchNeedsACourier(t *testing.T) {
	d := at(t, delivery.FulfillmentDelivery, delivery.StatusWaiting)
	err := d.Dispatch("  ", now)
	if errs.KindOf(err) != errs.KindInvalid {
		t.Errorf("Dispatch(\"  \") error = %v, want invalid courier_id", err)
	}
	if d.Status() != delivery.StatusWaiting || d.Revision() != 1 {
		t.Errorf("after refused Dispatch: status %s revision %d, want WAITING 1", d.Status(), d.Revision())
	}
}

func TestSummary(t *testing.T) {
	for _, tc := range []struct {
		size     delivery.Size
		pizza    string
		toppings []string
		want     string
	}{
		{delivery.SizeLarge, "Margherita", []string{"Mushrooms", "Black olives"}, "Large Margherita + mushrooms, black olives"},
		{delivery.SizeSmall, "Funghi", nil, "Small Funghi"},
		{delivery.SizeMedium, "Diavola", []string{"BBQ sauce", "Jalapeños"}, "Medium Diavola + BBQ sauce, jalapeños"},
		{0, "Marinara", []string{" ", "Ham"}, "Marinara + ham"},
	} {
		if got := delivery.Summary(tc.size, tc.pizza, tc.toppings); got != tc.want {
			t.Errorf("Summary(%d, %q, %q) = %q, want %q", tc.size, tc.pizza, tc.toppings, got, tc.want)
		}
	}
}

func TestDeliverOnlyByItsCourier(t *testing.T) {
	d := at(t, delivery.FulfillmentDelivery, delivery.StatusOutForDelivery)
	err := d.Deliver("courier-2", later)
	if !errors.Is(err, delivery.ErrNotYourDelivery) || errs.KindOf(err) != errs.KindPermissionDenied {
		t.Errorf("Deliver by another courier = %v, want ErrNotYourDelivery", err)
	}
	if d.Status() != delivery.StatusOutForDelivery || d.Revision() != 2 {
		t.Errorf("after refused Deliver: status %s revision %d, want OUT_FOR_DELIVERY 2", d.Status(), d.Revision())
	}
}
