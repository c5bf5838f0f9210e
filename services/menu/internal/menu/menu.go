// Package menu holds the menu's rules: what a valid pizza or topping is, and
// how one pizza with its toppings is priced. It knows nothing of gRPC, Mongo
// or NATS.
package menu

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pizzashop/pizzashop/pkg/errs"
	"golang.org/x/text/unicode/norm"
)

// Size is a pizza size. The shop sells exactly three.
type Size int

// The sizes, numbered as in the API.
const (
	SizeSmall  Size = 1
	SizeMedium Size = 2
	SizeLarge  Size = 3
)

// Sizes lists the sizes in order.
var Sizes = [...]Size{SizeSmall, SizeMedium, SizeLarge}

// Valid reports whether s is one of the three sizes.
func (s Size) Valid() bool { return s >= SizeSmall && s <= SizeLarge }

func (s Size) String() string {
	switch s {
	case SizeSmall:
		return "SIZE_SMALL"
	case SizeMedium:
		return "SIZE_MEDIUM"
	case SizeLarge:
		return "SIZE_LARGE"
	}
	return fmt.Sprintf("SIZE(%d)", int(s))
}

// Limits on menu items.
const (
	MaxNameLen        = 60
	MaxDescriptionLen = 300
	MaxIDLen          = 40
	MaxPriceMinor     = 100_000 // 1000.00 in the menu currency
	MaxToppings       = 3
)

// CheckCurrency checks the menu currency: an ISO 4217 code, three
// upper-case letters. Every price carries it, and the pages format prices
// with it, so a wrong one breaks them all.
func CheckCurrency(code string) error {
	if len(code) != 3 || strings.ContainsFunc(code, func(r rune) bool { return r < 'A' || r > 'Z' }) {
		return fmt.Errorf("currency %q is not an ISO 4217 code of three upper-case letters, such as EUR or USD", code)
	}
	return nil
}

// Prices is one price per size, in minor units. The zero value is invalid.
type Prices [3]int64

// Of returns the price of size s.
func (p Prices) Of(s Size) int64 { return p[s-1] }

// SizePrice is a price as it arrives from a client, before validation.
type SizePrice struct {
	Size   Size
	Amount int64
}

// NewPrices validates a list of prices: exactly one per size, each above
// zero. field names the list in errors, for example "pizza.prices".
func NewPrices(field string, in []SizePrice) (Prices, error) {
	var p Prices
	var problems []error
	for i, sp := range in {
		f := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case !sp.Size.Valid():
			problems = append(problems, errs.Invalid(f+".size", "unknown size %d: must be SIZE_SMALL, SIZE_MEDIUM or SIZE_LARGE", int(sp.Size)))
			continue
		case p[sp.Size-1] != 0:
			problems = append(problems, errs.Invalid(f+".size", "%s is priced twice", sp.Size))
			continue
		case sp.Amount <= 0:
			problems = append(problems, errs.Invalid(f+".amount_minor", "must be greater than 0, got %d", sp.Amount))
		case sp.Amount > MaxPriceMinor:
			problems = append(problems, errs.Invalid(f+".amount_minor", "must be at most %d, got %d", MaxPriceMinor, sp.Amount))
		}
		p[sp.Size-1] = sp.Amount
	}
	for _, s := range Sizes {
		if p.Of(s) == 0 && !hasSize(in, s) {
			problems = append(problems, errs.Invalid(field, "missing price for %s", s))
		}
	}
	if err := errors.Join(problems...); err != nil {
		return Prices{}, err
	}
	return p, nil
}

func hasSize(in []SizePrice, s Size) bool {
	for _, sp := range in {
		if sp.Size == s {
			return true
		}
	}
	return false
}

// Item is what pizzas and toppings have in common. Fields are exported for
// the adapters; build and change items through NewItem and Item.Patch so
// their rules hold.
type Item struct {
	ID          string
	Name        string
	Description string
	Prices      Prices
	Available   bool
	UpdateTime  time.Time
	// Revision counts the writes of the item; the menu version is their sum.
	Revision int64
}

// Kind tells pizzas from toppings.
type Kind string

// The kinds of menu item.
const (
	KindPizza   Kind = "pizza"
	KindTopping Kind = "topping"
)

var idPattern = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// Draft is an item as a client describes it, before validation.
type Draft struct {
	ID          string
	Name        string
	Description string
	Prices      []SizePrice
	Available   bool
}

// NewItem validates a draft of the given kind. An empty id is derived from
// the name. Every problem is reported, each naming its field under prefix
// (for example "pizza").
func NewItem(kind Kind, prefix string, d Draft, now time.Time) (Item, error) {
	it := Item{
		ID:          strings.TrimSpace(d.ID),
		Name:        strings.TrimSpace(d.Name),
		Description: strings.TrimSpace(d.Description),
		Available:   d.Available,
		UpdateTime:  now.UTC(),
		Revision:    1,
	}
	var problems []error
	if it.ID == "" {
		it.ID = Slug(it.Name)
		if it.ID == "" && it.Name != "" {
			problems = append(problems, errs.Invalid(prefix+".id", "cannot be derived from name %q: give one of lower-case letters, digits and single dashes", it.Name))
		}
	}
	problems = append(problems, checkName(prefix, it.Name))
	if it.ID != "" && (len(it.ID) > MaxIDLen || !idPattern.MatchString(it.ID)) {
		problems = append(problems, errs.Invalid(prefix+".id", "must be 1 to %d lower-case letters, digits and single dashes, got %q", MaxIDLen, it.ID))
	}
	problems = append(problems, checkDescription(kind, prefix, it.Description))
	p, err := NewPrices(prefix+".prices", d.Prices)
	problems = append(problems, err)
	it.Prices = p
	if err := errors.Join(problems...); err != nil {
		return Item{}, err
	}
	return it, nil
}

