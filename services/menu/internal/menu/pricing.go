package menu

import (
	"errors"
	"fmt"
	"time"

	"github.com/pizzashop/pizzashop/pkg/errs"
)

// Errors callers branch on.
var (
	// ErrSoldOut: the pizza or a topping exists but cannot be ordered now.
	ErrSoldOut = errs.New(errs.KindFailedPrecondition, "SOLD_OUT", "sold out")
	// ErrNotFound: no menu item has that id.
	ErrNotFound = errs.New(errs.KindNotFound, "MENU_ITEM_NOT_FOUND", "no such menu item")
	// ErrChanged: the item changed since the read a change was based on.
	ErrChanged = errs.New(errs.KindConflict, "MENU_ITEM_CHANGED", "the item changed since it was read")
	// ErrExists: an item with that id is already on the menu.
	ErrExists = errs.New(errs.KindAlreadyExists, "MENU_ITEM_EXISTS", "an item with this id already exists")
)

// Menu is the whole menu as read at one moment.
type Menu struct {
	Pizzas   []Item
	Toppings []Item
	Currency string
}

// Version is the sum of every item's revision: it grows with every change
// and is the same for two reads of the same menu, with no counter to keep.
func (m Menu) Version() int64 {
	var v int64
	for _, it := range m.Pizzas {
		v += it.Revision
	}
	for _, it := range m.Toppings {
		v += it.Revision
	}
	return v
}

// UpdateTime is when the menu last changed.
func (m Menu) UpdateTime() time.Time {
	var t time.Time
	for _, list := range [][]Item{m.Pizzas, m.Toppings} {
		for _, it := range list {
			if it.UpdateTime.After(t) {
				t = it.UpdateTime
			}
		}
	}
	return t
}

// Line is one priced item.
type Line struct {
	ID     string
	Name   string
	Amount int64
}

// Breakdown is a priced pizza.
type Breakdown struct {
	Size     Size
	Pizza    Line
	Toppings []Line
	Total    int64
	Currency string
}

// Price prices one pizza of size s with the given toppings, and checks the
// order rules: a known size, a known and available pizza, at most three
// distinct known and available toppings. Every problem names its field; of
// a list of more than three toppings only the first four are checked.
func (m Menu) Price(pizzaID string, s Size, toppingIDs []string) (Breakdown, error) {
	var problems []error
	if !s.Valid() {
		problems = append(problems, errs.Invalid("size", "must be SIZE_SMALL, SIZE_MEDIUM or SIZE_LARGE, got %d", int(s)))
	}
	if len(toppingIDs) > MaxToppings {
		problems = append(problems, errs.Invalid("topping_ids", "at most %d toppings per pizza, got %d", MaxToppings, len(toppingIDs)))
		// Only the first few are looked at: the work and the error stay
		// small however long the list.
		toppingIDs = toppingIDs[:MaxToppings+1]
	}
	// Sold-out problems go last: a request wrong in itself is invalid
	// whatever is in stock, and the first problem decides the error's kind.
	var soldOut []error
	note := func(err error) {
		if errors.Is(err, ErrSoldOut) {
			soldOut = append(soldOut, err)
		} else {
			problems = append(problems, err)
		}
	}
	pizza, err := find(m.Pizzas, "pizza_id", "pizza", pizzaID)
	note(err)
	seen := map[string]bool{}
	toppings := make([]Item, 0, len(toppingIDs))
	for i, id := range toppingIDs {
		field := fmt.Sprintf("topping_ids[%d]", i)
		if seen[id] {
			problems = append(problems, errs.Invalid(field, "topping %q is listed twice; each topping may appear once", id))
			continue
		}
		seen[id] = true
		t, err := find(m.Toppings, field, "topping", id)
		note(err)
		toppings = append(toppings, t)
	}
	if err := errors.Join(append(problems, soldOut...)...); err != nil {
		return Breakdown{}, err
	}
	b := Breakdown{Size: s, Currency: m.Currency, Pizza: Line{ID: pizza.ID, Name: pizza.Name, Amount: pizza.Prices.Of(s)}}
	b.Total = b.Pizza.Amount
	for _, t := range toppings {
		l := Line{ID: t.ID, Name: t.Name, Amount: t.Prices.Of(s)}
		b.Toppings = append(b.Toppings, l)
		b.Total += l.Amount
	}
	return b, nil
}

func find(items []Item, field, what, id string) (Item, error) {
	if id == "" {
		return Item{}, errs.Invalid(field, "must name a %s", what)
	}
	for _, it := range items {
		if it.ID != id {
			continue
		}
		if !it.Available {
			return Item{}, errs.Wrap(ErrSoldOut, field, "%s %q is sold out", what, id)
		}
		return it, nil
	}
	return Item{}, errs.Invalid(field, "unknown %s %q", what, id)
}
