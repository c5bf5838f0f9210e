// Package cardscan finds payment card numbers in text, so that none is ever
// accepted, stored, logged or published. A card number is 13 to 19 digits,
// optionally grouped by single spaces or dashes, that pass the Luhn check.
package cardscan

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Contains reports whether s holds a run of 13 to 19 digits, separated at
// most by single spaces or dashes, that passes the Luhn check.
func Contains(s string) bool {
	var digits []byte
	flush := func() bool {
		ok := len(digits) >= 13 && len(digits) <= 19 && Luhn(digits)
		digits = digits[:0]
		return ok
	}
	prevDigit := false
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r >= '0' && r <= '9':
			digits = append(digits, byte(r))
			prevDigit = true
		case (r == ' ' || r == '-') && prevDigit && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			prevDigit = false // a single separator inside a run
		default:
			if flush() {
				return true
			}
			prevDigit = false
		}
		i += size
	}
	return flush()
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

// Find walks every string field of m, nested messages and lists included,
// and returns the path of the first one holding a card number
// ("delivery_address.instructions", "item.topping_ids[1]").
func Find(m proto.Message) (field string, found bool) {
	return find(m.ProtoReflect(), "")
}

func find(m protoreflect.Message, prefix string) (string, bool) {
	var path string
	var hit bool
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := prefix + string(fd.Name())
		switch {
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				p := fmt.Sprintf("%s[%d]", name, i)
				if p, ok := value(fd, l.Get(i), p); ok {
					path, hit = p, true
					return false
				}
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				p := fmt.Sprintf("%s[%v]", name, k.Interface())
				if Contains(k.String()) {
					path, hit = p, true
					return false
				}
				if p, ok := value(fd.MapValue(), mv, p); ok {
					path, hit = p, true
				}
				return !hit
			})
			if hit {
				return false
			}
		default:
			if p, ok := value(fd, v, name); ok {
				path, hit = p, true
				return false
			}
		}
		return true
	})
	return path, hit
}

func value(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) (string, bool) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return path, Contains(v.String())
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return find(v.Message(), path+".")
	}
	return "", false
}
