package ids

import (
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	for id, want := range map[string]bool{
		"01j9zq3k":              true,
		"abc123":                true,
		"":                      false,
		"ABC":                   false,
		"a-b":                   false,
		"a.b":                   false,
		"a*":                    false,
		strings.Repeat("a", 64): true,
		strings.Repeat("a", 65): false,
	} {
		if got := Valid(id); got != want {
			t.Errorf("Valid(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestNew(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := New()
		if !Valid(id) || len(id) != 26 {
			t.Fatalf("New() = %q, want 26 valid characters", id)
		}
		if seen[id] {
			t.Fatalf("New() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestDerive(t *testing.T) {
	a := Derive("order", "ann", "key-1")
	if !Valid(a) || len(a) != len(New()) {
		t.Errorf("Derive = %q, want a valid id as long as New's", a)
	}
	if b := Derive("order", "ann", "key-1"); b != a {
		t.Errorf("Derive twice = %q, %q; want the same id", a, b)
	}
	for _, parts := range [][]string{{"order", "ann", "key-2"}, {"order", "bob", "key-1"}, {"order", "annkey-1"}, {"order", "ann", "key", "-1"}} {
		if got := Derive(parts...); got == a {
			t.Errorf("Derive(%q) = %q, the id of (order, ann, key-1)", parts, got)
		}
	}
}
