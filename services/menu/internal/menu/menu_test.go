package menu_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pizzashop/pizzashop/pkg/errs"
	"github.com/pizzashop/pizzashop/services/menu/internal/menu"
)

var now = time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)

// fields lists the fields named by the violations in err, in order.
func fields(err error) []string {
	var out []string
	for _, e := range errs.Fields(err) {
		out = append(out, e.Field)
	}
	return out
}

// checkInvalid fails t unless err is an invalid-argument error naming
// exactly want.
func checkInvalid(t *testing.T, call string, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s error = nil, want invalid %v", call, want)
	}
	if k := errs.KindOf(err); k != errs.KindInvalid {
		t.Errorf("%s error kind = %v, want %v (err: %v)", call, k, errs.KindInvalid, err)
	}
	if diff := cmp.Diff(want, fields(err)); diff != "" {
		t.Errorf("%s error fields (-want +got):\n%s\nerr: %v", call, diff, err)
	}
}

func sp(s menu.Size, amount int64) menu.SizePrice { return menu.SizePrice{Size: s, Amount: amount} }

func allSizes(s, m, l int64) []menu.SizePrice {
	return []menu.SizePrice{sp(menu.SizeSmall, s), sp(menu.SizeMedium, m), sp(menu.SizeLarge, l)}
}

func TestNewPrices(t *testing.T) {
	tests := []struct {
		name       string
		in         []menu.SizePrice
		want       menu.Prices
		wantFields []string // nil: valid
		wantMsg    string   // a part of the error text
	}{
		{
			name: "all three sizes",
			in:   allSizes(900, 1200, 1500),
			want: menu.Prices{900, 1200, 1500},
		},
		{
			name: "any order",
			in:   []menu.SizePrice{sp(menu.SizeLarge, 1500), sp(menu.SizeSmall, 900), sp(menu.SizeMedium, 1200)},
			want: menu.Prices{900, 1200, 1500},
		},
		{
			name: "at the maximum",
			in:   allSizes(1, menu.MaxPriceMinor, menu.MaxPriceMinor),
			want: menu.Prices{1, menu.MaxPriceMinor, menu.MaxPriceMinor},
		},
		{
			name:       "empty",
			in:         nil,
			wantFields: []string{"p", "p", "p"},
			wantMsg:    "missing price for SIZE_SMALL",
		},
		{
			name:       "missing large",
			in:         []menu.SizePrice{sp(menu.SizeSmall, 900), sp(menu.SizeMedium, 1200)},
			wantFields: []string{"p"},
			wantMsg:    "missing price for SIZE_LARGE",
		},
		{
			name:       "duplicate size",
			in:         append(allSizes(900, 1200, 1500), sp(menu.SizeMedium, 1300)),
			wantFields: []string{"p[3].size"},
			wantMsg:    "SIZE_MEDIUM is priced twice",
		},
		{
			name:       "size 0",
			in:         append(allSizes(900, 1200, 1500), sp(0, 100)),
			wantFields: []string{"p[3].size"},
			wantMsg:    "unknown size 0",
		},
		{
			name:       "size 7 instead of large",
			in:         []menu.SizePrice{sp(menu.SizeSmall, 900), sp(menu.SizeMedium, 1200), sp(7, 1500)},
			wantFields: []string{"p[2].size", "p"},
			wantMsg:    "unknown size 7",
		},
		{
			name:       "negative",
			in:         allSizes(900, -1, 1500),
			wantFields: []string{"p[1].amount_minor"},
			wantMsg:    "must be greater than 0, got -1",
		},
		{
			name:       "zero",
			in:         allSizes(0, 1200, 1500),
			wantFields: []string{"p[0].amount_minor"},
			wantMsg:    "must be greater than 0, got 0",
		},
		{
			name:       "over max",
			in:         allSizes(900, 1200, menu.MaxPriceMinor+1),
			wantFields: []string{"p[2].amount_minor"},
			wantMsg:    "must be at most 100000",
		},
		{
			name:       "every problem at once",
			in:         []menu.SizePrice{sp(menu.SizeSmall, -5), sp(menu.SizeSmall, 100), sp(9, 100)},
			wantFields: []string{"p[0].amount_minor", "p[1].size", "p[2].size", "p", "p"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := menu.NewPrices("p", tt.in)
			if tt.wantFields == nil {
				if err != nil {
					t.Fatalf("NewPrices(%v) error = %v, want nil", tt.in, err)
				}
				if got != tt.want {
					t.Errorf("NewPrices(%v) = %v, want %v", tt.in, got, tt.want)
				}
				return
			}
			checkInvalid(t, "NewPrices", err, tt.wantFields...)
			if err != nil && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("NewPrices(%v) error = %q, want it to contain %q", tt.in, err, tt.wantMsg)
			}
			if got != (menu.Prices{}) {
				t.Errorf("NewPrices(%v) = %v on error, want zero Prices", tt.in, got)
			}
		})
	}
}

