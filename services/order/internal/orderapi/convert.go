package orderapi

import (
	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"github.com/pizzashop/pizzashop/services/order/internal/order"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func requestFromProto(req *orderv1.CreateOrderRequest) order.Request {
	r := order.Request{
		Fulfillment: order.Fulfillment(req.GetFulfillment()),
		Payment:     order.Payment(req.GetPaymentMethod()),
		Note:        req.GetNote(),
		Address:     addressFromProto(req.GetDeliveryAddress()),
	}
	if it := req.GetItem(); it != nil {
		r.Item = order.Item{PizzaID: it.GetPizzaId(), Size: order.Size(it.GetSize()), ToppingIDs: it.GetToppingIds()}
	}
	return r
}

func addressFromProto(a *commonv1.Address) *order.Address {
	if a == nil {
		return nil
	}
	return &order.Address{Line1: a.GetLine1(), Line2: a.GetLine2(), City: a.GetCity(), PostalCode: a.GetPostalCode(), Instructions: a.GetInstructions()}
}

func addressToProto(a *order.Address) *commonv1.Address {
	if a == nil {
		return nil
	}
	return &commonv1.Address{Line1: a.Line1, Line2: a.Line2, City: a.City, PostalCode: a.PostalCode, Instructions: a.Instructions}
}

func priceFromProto(b *menuv1.PriceBreakdown) order.Price {
	line := func(l *menuv1.PriceLine) order.Line {
		return order.Line{ID: l.GetItemId(), Name: l.GetName(), Amount: l.GetPrice().GetAmountMinor()}
	}
	p := order.Price{Pizza: line(b.GetPizza()), Total: b.GetTotal().GetAmountMinor(), Currency: b.GetTotal().GetCurrencyCode()}
	for _, t := range b.GetToppings() {
		p.Toppings = append(p.Toppings, line(t))
	}
	return p
}

func priceToProto(p order.Price, size order.Size) *menuv1.PriceBreakdown {
	money := func(a int64) *commonv1.Money { return &commonv1.Money{AmountMinor: a, CurrencyCode: p.Currency} }
	line := func(l order.Line) *menuv1.PriceLine {
		return &menuv1.PriceLine{ItemId: l.ID, Name: l.Name, Price: money(l.Amount)}
	}
	out := &menuv1.PriceBreakdown{Pizza: line(p.Pizza), Total: money(p.Total), Size: commonv1.Size(size)}
	for _, t := range p.Toppings {
		out.Toppings = append(out.Toppings, line(t))
	}
	return out
}

// ToProto converts an order for the API and for events.
func ToProto(o *order.Order) *orderv1.Order {
	out := &orderv1.Order{
		Id: o.ID, CustomerId: o.Customer.ID, CustomerName: o.Customer.Name, CustomerPhone: o.Customer.Phone,
		Item:            &orderv1.OrderItem{PizzaId: o.Item.PizzaID, Size: commonv1.Size(o.Item.Size), ToppingIds: o.Item.ToppingIDs},
		Fulfillment:     orderv1.Fulfillment(o.Fulfillment),
		DeliveryAddress: addressToProto(o.Address),
		PaymentMethod:   orderv1.PaymentMethod(o.Payment),
		Note:            o.Note,
		Status:          orderv1.OrderStatus(o.Status),
		Price:           priceToProto(o.Price, o.Item.Size),
		CreateTime:      timestamppb.New(o.CreateTime),
		UpdateTime:      timestamppb.New(o.UpdateTime),
		RejectionReason: o.RejectionReason,
		Revision:        o.Revision,
	}
	if !o.EstimatedReadyTime.IsZero() {
		out.EstimatedReadyTime = timestamppb.New(o.EstimatedReadyTime)
	}
	for _, c := range o.History {
		out.History = append(out.History, &orderv1.StatusChange{Status: orderv1.OrderStatus(c.Status), ChangeTime: timestamppb.New(c.Time), Reason: c.Reason})
	}
	return out
}

func profileToProto(p order.Profile) *orderv1.Customer {
	return &orderv1.Customer{Id: p.ID, Name: p.Name, Email: p.Email, Phone: p.Phone, Address: addressToProto(p.Address), CreateTime: timestamppb.New(p.CreateTime)}
}
