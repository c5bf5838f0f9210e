package deliveryapi

import (
	"context"
	"strings"
	"time"

	"github.com/pizzashop/pizzashop/pkg/outbox"
	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	deliveryv1 "github.com/pizzashop/pizzashop/proto/pizzashop/delivery/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"github.com/pizzashop/pizzashop/services/delivery/internal/delivery"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Subject is where a delivery's change to status s is published:
// "delivery.<status in lower case>.<id>".
func Subject(s delivery.Status, id string) string {
	return "delivery." + strings.ToLower(s.String()) + "." + id
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// toProto converts a delivery for the API and for events.
func toProto(d delivery.Delivery) *deliveryv1.Delivery {
	r := d.Record()
	h := r.Handover
	out := &deliveryv1.Delivery{
		Id: r.ID, Status: deliveryv1.DeliveryStatus(r.Status), Fulfillment: orderv1.Fulfillment(h.Fulfillment),
		CustomerName: h.CustomerName, CustomerPhone: h.CustomerPhone, Summary: h.Summary,
		AmountDue:     &commonv1.Money{AmountMinor: h.AmountDue.AmountMinor, CurrencyCode: h.AmountDue.Currency},
		PaymentMethod: orderv1.PaymentMethod(h.Payment),
		ReadyTime:     timestamp(r.ReadyTime), DispatchTime: timestamp(r.DispatchTime), CompleteTime: timestamp(r.CompleteTime),
		CourierId: r.CourierID, Revision: r.Revision,
	}
	if a := h.Address; a != nil {
		out.Address = &commonv1.Address{Line1: a.Line1, Line2: a.Line2, City: a.City, PostalCode: a.PostalCode, Instructions: a.Instructions}
	}
	return out
}

// handoverFromOrder reads what the board needs from a ready order.
func handoverFromOrder(o *orderv1.Order) delivery.Handover {
	price := o.GetPrice()
	pizza := price.GetPizza().GetName()
	if pizza == "" {
		pizza = o.GetItem().GetPizzaId()
	}
	var toppings []string
	for _, l := range price.GetToppings() {
		toppings = append(toppings, l.GetName())
	}
	if len(toppings) == 0 {
		toppings = o.GetItem().GetToppingIds() // an order priced without names
	}
	size := price.GetSize()
	if size == commonv1.Size_SIZE_UNSPECIFIED {
		size = o.GetItem().GetSize()
	}
	h := delivery.Handover{
		Fulfillment:   delivery.Fulfillment(o.GetFulfillment()),
		CustomerName:  o.GetCustomerName(),
		CustomerPhone: o.GetCustomerPhone(),
		Summary:       delivery.Summary(delivery.Size(size), pizza, toppings),
		AmountDue:     delivery.Money{AmountMinor: price.GetTotal().GetAmountMinor(), Currency: price.GetTotal().GetCurrencyCode()},
		Payment:       delivery.Payment(o.GetPaymentMethod()),
	}
	if a := o.GetDeliveryAddress(); a != nil {
		h.Address = &delivery.Address{Line1: a.GetLine1(), Line2: a.GetLine2(), City: a.GetCity(), PostalCode: a.GetPostalCode(), Instructions: a.GetInstructions()}
	}
	return h
}

// statusEvent encodes the event of the delivery's current status.
func statusEvent(ctx context.Context, d delivery.Delivery) (outbox.Entry, error) {
	ev := &deliveryv1.DeliveryStatusChanged{
		EventId:   outbox.NewID(),
		OccurTime: timestamppb.New(d.UpdateTime()),
		Status:    deliveryv1.DeliveryStatus(d.Status()),
		Delivery:  toProto(d),
	}
	return outbox.NewEntry(ctx, Subject(d.Status(), d.ID()), ev.EventId, ev)
}
