package cardscan

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
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
		{"4111  1111 1111 1111", true},             // double space
		{"4111.1111.1111.1111", true},
		{"4111/1111/1111/1111", true},
		{"4111\t1111\t1111\t1111", true},
		{"4111\u00a01111\u00a01111\u00a01111", true}, // no-break space
		{"4111\u20131111\u20131111\u20131111", true}, // en dash
		{"4111_1111_1111_1111", true},
		{"4111\n1111\n1111\n1111", true},
		{"4111 - 1111 - 1111 - 1111", true},
		{"\uff14\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11", true}, // full-width
		{"\u0664\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661", true}, // Arabic-Indic
		{"\u096a\u0967\u0967\u0967 \u0967\u0967\u0967\u0967 1111 1111", true},                                      // Devanagari mixed with ASCII
		{"4\u200b1\u200b1\u200b1111111111111", true},                                                               // zero-width space
		{"41\u200d11\u200c1111\ufeff11111111", true},                                                               // zero-width joiner, non-joiner, BOM
		{"4\u200b\u200b\u200b\u200b\u200b111111111111111", true},                                                   // many invisible characters
		{"4249 7851 8245 2929 123", true},                                                                          // with a CVV
		{"4249 7851 8245 2929 12 28", true},                                                                        // with an expiry
		{"1 4111 1111 1111 1111", true},                                                                            // a digit before
		{"99 4111111111111111 99", true},                                                                           // digits on both sides
		{"4111111111111111a", true},
		{"a4111111111111111", true},
		{"4111111111111113", false},        // fails Luhn, and no window passes
		{"411111111111", false},            // 12 digits
		{"4111     1111 1111 1111", false}, // five spaces split the run
		{"4111 x 1111 1111 1111", false},   // a letter splits the run
		{"ring +1 555 123 4567", false},    // a phone number
		{"", false},
		{"no digits here", false},
		{"flat 12, door code 4455", false},
		{"order at 18:30 on 2026-11-30", false},
		{"\xff\xfe4111", false},
		{"hello-world-" + strings.Repeat("7", 12), false},
	}
	for _, tt := range tests {
		if got := Contains(tt.in); got != tt.want {
			t.Errorf("Contains(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestDigits(t *testing.T) {
	if got := Digits("4\u200b1-\uff11 \u0661x1"); got != "41111" {
		t.Errorf("Digits = %q, want 41111", got)
	}
}

func TestLuhn(t *testing.T) {
	for in, want := range map[string]bool{"4111111111111111": true, "4111111111111112": false, "0": true, "": false, "79927398713": true} {
		if got := Luhn([]byte(in)); got != want {
			t.Errorf("Luhn(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestDigitCoversEveryUnicodeDigit(t *testing.T) {
	for _, tab := range []*unicode.RangeTable{unicode.Nd} {
		for r := rune(0); r <= unicode.MaxRune; r++ {
			if !unicode.Is(tab, r) {
				continue
			}
			d, ok := digit(r)
			if !ok {
				t.Fatalf("digit(%U) not recognized", r)
			}
			// Each set of ten starts at a zero: the next nine follow in order.
			if d == '0' {
				for k := rune(1); k <= 9; k++ {
					if got, _ := digit(r + k); got != byte('0'+k) {
						t.Fatalf("digit(%U) = %q, want %q", r+k, got, '0'+k)
					}
				}
			}
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
		{"full-width", &orderv1.CreateOrderRequest{Note: "\uff14\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11"}, "note"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found := Find(tt.msg)
			if got != tt.want || found != (tt.want != "") {
				t.Errorf("Find() = %q, %v; want %q, %v", got, found, tt.want, tt.want != "")
			}
		})
	}
	if got, found := Find(&menuv1.CreatePizzaRequest{Pizza: &menuv1.Pizza{Name: "Bianca", Description: "4111.1111.1111.1111"}}); got != "pizza.description" || !found {
		t.Errorf("Find(pizza with a card in its description) = %q, %v; want pizza.description, true", got, found)
	}
	secrets := secretsMessage(t)
	for _, f := range []string{"password", "token"} {
		m := dynamicpb.NewMessage(secrets)
		m.Set(secrets.Fields().ByName(protoreflect.Name(f)), protoreflect.ValueOfString("4111111111111111"))
		if _, found := Find(m); found {
			t.Errorf("Find(%s holding digits) found a card; secrets are hashed, never stored", f)
		}
	}
	m := dynamicpb.NewMessage(secrets)
	m.Set(secrets.Fields().ByName("name"), protoreflect.ValueOfString("4111111111111111"))
	if got, found := Find(m); got != "name" || !found {
		t.Errorf("Find(name holding a card) = %q, %v; want name, true", got, found)
	}
	if _, found := Find(nil); found {
		t.Errorf("Find(nil) found a card")
	}
}

// secretsMessage describes a message with a password, a field marked
// debug_redact, and a plain name.
func secretsMessage(t *testing.T) protoreflect.MessageDescriptor {
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name: proto.String("secrets.proto"), Package: proto.String("test"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("Secrets"),
			Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("password"), Number: proto.Int32(1), Type: str, Label: opt, JsonName: proto.String("password")},
				{Name: proto.String("token"), Number: proto.Int32(2), Type: str, Label: opt, JsonName: proto.String("token"),
					Options: &descriptorpb.FieldOptions{DebugRedact: proto.Bool(true)}},
				{Name: proto.String("name"), Number: proto.Int32(3), Type: str, Label: opt, JsonName: proto.String("name")},
			},
		}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return fd.Messages().Get(0)
}

// reference is Contains written the slow, obvious way: normalize, split into
// runs, try every window.
func reference(s string) bool {
	var runs [][]byte
	var run []byte
	gap := 0
	for _, r := range strings.ToValidUTF8(s, "\u200b") {
		switch d, ok := digit(r); {
		case ok:
			run = append(run, d)
			gap = 0
		case unicode.Is(unicode.Cf, r):
		case unicode.IsLetter(r):
			runs, run, gap = append(runs, run), nil, 0
		default:
			if len(run) > 0 {
				gap++
				if gap > maxGap {
					runs, run, gap = append(runs, run), nil, 0
				}
			}
		}
	}
	runs = append(runs, run)
	for _, run := range runs {
		for i := range run {
			for n := MinDigits; n <= MaxDigits && i+n <= len(run); n++ {
				if Luhn(run[i : i+n]) {
					return true
				}
			}
		}
	}
	return false
}

// FuzzContains checks Contains against the reference on any text, and that
// a valid card number built from the input is found whatever surrounds it
// and whichever short separators split it.
func FuzzContains(f *testing.F) {
	f.Add("4111 1111 1111 1111", "", "", uint64(0), "")
	f.Add("note", "pre ", " post", uint64(4242424242424242), "\u200b")
	f.Add("\u0664\u0661", "1 ", " 123", uint64(378282246310005), "\u00a0")
	f.Add("", "\uff14", "12 28", uint64(6011111111111117), " - ")
	f.Fuzz(func(t *testing.T, text, prefix, suffix string, seed uint64, sep string) {
		if got, want := Contains(text), reference(text); got != want {
			t.Fatalf("Contains(%q) = %v, reference says %v", text, got, want)
		}
		card := cardFrom(seed)
		// Separators that keep the run: short, and without letters or
		// digits of their own.
		sep = strings.Map(func(r rune) rune {
			if _, ok := digit(r); ok || unicode.IsLetter(r) || r == utf8.RuneError {
				return -1
			}
			return r
		}, sep)
		visible := 0
		for _, r := range sep {
			if !unicode.Is(unicode.Cf, r) {
				visible++
			}
		}
		if visible > maxGap {
			sep = ""
		}
		var b strings.Builder
		b.WriteString(prefix)
		for i, d := range card {
			if i > 0 {
				b.WriteString(sep)
			}
			b.WriteByte(d)
		}
		b.WriteString(suffix)
		if s := b.String(); !Contains(s) {
			t.Fatalf("Contains(%q) = false; it holds card %s", s, card)
		}
	})
}

// cardFrom builds a 13 to 19 digit number that passes Luhn from seed.
func cardFrom(seed uint64) []byte {
	n := MinDigits + int(seed%uint64(MaxDigits-MinDigits+1))
	digits := make([]byte, n)
	for i := range n - 1 {
		digits[i] = byte('0' + seed%10)
		seed = seed/10 + uint64(i)*7919
	}
	for c := byte('0'); c <= '9'; c++ {
		digits[n-1] = c
		if Luhn(digits) {
			break
		}
	}
	return digits
}

func BenchmarkContains(b *testing.B) {
	s := strings.Repeat("extra crispy, ring twice 12 ", 40)
	for b.Loop() {
		Contains(s)
	}
}
