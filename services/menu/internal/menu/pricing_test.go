package menu_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/pizzashop/pizzashop/pkg/errs"
	"github.com/pizzashop/pizzashop/services/menu/internal/menu"
)

// testMenu is a small menu with one sold-out pizza and one sold-out topping.
func testMenu() menu.Menu {
	item := func(id, name string, s, m, l int64, available bool, rev int64) menu.Item {
		return menu.Item{ID: id, Name: name, Prices: menu.Prices{s, m, l}, Available: available, UpdateTime: now, Revision: rev}
	}
	return menu.Menu{
		Currency: "EUR",
		Pizzas: []menu.Item{
			item("margherita", "Margherita", 900, 1200, 1500, true, 1),
			item("funghi", "Funghi", 1000, 1300, 1650, true, 3),
			item("diavola", "Diavola", 1100, 1450, 1800, false, 2),
		},
		Toppings: []menu.Item{
			item("ham", "Ham", 175, 225, 275, true, 1),
			item("olives", "Black olives", 100, 150, 200, true, 1),
			item("basil", "Fresh basil", 50, 75, 100, true, 5),
			item("rocket", "Rocket", 75, 100, 125, true, 1),
			item("burrata", "Burrata", 300, 400, 500, false, 2),
		},
	}
}

func TestPrice(t *testing.T) {
	m := testMenu()
	line := func(id, name string, amount int64) menu.Line { return menu.Line{ID: id, Name: name, Amount: amount} }
	tests := []struct {
		name     string
		pizza    string
		size     menu.Size
		toppings []string
		want     menu.Breakdown
	}{
		{
			name:  "no toppings",
			pizza: "margherita", size: menu.SizeMedium,
			want: menu.Breakdown{Size: menu.SizeMedium, Currency: "EUR", Pizza: line("margherita", "Margherita", 1200), Total: 1200},
		},
		{
			name:  "one topping, small",
			pizza: "funghi", size: menu.SizeSmall, toppings: []string{"ham"},
			want: menu.Breakdown{Size: menu.SizeSmall, Currency: "EUR", Pizza: line("funghi", "Funghi", 1000),
				Toppings: []menu.Line{line("ham", "Ham", 175)}, Total: 1175},
		},
		{
			name:  "two toppings, large",
			pizza: "margherita", size: menu.SizeLarge, toppings: []string{"olives", "basil"},
			want: menu.Breakdown{Size: menu.SizeLarge, Currency: "EUR", Pizza: line("margherita", "Margherita", 1500),
				Toppings: []menu.Line{line("olives", "Black olives", 200), line("basil", "Fresh basil", 100)}, Total: 1800},
		},
		{
			name:  "three toppings, in the order given",
			pizza: "funghi", size: menu.SizeMedium, toppings: []string{"rocket", "ham", "olives"},
			want: menu.Breakdown{Size: menu.SizeMedium, Currency: "EUR", Pizza: line("funghi", "Funghi", 1300),
				Toppings: []menu.Line{line("rocket", "Rocket", 100), line("ham", "Ham", 225), line("olives", "Black olives", 150)},
				Total:    1775},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := m.Price(tt.pizza, tt.size, tt.toppings)
			if err != nil {
				t.Fatalf("Price(%q, %v, %q) error = %v, want nil", tt.pizza, tt.size, tt.toppings, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Price(%q, %v, %q) (-want +got):\n%s", tt.pizza, tt.size, tt.toppings, diff)
			}
			sum := got.Pizza.Amount
			for _, l := range got.Toppings {
				sum += l.Amount
			}
			if got.Total != sum {
				t.Errorf("Price(%q, %v, %q) total = %d, want the sum of its lines %d", tt.pizza, tt.size, tt.toppings, got.Total, sum)
			}
		})
	}
}

func TestPriceEverySize(t *testing.T) {
	m := testMenu()
	want := map[menu.Size]int64{menu.SizeSmall: 900 + 175, menu.SizeMedium: 1200 + 225, menu.SizeLarge: 1500 + 275}
	for _, s := range menu.Sizes {
		b, err := m.Price("margherita", s, []string{"ham"})
		if err != nil {
			t.Fatalf("Price(margherita, %v, [ham]): %v", s, err)
		}
		if b.Total != want[s] {
			t.Errorf("Price(margherita, %v, [ham]) total = %d, want %d", s, b.Total, want[s])
		}
	}
}