func TestPricesOf(t *testing.T) {
	p := menu.Prices{900, 1200, 1500}
	for s, want := range map[menu.Size]int64{menu.SizeSmall: 900, menu.SizeMedium: 1200, menu.SizeLarge: 1500} {
		if got := p.Of(s); got != want {
			t.Errorf("Prices%v.Of(%v) = %d, want %d", p, s, got, want)
		}
	}
}

func TestSize(t *testing.T) {
	tests := []struct {
		s     menu.Size
		valid bool
		str   string
	}{
		{0, false, "SIZE(0)"},
		{menu.SizeSmall, true, "SIZE_SMALL"},
		{menu.SizeMedium, true, "SIZE_MEDIUM"},
		{menu.SizeLarge, true, "SIZE_LARGE"},
		{4, false, "SIZE(4)"},
		{-1, false, "SIZE(-1)"},
	}
	for _, tt := range tests {
		if got := tt.s.Valid(); got != tt.valid {
			t.Errorf("Size(%d).Valid() = %v, want %v", int(tt.s), got, tt.valid)
		}
		if got := tt.s.String(); got != tt.str {
			t.Errorf("Size(%d).String() = %q, want %q", int(tt.s), got, tt.str)
		}
	}
}

func TestNewItem(t *testing.T) {
	valid := func() menu.Draft {
		return menu.Draft{ID: "margherita", Name: "Margherita", Description: "Tomato, mozzarella, basil",
			Prices: allSizes(900, 1200, 1500), Available: true}
	}
	tests := []struct {
		name       string
		kind       menu.Kind
		edit       func(*menu.Draft)
		wantID     string
		wantFields []string // nil: valid
	}{
		{name: "valid pizza", kind: menu.KindPizza, edit: func(*menu.Draft) {}, wantID: "margherita"},
		{
			name:   "valid topping",
			kind:   menu.KindTopping,
			edit:   func(d *menu.Draft) { d.ID, d.Name, d.Description = "", "Extra Mozzarella", "" },
			wantID: "extra-mozzarella",
		},
		{
			name:   "id derived from name",
			kind:   menu.KindPizza,
			edit:   func(d *menu.Draft) { d.ID, d.Name = "", "  Quattro Formaggi  " },
			wantID: "quattro-formaggi",
		},
		{
			name:   "id trimmed",
			kind:   menu.KindPizza,
			edit:   func(d *menu.Draft) { d.ID = "  margherita-2 " },
			wantID: "margherita-2",
		},
		{
			name:   "name of 60 characters",
			kind:   menu.KindPizza,
			edit:   func(d *menu.Draft) { d.Name = strings.Repeat("é", menu.MaxNameLen) },
			wantID: "margherita",
		},
		{
			name:       "empty name",
			kind:       menu.KindPizza,
			edit:       func(d *menu.Draft) { d.Name = "   " },
			wantFields: []string{"pizza.name"},
		},
		{
			name:       "name too long",
			kind:       menu.KindPizza,
			edit:       func(d *menu.Draft) { d.Name = strings.Repeat("a", menu.MaxNameLen+1) },
			wantFields: []string{"pizza.name"},
		},
		{
			name:       "upper-case id",
			kind:       menu.KindPizza,
			edit:       func(d *menu.Draft) { d.ID = "Margherita" },
			wantFields: []string{"pizza.id"},
		},
		{
			name:       "id with double dash",
			kind:       menu.KindPizza,
			edit:       func(d *menu.Draft) { d.ID = "quattro--formaggi" },
			wantFields: []string{"pizza.id"},
		},
		{
			name:       "id with space",
			kind:       menu.KindPizza,
			edit:       func(d *menu.Draft) { d.ID = "quattro formaggi" },
			wantFields: []string{"pizza.id"},
		},
		{
			name:       "id too long",
			kind:       menu.KindPizza,
			edit:       func(d *menu.Draft) { d.ID = strings.Repeat("a", menu.MaxIDLen+1) },
			wantFields: []string{"pizza.id"},
		},
		{
			name:       "no id and a name without letters a-z",
			kind:       menu.KindPizza,
			edit:       func(d *menu.Draft) { d.ID, d.Name = "", "ピザ" },
			wantFields: []string{"pizza.id"},
		},
		{
			name:       "description too long",
			kind:       menu.KindPizza,
			edit:       func(d *menu.Draft) { d.Description = strings.Repeat("x", menu.MaxDescriptionLen+1) },
			wantFields: []string{"pizza.description"},
		},
		{
			name:       "topping with description",
			kind:       menu.KindTopping,
			edit:       func(d *menu.Draft) { d.ID, d.Name = "basil", "Basil" },
			wantFields: []string{"topping.description"},
		},
		{
			name: "every problem at once",
			kind: menu.KindPizza,
			edit: func(d *menu.Draft) {
				d.ID, d.Name = "Bad Id", ""
				d.Prices = []menu.SizePrice{sp(menu.SizeSmall, 900), sp(menu.SizeMedium, -1)}
			},
			wantFields: []string{"pizza.name", "pizza.id", "pizza.prices[1].amount_minor", "pizza.prices"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := valid()
			tt.edit(&d)
			prefix := string(tt.kind)
			got, err := menu.NewItem(tt.kind, prefix, d, now)
			if tt.wantFields != nil {
				checkInvalid(t, "NewItem", err, tt.wantFields...)
				if diff := cmp.Diff(menu.Item{}, got); diff != "" {
					t.Errorf("NewItem returned an item with its error (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewItem(%s, %+v) error = %v, want nil", tt.kind, d, err)
			}
			want := menu.Item{
				ID:          tt.wantID,
				Name:        strings.TrimSpace(d.Name),
				Description: strings.TrimSpace(d.Description),
				Prices:      menu.Prices{900, 1200, 1500},
				Available:   true,
				UpdateTime:  now,
				Revision:    1,
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("NewItem(%s, %+v) (-want +got):\n%s", tt.kind, d, diff)
			}
		})
	}
}

func TestNewItemUpdateTimeUTC(t *testing.T) {
	local := now.In(time.FixedZone("CET", 3600))
	it, err := menu.NewItem(menu.KindTopping, "topping", menu.Draft{Name: "Ham", Prices: allSizes(1, 2, 3)}, local)
	if err != nil {
		t.Fatalf("NewItem: %v", err)
	}
	if it.UpdateTime.Location() != time.UTC || !it.UpdateTime.Equal(now) {
		t.Errorf("NewItem(...).UpdateTime = %v, want %v", it.UpdateTime, now)
	}
}

func TestItemApply(t *testing.T) {
	base := menu.Item{ID: "funghi", Name: "Funghi", Description: "Mushrooms", Prices: menu.Prices{1000, 1300, 1650},
		Available: true, UpdateTime: now.Add(-time.Hour), Revision: 4}
	later := now.Add(time.Minute)
	tests := []struct {
		name       string
		kind       menu.Kind
		patch      menu.Patch
		edit       func(*menu.Item) // on a copy of base, for the expected result
		wantFields []string         // nil: valid
	}{
		{
			name:  "name",
			kind:  menu.KindPizza,
			patch: menu.Patch{Name: new("  Funghi Porcini ")},
			edit:  func(it *menu.Item) { it.Name = "Funghi Porcini" },
		},
		{
			name:  "description",
			kind:  menu.KindPizza,
			patch: menu.Patch{Description: new("Porcini, thyme")},
			edit:  func(it *menu.Item) { it.Description = "Porcini, thyme" },
		},
		{
			name:  "clear description",
			kind:  menu.KindPizza,
			patch: menu.Patch{Description: new("")},
			edit:  func(it *menu.Item) { it.Description = "" },
		},
		{
			name:  "prices",
			kind:  menu.KindPizza,
			patch: menu.Patch{Prices: allSizes(1100, 1400, 1700), SetPrices: true},
			edit:  func(it *menu.Item) { it.Prices = menu.Prices{1100, 1400, 1700} },
		},
		{
			name:  "sold out",
			kind:  menu.KindPizza,
			patch: menu.Patch{Available: new(false)},
			edit:  func(it *menu.Item) { it.Available = false },
		},
		{
			name:  "every field",
			kind:  menu.KindPizza,
			patch: menu.Patch{Name: new("F"), Description: new("D"), Prices: allSizes(1, 2, 3), SetPrices: true, Available: new(false)},
			edit: func(it *menu.Item) {
				it.Name, it.Description, it.Prices, it.Available = "F", "D", menu.Prices{1, 2, 3}, false
			},
		},
		{
			name:       "empty patch",
			kind:       menu.KindPizza,
			patch:      menu.Patch{},
			wantFields: []string{"update_mask"},
		},
		{
			name:       "prices named but none given",
			kind:       menu.KindPizza,
			patch:      menu.Patch{SetPrices: true},
			wantFields: []string{"pizza.prices", "pizza.prices", "pizza.prices"},
		},
		{
			name:       "empty name",
			kind:       menu.KindPizza,
			patch:      menu.Patch{Name: new(" ")},
			wantFields: []string{"pizza.name"},
		},
		{
			name:       "topping description",
			kind:       menu.KindTopping,
			patch:      menu.Patch{Description: new("nice")},
			wantFields: []string{"topping.description"},
		},
		{
			name:       "every problem at once",
			kind:       menu.KindPizza,
			patch:      menu.Patch{Name: new(""), Prices: allSizes(1, 0, 3), SetPrices: true, Available: new(false)},
			wantFields: []string{"pizza.name", "pizza.prices[1].amount_minor"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it := base
			got, err := it.Apply(tt.kind, string(tt.kind), tt.patch, later)
			if diff := cmp.Diff(base, it); diff != "" {
				t.Errorf("Apply changed its receiver (-want +got):\n%s", diff)
			}
			if tt.wantFields != nil {
				checkInvalid(t, "Apply", err, tt.wantFields...)
				return
			}
			if err != nil {
				t.Fatalf("Apply(%+v) error = %v, want nil", tt.patch, err)
			}
			want := base
			tt.edit(&want)
			want.Revision = base.Revision + 1
			want.UpdateTime = later
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Apply(%+v) (-want +got):\n%s", tt.patch, diff)
			}
		})
	}
}

