package orderapi

import (
	"context"
	"testing"

	"github.com/pizzashop/pizzashop/pkg/errs"
	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// toppingMenu knows two toppings, olives and mushrooms, at 100 each, and
// refuses any other as the menu service does.
type toppingMenu struct{ menuv1.MenuServiceClient }

func (toppingMenu) PriceOrder(_ context.Context, req *menuv1.PriceOrderRequest, _ ...grpc.CallOption) (*menuv1.PriceOrderResponse, error) {
	usd := func(n int64) *commonv1.Money { return &commonv1.Money{CurrencyCode: "USD", AmountMinor: n} }
	b := &menuv1.PriceBreakdown{Pizza: &menuv1.PriceLine{ItemId: req.GetPizzaId(), Name: req.GetPizzaId(), Price: usd(900)}, Size: req.GetSize()}
	total := int64(900)
	for _, id := range req.GetToppingIds() {
		if id != "olives" && id != "mushrooms" {
			return nil, status.Errorf(codes.InvalidArgument, "unknown topping %q", id)
		}
		b.Toppings = append(b.Toppings, &menuv1.PriceLine{ItemId: id, Name: id, Price: usd(100)})
		total += 100
	}
	b.Total = usd(total)
	return &menuv1.PriceOrderResponse{Price: b}, nil
}

// TestPriceCacheKeepsItemsApart: a cached price answers only the item it
// was asked for. A topping id made of two known ids joined by a comma is
// not those two toppings, and must still reach the menu, which refuses it.
func TestPriceCacheKeepsItemsApart(t *testing.T) {
	s, _ := newServer(t)
	s.menu = toppingMenu{}
	two := pickup("margherita")
	two.Item.ToppingIds = []string{"olives", "mushrooms"}
	if _, err := s.CreateOrder(asCustomer(t, "ann", "two"), two); err != nil {
		t.Fatal(err)
	}
	for _, ids := range [][]string{{"mushrooms,olives"}, {"olives,mushrooms"}} {
		one := pickup("margherita")
		one.Item.ToppingIds = ids
		o, err := s.CreateOrder(asCustomer(t, "ann", "one-"+ids[0]), one)
		if errs.KindOf(err) != errs.KindInvalid {
			t.Errorf("CreateOrder(toppings %q) = %v, %v; want the menu's refusal of an unknown topping", ids, o.GetOrder().GetItem(), err)
		}
	}
}
