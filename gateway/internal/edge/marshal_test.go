package edge

import (
	"bytes"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
)

// placedOrder is the answer to POST /v1/orders as the order service gives
// it: a delivery order with two toppings, priced, just placed.
func placedOrder() *orderv1.CreateOrderResponse {
	now := timestamppb.New(time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC))
	usd := func(minor int64) *commonv1.Money { return &commonv1.Money{CurrencyCode: "USD", AmountMinor: minor} }
	return &orderv1.CreateOrderResponse{Order: &orderv1.Order{
		Id: "01JDZ8Q7X2M4N6P8R0T2V4W6Y8", CustomerId: "01JDZ8Q7X2M4N6P8R0T2V4W6Y9",
		Item:            &orderv1.OrderItem{PizzaId: "margherita", Size: commonv1.Size_SIZE_LARGE, ToppingIds: []string{"basil", "olives"}},
		Fulfillment:     orderv1.Fulfillment_FULFILLMENT_DELIVERY,
		DeliveryAddress: &commonv1.Address{Line1: "12 Main Street", City: "Springfield", PostalCode: "12345"},
		PaymentMethod:   orderv1.PaymentMethod_PAYMENT_METHOD_CASH,
		Note:            "ring twice",
		Status:          orderv1.OrderStatus_ORDER_STATUS_PLACED,
		Price: &menuv1.PriceBreakdown{
			Pizza:    &menuv1.PriceLine{ItemId: "margherita", Name: "Margherita", Price: usd(1200)},
			Toppings: []*menuv1.PriceLine{{ItemId: "basil", Name: "Basil", Price: usd(100)}, {ItemId: "olives", Name: "Olives", Price: usd(150)}},
			Total:    usd(1450), Size: commonv1.Size_SIZE_LARGE,
		},
		History:    []*orderv1.StatusChange{{Status: orderv1.OrderStatus_ORDER_STATUS_PLACED, ChangeTime: now}},
		CreateTime: now, UpdateTime: now,
	}}
}

// queuedTicket is one line of the kitchen display's stream.
func queuedTicket() *kitchenv1.WatchTicketsResponse {
	now := timestamppb.New(time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC))
	return &kitchenv1.WatchTicketsResponse{Ticket: &kitchenv1.Ticket{
		Id: "01JDZ8Q7X2M4N6P8R0T2V4W6Y8", Status: kitchenv1.TicketStatus_TICKET_STATUS_QUEUED,
		PizzaName: "Margherita", Size: commonv1.Size_SIZE_LARGE, ToppingNames: []string{"Basil", "Olives"},
		Fulfillment: orderv1.Fulfillment_FULFILLMENT_DELIVERY, Note: "ring twice", CustomerName: "Alice",
		OrderTime: now, CreateTime: now, UpdateTime: now, Revision: 1,
	}}
}

func BenchmarkMarshalOrder(b *testing.B) {
	m, resp := newJSONMarshaler(), placedOrder()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Marshal(resp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMarshalStreamLine is one message of a live stream, which
// grpc-gateway wraps as {"result": message}.
func BenchmarkMarshalStreamLine(b *testing.B) {
	m, resp := newJSONMarshaler(), queuedTicket()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Marshal(map[string]any{"result": proto.Message(resp)}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMarshalSameBytes checks the shortcuts of jsonMarshaler.Marshal
// against runtime.JSONPb with the same options, on what the gateway sends:
// responses, stream lines and stream errors, with text that encoding/json
// escapes and text it does not.
func TestMarshalSameBytes(t *testing.T) {
	m := newJSONMarshaler()
	ref := &runtime.JSONPb{MarshalOptions: m.MarshalOptions, UnmarshalOptions: m.UnmarshalOptions}
	odd := queuedTicket()
	odd.Ticket.Note = "<b>extra cheese</b> & \"crispy\" \\ café line\u2028sep\u2029 tab\t 🍕"
	odd.Ticket.CustomerName = "Zoë <script>"
	order := placedOrder()
	order.Order.Note = odd.Ticket.Note
	for name, v := range map[string]any{
		"order":                 order,
		"ticket":                queuedTicket(),
		"empty message":         &kitchenv1.WatchTicketsResponse{},
		"stream line":           map[string]any{"result": proto.Message(queuedTicket())},
		"stream line escaped":   map[string]any{"result": proto.Message(odd)},
		"stream line of order":  map[string]any{"result": proto.Message(order)},
		"stream line not proto": map[string]any{"result": []string{"a", "<b>"}},
		"stream error":          map[string]proto.Message{"error": status.New(codes.Unavailable, "a <b> & c").Proto()},
		"status":                status.New(codes.InvalidArgument, "bad <input> & more").Proto(),
	} {
		got, gerr := m.Marshal(v)
		want, werr := ref.Marshal(v)
		if (gerr != nil) != (werr != nil) {
			t.Fatalf("%s: Marshal error = %v, want %v", name, gerr, werr)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: Marshal =\n%s\nwant\n%s", name, got, want)
		}
	}
}
