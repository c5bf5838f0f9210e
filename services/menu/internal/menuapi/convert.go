package menuapi

import (
	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	"github.com/pizzashop/pizzashop/services/menu/internal/menu"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func pricesToProto(p menu.Prices) []*menuv1.SizePrice {
	out := make([]*menuv1.SizePrice, 0, len(menu.Sizes))
	for _, s := range menu.Sizes {
		out = append(out, &menuv1.SizePrice{Size: commonv1.Size(s), AmountMinor: p.Of(s)})
	}
	return out
}

func pricesFromProto(in []*menuv1.SizePrice) []menu.SizePrice {
	out := make([]menu.SizePrice, len(in))
	for i, sp := range in {
		out[i] = menu.SizePrice{Size: menu.Size(sp.GetSize()), Amount: sp.GetAmountMinor()}
	}
	return out
}

func pizzaToProto(it menu.Item) *menuv1.Pizza {
	return &menuv1.Pizza{Id: it.ID, Name: it.Name, Description: it.Description, Prices: pricesToProto(it.Prices),
		Available: it.Available, UpdateTime: timestamppb.New(it.UpdateTime)}
}

func toppingToProto(it menu.Item) *menuv1.Topping {
	return &menuv1.Topping{Id: it.ID, Name: it.Name, Prices: pricesToProto(it.Prices),
		Available: it.Available, UpdateTime: timestamppb.New(it.UpdateTime)}
}

func menuToProto(m menu.Menu) *menuv1.Menu {
	out := &menuv1.Menu{Version: m.Version(), CurrencyCode: m.Currency, UpdateTime: timestamppb.New(m.UpdateTime())}
	for _, it := range m.Pizzas {
		out.Pizzas = append(out.Pizzas, pizzaToProto(it))
	}
	for _, it := range m.Toppings {
		out.Toppings = append(out.Toppings, toppingToProto(it))
	}
	return out
}

func money(amount int64, currency string) *commonv1.Money {
	return &commonv1.Money{AmountMinor: amount, CurrencyCode: currency}
}

func breakdownToProto(b menu.Breakdown) *menuv1.PriceBreakdown {
	line := func(l menu.Line) *menuv1.PriceLine {
		return &menuv1.PriceLine{ItemId: l.ID, Name: l.Name, Price: money(l.Amount, b.Currency)}
	}
	out := &menuv1.PriceBreakdown{Pizza: line(b.Pizza), Total: money(b.Total, b.Currency), Size: commonv1.Size(b.Size)}
	for _, t := range b.Toppings {
		out.Toppings = append(out.Toppings, line(t))
	}
	return out
}