func TestPriceRejects(t *testing.T) {
	m := testMenu()
	tests := []struct {
		name       string
		pizza      string
		size       menu.Size
		toppings   []string
		wantKind   errs.Kind
		wantFields []string
		wantMsg    string
	}{
		{
			name:  "four toppings",
			pizza: "margherita", size: menu.SizeSmall, toppings: []string{"ham", "olives", "basil", "rocket"},
			wantKind: errs.KindInvalid, wantFields: []string{"topping_ids"}, wantMsg: "at most 3 toppings",
		},
		{
			name:  "duplicate topping",
			pizza: "margherita", size: menu.SizeSmall, toppings: []string{"ham", "olives", "ham"},
			wantKind: errs.KindInvalid, wantFields: []string{"topping_ids[2]"}, wantMsg: `"ham" is listed twice`,
		},
		{
			name:  "unknown pizza",
			pizza: "hawaii", size: menu.SizeSmall,
			wantKind: errs.KindInvalid, wantFields: []string{"pizza_id"}, wantMsg: `unknown pizza "hawaii"`,
		},
		{
			name:  "empty pizza id",
			pizza: "", size: menu.SizeSmall,
			wantKind: errs.KindInvalid, wantFields: []string{"pizza_id"}, wantMsg: "must name a pizza",
		},
		{
			name:  "a pizza id is not a topping id",
			pizza: "ham", size: menu.SizeSmall,
			wantKind: errs.KindInvalid, wantFields: []string{"pizza_id"}, wantMsg: `unknown pizza "ham"`,
		},
		{
			name:  "unknown topping",
			pizza: "margherita", size: menu.SizeSmall, toppings: []string{"ham", "pineapple"},
			wantKind: errs.KindInvalid, wantFields: []string{"topping_ids[1]"}, wantMsg: `unknown topping "pineapple"`,
		},
		{
			name:  "empty topping id",
			pizza: "margherita", size: menu.SizeSmall, toppings: []string{""},
			wantKind: errs.KindInvalid, wantFields: []string{"topping_ids[0]"}, wantMsg: "must name a topping",
		},
		{
			name:  "size unspecified",
			pizza: "margherita", size: 0,
			wantKind: errs.KindInvalid, wantFields: []string{"size"}, wantMsg: "got 0",
		},
		{
			name:  "fourth size",
			pizza: "margherita", size: 4,
			wantKind: errs.KindInvalid, wantFields: []string{"size"}, wantMsg: "got 4",
		},
		{
			name:  "sold-out pizza",
			pizza: "diavola", size: menu.SizeSmall,
			wantKind: errs.KindFailedPrecondition, wantFields: []string{"pizza_id"}, wantMsg: `pizza "diavola" is sold out`,
		},
		{
			name:  "sold-out topping",
			pizza: "margherita", size: menu.SizeLarge, toppings: []string{"ham", "burrata"},
			wantKind: errs.KindFailedPrecondition, wantFields: []string{"topping_ids[1]"}, wantMsg: `topping "burrata" is sold out`,
		},
		{
			name:  "every problem at once",
			pizza: "", size: 9, toppings: []string{"ham", "ham", "nope", "olives"},
			wantKind:   errs.KindInvalid,
			wantFields: []string{"size", "topping_ids", "pizza_id", "topping_ids[1]", "topping_ids[2]"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := m.Price(tt.pizza, tt.size, tt.toppings)
			if err == nil {
				t.Fatalf("Price(%q, %v, %q) = %+v, want an error", tt.pizza, tt.size, tt.toppings, got)
			}
			if diff := cmp.Diff(menu.Breakdown{}, got); diff != "" {
				t.Errorf("Price returned a breakdown with its error (-want +got):\n%s", diff)
			}
			if k := errs.KindOf(err); k != tt.wantKind {
				t.Errorf("Price(%q, %v, %q) error kind = %v, want %v (err: %v)", tt.pizza, tt.size, tt.toppings, k, tt.wantKind, err)
			}
			if diff := cmp.Diff(tt.wantFields, fields(err)); diff != "" {
				t.Errorf("Price(%q, %v, %q) error fields (-want +got):\n%s", tt.pizza, tt.size, tt.toppings, diff)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Price(%q, %v, %q) error = %q, want it to contain %q", tt.pizza, tt.size, tt.toppings, err, tt.wantMsg)
			}
			soldOut := tt.wantKind == errs.KindFailedPrecondition
			if got := errors.Is(err, menu.ErrSoldOut); got != soldOut {
				t.Errorf("errors.Is(Price(%q, %v, %q), ErrSoldOut) = %v, want %v", tt.pizza, tt.size, tt.toppings, got, soldOut)
			}
			if soldOut {
				e, _ := errors.AsType[*errs.Error](err)
				if e == nil || e.Reason != "SOLD_OUT" {
					t.Errorf("Price(%q, %v, %q) error = %+v, want reason SOLD_OUT", tt.pizza, tt.size, tt.toppings, e)
				}
			}
		})
	}
}

