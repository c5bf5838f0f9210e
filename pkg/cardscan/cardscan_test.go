package cardscan

import (
	"testing"

	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
)

func TestContains(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"4111111111111111", true},                 // Visa test number, 16 digits
		{"4111 1111 1111 1111", true},              // grouped by spaces
		{"4111-1111-1111-1111", true},              // grouped by dashes
		{"pay with 5555555555554444 please", true}, // inside text
		{"378282246310005", true},                  // Amex, 15 digits
		{"6011111111111117", true},                 // Discover
		{"4222222222222", true},                    // 13 digits
		{"4111111111111112", false},                // fails Luhn
		{"411111111111", false},                    // 12 digits
		{"41111111111111111111", false},            // 20 digits
		{"4111  1111 1111 1111", false},            // double space breaks the run
		{"ring +1 555 123 4567", false},            // a phone number
		{"", false},
		{"no digits here", false},
		{"flat 12, door code 4455", false},
	}
	for _, tt := range tests {
		if got := Contains(tt.in); got != tt.want {
			t.Errorf("Contains(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestFind(t *testing.T) {
	tests := []struct {
		name string
		msg  *orderv1.CreateOrderRequest
		want string
	}{
		{"clean", &orderv1.CreateOrderRequest{Note: "extra crispy", Item: &orderv1.OrderItem{PizzaId: "margherita", ToppingIds: []string{"olives"}}}, ""},
		{"note", &orderv1.CreateOrderRequest{Note: "card 4111 1111 1111 1111"}, "note"},
		{"nested", &orderv1.CreateOrderRequest{DeliveryAddress: &commonv1.Address{Line1: "Main St 1", Instructions: "4111111111111111"}}, "delivery_address.instructions"},
		{"list", &orderv1.CreateOrderRequest{Item: &orderv1.OrderItem{ToppingIds: []string{"olives", "5555555555554444"}}}, "item.topping_ids[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found := Find(tt.msg)
			if got != tt.want || found != (tt.want != "") {
				t.Errorf("Find() = %q, %v; want %q, %v", got, found, tt.want, tt.want != "")
			}
		})
	}
}