func TestPatchEmpty(t *testing.T) {
	tests := []struct {
		p    menu.Patch
		want bool
	}{
		{menu.Patch{}, true},
		{menu.Patch{Prices: allSizes(1, 2, 3)}, true}, // prices without SetPrices change nothing
		{menu.Patch{Name: new("")}, false},
		{menu.Patch{Description: new("")}, false},
		{menu.Patch{SetPrices: true}, false},
		{menu.Patch{Available: new(true)}, false},
	}
	for _, tt := range tests {
		if got := tt.p.Empty(); got != tt.want {
			t.Errorf("%+v.Empty() = %v, want %v", tt.p, got, tt.want)
		}
	}
}

func TestSlug(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Margherita", "margherita"},
		{"Quattro Formaggi", "quattro-formaggi"},
		{"  Veggie   Garden  ", "veggie-garden"},
		{"BBQ Chicken #2", "bbq-chicken-2"},
		{"4 Stagioni", "4-stagioni"},
		{"--Hot--&--Spicy--", "hot-spicy"},
		{"Jalapeños", "jalapenos"},
		{"Crème Brûlée", "creme-brulee"},
		{"", ""},
		{"!!!", ""},
		{"ピザ", ""},
		{strings.Repeat("a", 45), strings.Repeat("a", menu.MaxIDLen)},
		// Cut at the limit, then no dash left dangling.
		{strings.Repeat("a", 39) + " b", strings.Repeat("a", 39)},
	}
	for _, tt := range tests {
		if got := menu.Slug(tt.in); got != tt.want {
			t.Errorf("Slug(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSlugIsValidID(t *testing.T) {
	for _, name := range []string{"Margherita", "A  b", "x-y_z", "Jalapeños", strings.Repeat("ab ", 30)} {
		slug := menu.Slug(name)
		_, err := menu.NewItem(menu.KindTopping, "topping", menu.Draft{ID: slug, Name: "n", Prices: allSizes(1, 2, 3)}, now)
		if err != nil {
			t.Errorf("Slug(%q) = %q, not a valid id: %v", name, slug, err)
		}
	}
}

func TestSeed(t *testing.T) {
	pizzas, toppings := menu.Seed(now)
	if len(pizzas) < 6 {
		t.Errorf("Seed has %d pizzas, want at least 6", len(pizzas))
	}
	if len(toppings) < 10 {
		t.Errorf("Seed has %d toppings, want at least 10", len(toppings))
	}
	check := func(kind menu.Kind, items []menu.Item) {
		ids := map[string]bool{}
		for _, it := range items {
			if ids[it.ID] {
				t.Errorf("Seed: %s id %q appears twice", kind, it.ID)
			}
			ids[it.ID] = true
			// Every seeded item must be one NewItem would have accepted.
			var prices []menu.SizePrice
			for _, s := range menu.Sizes {
				prices = append(prices, sp(s, it.Prices.Of(s)))
			}
			if _, err := menu.NewPrices("prices", prices); err != nil {
				t.Errorf("Seed: %s %q prices %v: %v", kind, it.ID, it.Prices, err)
			}
			d := menu.Draft{ID: it.ID, Name: it.Name, Description: it.Description, Prices: prices, Available: it.Available}
			valid, err := menu.NewItem(kind, string(kind), d, now)
			if err != nil {
				t.Errorf("Seed: %s %q is not valid: %v", kind, it.ID, err)
				continue
			}
			if diff := cmp.Diff(valid, it); diff != "" {
				t.Errorf("Seed: %s %q differs from NewItem of itself (-new +seed):\n%s", kind, it.ID, diff)
			}
			if !it.Available || it.Revision != 1 {
				t.Errorf("Seed: %s %q available %v revision %d, want true 1", kind, it.ID, it.Available, it.Revision)
			}
			if it.Prices.Of(menu.SizeSmall) >= it.Prices.Of(menu.SizeMedium) || it.Prices.Of(menu.SizeMedium) >= it.Prices.Of(menu.SizeLarge) {
				t.Errorf("Seed: %s %q prices %v do not grow with size", kind, it.ID, it.Prices)
			}
		}
	}
	check(menu.KindPizza, pizzas)
	check(menu.KindTopping, toppings)
}

func TestSeedFresh(t *testing.T) {
	// Two calls share nothing: changing one seed leaves the next intact.
	p1, _ := menu.Seed(now)
	p1[0].Name = "changed"
	p2, _ := menu.Seed(now)
	if p2[0].Name == "changed" {
		t.Errorf("Seed returned shared items")
	}
}

func TestErrorsSentinels(t *testing.T) {
	tests := []struct {
		err    error
		kind   errs.Kind
		reason string
	}{
		{menu.ErrSoldOut, errs.KindFailedPrecondition, "SOLD_OUT"},
		{menu.ErrNotFound, errs.KindNotFound, "MENU_ITEM_NOT_FOUND"},
		{menu.ErrExists, errs.KindAlreadyExists, "MENU_ITEM_EXISTS"},
	}
	for _, tt := range tests {
		e, ok := errors.AsType[*errs.Error](tt.err)
		if !ok || e.Kind != tt.kind || e.Reason != tt.reason {
			t.Errorf("%v = %+v, want kind %v reason %s", tt.err, e, tt.kind, tt.reason)
		}
	}
}

func TestItemApplyBasedOnRead(t *testing.T) {
	base := menu.Item{ID: "funghi", Name: "Funghi", Prices: menu.Prices{1000, 1300, 1650}, Available: true, UpdateTime: now, Revision: 4}
	read := now
	got, err := base.Apply(menu.KindPizza, "pizza", menu.Patch{Available: new(false), Read: &read}, now.Add(time.Second))
	if err != nil || got.Available {
		t.Fatalf("Apply(read at the item's update time) = %+v, %v; want sold out", got, err)
	}
	stale := now.Add(-time.Second)
	_, err = base.Apply(menu.KindPizza, "pizza", menu.Patch{Available: new(false), Read: &stale}, now.Add(time.Second))
	if !errors.Is(err, menu.ErrChanged) || errs.KindOf(err) != errs.KindConflict {
		t.Errorf("Apply(read before the item's update time) error = %v, want ErrChanged", err)
	}
	if diff := cmp.Diff([]string{"pizza.update_time"}, fields(err)); diff != "" {
		t.Errorf("Apply(stale read) fields (-want +got):\n%s", diff)
	}
}

func TestItemApplyMovesUpdateTimeForward(t *testing.T) {
	base := menu.Item{ID: "funghi", Name: "Funghi", Prices: menu.Prices{1000, 1300, 1650}, UpdateTime: now, Revision: 4}
	for _, at := range []time.Time{now, now.Add(-time.Hour)} {
		got, err := base.Apply(menu.KindPizza, "pizza", menu.Patch{Available: new(true)}, at)
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if want := now.Add(time.Millisecond); !got.UpdateTime.Equal(want) {
			t.Errorf("Apply at %v of an item updated at %v: update time = %v, want %v", at, now, got.UpdateTime, want)
		}
	}
}

// TestNamesAndDescriptionsShowAsTyped: a name must show something, and
// neither a name nor a description may hold control characters, which
// break the pages and tickets that print them.
func TestNamesAndDescriptionsShowAsTyped(t *testing.T) {
	tests := []struct {
		name       string
		draft      menu.Draft
		patch      menu.Patch
		wantFields []string
	}{
		{"invisible name", menu.Draft{ID: "x", Name: "\u200b\u200b"}, menu.Patch{Name: new("\u200b")}, []string{"pizza.name"}},
		{"control character in name", menu.Draft{Name: "Mar\x1b[2Jgherita"}, menu.Patch{Name: new("Mar\x00gherita")}, []string{"pizza.name"}},
		{"line break in name", menu.Draft{Name: "Mar\ngherita"}, menu.Patch{Name: new("Mar\r\ngherita")}, []string{"pizza.name"}},
		{"control character in description", menu.Draft{Name: "Margherita", Description: "Tomato\x07"}, menu.Patch{Description: new("To\x1bmato")}, []string{"pizza.description"}},
	}
	base := menu.Item{ID: "funghi", Name: "Funghi", Prices: menu.Prices{1000, 1300, 1650}, UpdateTime: now, Revision: 1}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.draft
			d.Prices = allSizes(900, 1200, 1500)
			_, err := menu.NewItem(menu.KindPizza, "pizza", d, now)
			checkInvalid(t, "NewItem", err, tt.wantFields...)
			_, err = base.Apply(menu.KindPizza, "pizza", tt.patch, now)
			checkInvalid(t, "Apply", err, tt.wantFields...)
		})
	}
	// Line breaks in a description are fine; so are accents and emoji.
	if _, err := menu.NewItem(menu.KindPizza, "pizza", menu.Draft{Name: "Jalapeño 🌶", Description: "Hot.\nVery hot.", Prices: allSizes(1, 2, 3)}, now); err != nil {
		t.Errorf("NewItem(a name with an accent and an emoji, a two-line description): %v", err)
	}
}

func TestCheckCurrency(t *testing.T) {
	for _, c := range []string{"EUR", "USD", "GBP"} {
		if err := menu.CheckCurrency(c); err != nil {
			t.Errorf("CheckCurrency(%q) = %v, want nil", c, err)
		}
	}
	for _, c := range []string{"", "eur", "EURO", "E1R", "€"} {
		if err := menu.CheckCurrency(c); err == nil {
			t.Errorf("CheckCurrency(%q) = nil, want an error", c)
		}
	}
}