func checkName(prefix, name string) error {
	n := utf8.RuneCountInString(name)
	if n == 0 {
		return errs.Invalid(prefix+".name", "must not be empty")
	}
	if n > MaxNameLen {
		return errs.Invalid(prefix+".name", "must be at most %d characters, got %d", MaxNameLen, n)
	}
	if i := strings.IndexFunc(name, unicode.IsControl); i >= 0 {
		return errs.Invalid(prefix+".name", "must be one line without control characters, got %U at byte %d", []rune(name[i:])[0], i)
	}
	if !strings.ContainsFunc(name, visible) {
		return errs.Invalid(prefix+".name", "must have at least one visible character")
	}
	return nil
}

// visible reports whether r shows as something on a page.
func visible(r rune) bool { return unicode.IsGraphic(r) && !unicode.IsSpace(r) }

func checkDescription(kind Kind, prefix, desc string) error {
	if kind == KindTopping && desc != "" {
		return errs.Invalid(prefix+".description", "toppings have no description")
	}
	if n := utf8.RuneCountInString(desc); n > MaxDescriptionLen {
		return errs.Invalid(prefix+".description", "must be at most %d characters, got %d", MaxDescriptionLen, n)
	}
	// Line breaks and tabs are fine in a description; other controls are not.
	if i := strings.IndexFunc(desc, func(r rune) bool { return unicode.IsControl(r) && !strings.ContainsRune("\n\r\t", r) }); i >= 0 {
		return errs.Invalid(prefix+".description", "must not hold control characters, got %U at byte %d", []rune(desc[i:])[0], i)
	}
	return nil
}

// Patch names the fields of an update; nil fields are left as they are.
type Patch struct {
	Name        *string
	Description *string
	Prices      []SizePrice
	SetPrices   bool
	Available   *bool
	// Read, when set, is the update time of the item as the caller read
	// it: the patch applies only if nobody changed the item since, so a
	// form saved from a stale read cannot write back another manager's
	// fields as they were.
	Read *time.Time
}

// Empty reports whether the patch changes nothing.
func (p Patch) Empty() bool {
	return p.Name == nil && p.Description == nil && !p.SetPrices && p.Available == nil
}

// Apply returns the item with the patch applied and its revision bumped, or
// the reasons the patch is invalid. The receiver is not changed.
func (it Item) Apply(kind Kind, prefix string, p Patch, now time.Time) (Item, error) {
	if p.Empty() {
		return Item{}, errs.Invalid("update_mask", "names no field to change")
	}
	if p.Read != nil && !p.Read.Equal(it.UpdateTime) {
		return Item{}, errs.Wrap(ErrChanged, prefix+".update_time",
			"%s %q changed at %s, after the update time %s this change was based on: read it again and redo the change",
			kind, it.ID, it.UpdateTime.Format(time.RFC3339Nano), p.Read.UTC().Format(time.RFC3339Nano))
	}
	out := it
	var problems []error
	if p.Name != nil {
		out.Name = strings.TrimSpace(*p.Name)
		problems = append(problems, checkName(prefix, out.Name))
	}
	if p.Description != nil {
		out.Description = strings.TrimSpace(*p.Description)
		problems = append(problems, checkDescription(kind, prefix, out.Description))
	}
	if p.SetPrices {
		prices, err := NewPrices(prefix+".prices", p.Prices)
		problems = append(problems, err)
		out.Prices = prices
	}
	if p.Available != nil {
		out.Available = *p.Available
	}
	if err := errors.Join(problems...); err != nil {
		return Item{}, err
	}
	// Every change moves the update time forward, even two in one
	// millisecond (the precision the store keeps) or from a replica whose
	// clock is behind: callers tell versions of an item apart by it.
	out.UpdateTime = now.UTC()
	if !out.UpdateTime.After(it.UpdateTime) {
		out.UpdateTime = it.UpdateTime.Add(time.Millisecond)
	}
	out.Revision = it.Revision + 1
	return out, nil
}

// Slug turns a name into an id: "Quattro Formaggi" -> "quattro-formaggi".
// Letters outside a-z and digits become dashes; accents are dropped.
func Slug(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range norm.NFD.String(strings.ToLower(name)) {
		switch {
		case unicode.Is(unicode.Mn, r): // an accent split off its letter
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		case b.Len() > 0 && !dash:
			b.WriteByte('-')
			dash = true
		}
	}
	s := strings.TrimSuffix(b.String(), "-")
	if len(s) > MaxIDLen {
		s = strings.TrimSuffix(s[:MaxIDLen], "-")
	}
	return s
}
