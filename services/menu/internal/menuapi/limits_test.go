package menuapi_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// TestPriceOrderBoundsInput checks that a pricing request, which anyone may
// send, costs and answers the same small amount however long its lists: the
// issue's 64 KB body of bad toppings drew a 3.56 MB error.
func TestPriceOrderBoundsInput(t *testing.T) {
	e := newEnv(t)
	many := make([]string, 2000) // ~13 KB, under the 16 KiB cap
	for i := range many {
		many[i] = fmt.Sprintf("t%d", i)
	}
	tests := []struct {
		name string
		req  *menuv1.PriceOrderRequest
		want []string
	}{
		{"thousands of toppings", &menuv1.PriceOrderRequest{PizzaId: "margherita", Size: commonv1.Size_SIZE_SMALL, ToppingIds: many}, []string{"topping_ids"}},
		{"long pizza id", &menuv1.PriceOrderRequest{PizzaId: strings.Repeat("p", 41), Size: commonv1.Size_SIZE_SMALL}, []string{"pizza_id"}},
		{"long topping id", &menuv1.PriceOrderRequest{PizzaId: "margherita", Size: commonv1.Size_SIZE_SMALL, ToppingIds: []string{"ham", strings.Repeat("t", 5000)}}, []string{"topping_ids[1]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.client.PriceOrder(testContext(t), tt.req)
			checkCode(t, "PriceOrder", err, codes.InvalidArgument)
			if diff := cmp.Diff(tt.want, violations(err)); diff != "" {
				t.Errorf("PriceOrder field violations (-want +got):\n%s", diff)
			}
			if in, out := proto.Size(tt.req), proto.Size(status.Convert(err).Proto()); out > 1024 {
				t.Errorf("a %d byte request drew a %d byte error, want at most 1 KiB", in, out)
			}
		})
	}
}
