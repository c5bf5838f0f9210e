// Package cardscan finds payment card numbers in text, so that none is ever
// accepted, stored, logged or published.
//
// A card number is 13 to 19 digits that pass the Luhn check. People and
// attackers write them in many ways, so the scan normalizes first: a digit
// is any Unicode decimal digit (full-width, Arabic-Indic, Devanagari, ...),
// and digits stay one run across any separators between them (spaces of
// every kind, punctuation such as . / _ and dashes, tabs and newlines,
// symbols) as long as the gap is short, while zero-width and other invisible format
// characters are skipped altogether. Letters end a run. Every window of 13
// to 19 consecutive digits of a run is checked, so digits written before or
// after a card number (a CVV, an expiry, a country code) do not hide it.
package cardscan

import (
	"strconv"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// Refusal is what a caller is told about a value that holds a card number,
// after the name of the field, header or parameter that holds it.
const Refusal = "looks like a payment card number; card details are never accepted here: choose PAYMENT_METHOD_CARD and pay at handover"

// Card number lengths, in digits.
const (
	MinDigits = 13
	MaxDigits = 19
)

// maxGap is how many separator characters may stand between two digits of
// one run. Invisible format characters do not count.
const maxGap = 4

// Contains reports whether s holds a card number in any of the forms the
// package comment lists.
func Contains(s string) bool {
	var (
		window [MaxDigits]byte // the last digits of the run, oldest first
		n      int             // digits held in window
		gap    int             // separators since the last digit
	)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if d, ok := digit(r); ok {
			if n == MaxDigits {
				copy(window[:], window[1:])
				n--
			}
			window[n] = d
			n++
			gap = 0
			if n >= MinDigits && luhnSuffix(window[:n]) {
				return true
			}
			continue
		}
		switch {
		case n == 0:
		case unicode.Is(unicode.Cf, r) || r == utf8.RuneError && size == 1:
			// Zero-width and other invisible characters, and stray bytes:
			// skipped, they neither join nor split a run.
		case unicode.IsLetter(r):
			n, gap = 0, 0 // a letter ends the run
		default:
			// Any other character is a separator: spaces of every kind,
			// punctuation, dashes, symbols, controls.
			if gap++; gap > maxGap {
				n, gap = 0, 0
			}
		}
	}
	return false
}

// Digits returns the decimal digits of s, in any script, as ASCII, with
// everything else dropped: a form in which a card number written with any
// separators is found by a plain substring search.
func Digits(s string) string {
	b := make([]byte, 0, len(s)/4)
	for _, r := range s {
		if d, ok := digit(r); ok {
			b = append(b, d)
		}
	}
	return string(b)
}

// digit returns the value of a Unicode decimal digit as an ASCII digit.
func digit(r rune) (byte, bool) {
	if r >= '0' && r <= '9' {
		return byte(r), true
	}
	if r < 0x80 || !unicode.IsDigit(r) {
		return 0, false
	}
	// Every range of the Nd table starts at a zero and holds whole sets of
	// ten, so a digit's value is its distance from the range's start.
	for _, rg := range unicode.Nd.R16 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return byte('0' + (r-rune(rg.Lo))%10), true
		}
	}
	for _, rg := range unicode.Nd.R32 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return byte('0' + (r-rune(rg.Lo))%10), true
		}
	}
	return 0, false
}

// luhnSuffix reports whether a suffix of digits, 13 to 19 long, passes Luhn.
func luhnSuffix(digits []byte) bool {
	// Sum the suffixes from the right: each longer suffix adds one digit on
	// the left, which is doubled when the suffix length is even.
	sum := 0
	for k := 1; k <= len(digits); k++ {
		d := int(digits[len(digits)-k] - '0')
		if k%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		if k >= MinDigits && sum%10 == 0 {
			return true
		}
	}
	return false
}

// Luhn reports whether the ASCII digits pass the Luhn checksum.
func Luhn(digits []byte) bool {
	sum := 0
	double := false
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return len(digits) > 0 && sum%10 == 0
}

// Find walks every string field of m, nested messages, lists and maps
// included, secrets (see secret) excepted, and returns the path of the first one holding a card number
// ("delivery_address.instructions", "item.topping_ids[1]").
func Find(m proto.Message) (field string, found bool) {
	if m == nil {
		return "", false
	}
	return find(m.ProtoReflect(), "")
}

func find(m protoreflect.Message, prefix string) (string, bool) {
	var path string
	var hit bool
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if secret(fd) {
			return true
		}
		name := prefix + string(fd.Name())
		switch {
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				if p, ok := value(fd, l.Get(i), func() string { return name + "[" + strconv.Itoa(i) + "]" }); ok {
					path, hit = p, true
					return false
				}
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				at := func() string { return name + "[" + k.String() + "]" }
				if Contains(k.String()) {
					// The key itself is the card number: do not echo it.
					path, hit = name, true
					return false
				}
				if p, ok := value(fd.MapValue(), mv, at); ok {
					path, hit = p, true
				}
				return !hit
			})
			if hit {
				return false
			}
		default:
			if p, ok := value(fd, v, func() string { return name }); ok {
				path, hit = p, true
				return false
			}
		}
		return true
	})
	return path, hit
}

// secret reports whether a field holds a secret that is only ever hashed,
// never stored, published or logged: a field marked debug_redact, or one
// named password. A password may be any string, digits included.
func secret(fd protoreflect.FieldDescriptor) bool {
	if fd.Name() == "password" {
		return true
	}
	opts, ok := fd.Options().(*descriptorpb.FieldOptions)
	return ok && opts.GetDebugRedact()
}

func value(fd protoreflect.FieldDescriptor, v protoreflect.Value, path func() string) (string, bool) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if Contains(v.String()) {
			return path(), true
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return find(v.Message(), path()+".")
	}
	return "", false
}

// Redact returns s, or "[redacted]" when s holds a card number: for values
// that are logged or echoed in an error.
func Redact(s string) string {
	if Contains(s) {
		return "[redacted]"
	}
	return s
}