func TestVersion(t *testing.T) {
	m := testMenu()
	// Pizzas 1+3+2, toppings 1+1+5+1+2.
	if got, want := m.Version(), int64(6+10); got != want {
		t.Fatalf("Version() = %d, want %d", got, want)
	}
	if got := (menu.Menu{}).Version(); got != 0 {
		t.Errorf("empty Menu.Version() = %d, want 0", got)
	}

	before := m.Version()
	changed, err := m.Toppings[0].Apply(menu.KindTopping, "topping", menu.Patch{Available: new(false)}, now)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	m.Toppings[0] = changed
	if got := m.Version(); got != before+1 {
		t.Errorf("Version() after one change = %d, want %d", got, before+1)
	}

	added, err := menu.NewItem(menu.KindPizza, "pizza", menu.Draft{Name: "Marinara", Prices: allSizes(1, 2, 3)}, now)
	if err != nil {
		t.Fatalf("NewItem: %v", err)
	}
	m.Pizzas = append(m.Pizzas, added)
	if got := m.Version(); got != before+2 {
		t.Errorf("Version() after an added pizza = %d, want %d", got, before+2)
	}

	if a, b := testMenu().Version(), testMenu().Version(); a != b {
		t.Errorf("Version() of two reads of one menu = %d and %d, want equal", a, b)
	}
}

func TestMenuUpdateTime(t *testing.T) {
	m := testMenu()
	if got := m.UpdateTime(); !got.Equal(now) {
		t.Errorf("UpdateTime() = %v, want %v", got, now)
	}
	later := now.Add(time.Hour)
	m.Toppings[2].UpdateTime = later
	if got := m.UpdateTime(); !got.Equal(later) {
		t.Errorf("UpdateTime() = %v, want the latest item's %v", got, later)
	}
	if got := (menu.Menu{}).UpdateTime(); !got.IsZero() {
		t.Errorf("empty Menu.UpdateTime() = %v, want zero", got)
	}
}

func TestPriceLooksAtFewToppings(t *testing.T) {
	m := testMenu()
	ids := make([]string, 10_000)
	for i := range ids {
		ids[i] = fmt.Sprintf("nope-%d", i)
	}
	_, err := m.Price("margherita", menu.SizeSmall, ids)
	if n := len(errs.Fields(err)); n > menu.MaxToppings+2 {
		t.Errorf("Price(10,000 unknown toppings) reported %d problems, want at most %d", n, menu.MaxToppings+2)
	}
}

// TestPriceInvalidBeforeSoldOut: a request that is wrong in itself is
// invalid whatever is in stock. A sold-out item must not turn an unknown
// topping, a duplicate or a bad size into SOLD_OUT, which tells the client
// to try again later with the same request.
func TestPriceInvalidBeforeSoldOut(t *testing.T) {
	m := testMenu()
	tests := []struct {
		name       string
		pizza      string
		size       menu.Size
		toppings   []string
		wantFields []string
	}{
		{"sold-out pizza, unknown topping", "diavola", menu.SizeSmall, []string{"pineapple"}, []string{"pizza_id", "topping_ids[0]"}},
		{"sold-out pizza, bad size", "diavola", 7, nil, []string{"size", "pizza_id"}},
		{"sold-out topping, duplicate topping", "margherita", menu.SizeSmall, []string{"burrata", "ham", "ham"}, []string{"topping_ids[0]", "topping_ids[2]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.Price(tt.pizza, tt.size, tt.toppings)
			if k := errs.KindOf(err); k != errs.KindInvalid {
				t.Errorf("Price(%q, %v, %q) error kind = %v, want %v (err: %v)", tt.pizza, tt.size, tt.toppings, k, errs.KindInvalid, err)
			}
			if e, _ := errors.AsType[*errs.Error](err); e == nil || e.Reason != "INVALID_ARGUMENT" {
				t.Errorf("Price(%q, %v, %q) error = %+v, want reason INVALID_ARGUMENT", tt.pizza, tt.size, tt.toppings, e)
			}
			if diff := cmp.Diff(tt.wantFields, fields(err), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("Price(%q, %v, %q) error fields (-want +got):\n%s", tt.pizza, tt.size, tt.toppings, diff)
			}
		})
	}
}
