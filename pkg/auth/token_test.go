package auth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

const testKey = "0123456789abcdef-test-key"

var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// newTestSigner returns a signer whose clock reads *now.
func newTestSigner(t *testing.T, now *time.Time) *Signer {
	t.Helper()
	s, err := NewSigner(testKey)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	s.now = func() time.Time { return *now }
	return s
}

func TestNewSigner(t *testing.T) {
	tests := []struct {
		key     string
		wantErr bool
	}{
		{"", true},
		{"short", true},
		{strings.Repeat("k", MinKeyLen-1), true},
		{strings.Repeat("k", MinKeyLen), false},
		{DevSecret, false},
	}
	for _, tt := range tests {
		s, err := NewSigner(tt.key)
		if (err != nil) != tt.wantErr || (err == nil) != (s != nil) {
			t.Errorf("NewSigner(%d-byte key) = %v, %v; want error %v", len(tt.key), s, err, tt.wantErr)
		}
	}
}

func TestSignVerify(t *testing.T) {
	now := epoch
	s := newTestSigner(t, &now)
	tests := []Claims{
		{Subject: "cus_1", Role: RoleCustomer, Name: "Ada"},
		{Subject: "kitchen-1", Role: RoleKitchen},
		{Subject: "courier-7", Role: RoleCourier},
		{Subject: "boss", Role: RoleAdmin, Name: "Ünïcødé \"quoted\""},
		{Subject: "order", Role: RoleService},
	}
	for _, c := range tests {
		t.Run(string(c.Role), func(t *testing.T) {
			tok, exp, err := s.Sign(c, time.Hour)
			if err != nil {
				t.Fatalf("Sign(%+v) err = %v", c, err)
			}
			if want := epoch.Add(time.Hour); !exp.Equal(want) {
				t.Errorf("Sign() expiry = %v, want %v", exp, want)
			}
			if n := strings.Count(tok, "."); n != 2 {
				t.Errorf("Sign() = %q has %d dots, want 2", tok, n)
			}
			got, err := s.Verify(tok)
			if err != nil {
				t.Fatalf("Verify(Sign(%+v)) err = %v, want nil", c, err)
			}
			want := c
			want.IssuedAt, want.ExpiresAt = epoch, epoch.Add(time.Hour)
			if got.Subject != want.Subject || got.Role != want.Role || got.Name != want.Name ||
				!got.IssuedAt.Equal(want.IssuedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
				t.Errorf("Verify(Sign(c)) = %+v, want %+v", got, want)
			}
		})
	}
}

func TestSignRejectsBadClaims(t *testing.T) {
	now := epoch
	s := newTestSigner(t, &now)
	for _, c := range []Claims{
		{Subject: "", Role: RoleCustomer},
		{Subject: "x", Role: ""},
		{Subject: "x", Role: "chef"},
		{Subject: "x", Role: "Admin"},
	} {
		if tok, _, err := s.Sign(c, time.Hour); !errors.Is(err, ErrClaims) {
			t.Errorf("Sign(%+v) = %q, err %v; want ErrClaims", c, tok, err)
		}
	}
}

func TestVerifyFailures(t *testing.T) {
	now := epoch
	s := newTestSigner(t, &now)
	good, _, err := s.Sign(Claims{Subject: "cus_1", Role: RoleCustomer}, time.Hour)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	h, rest, _ := strings.Cut(good, ".")
	payload, sig, _ := strings.Cut(rest, ".")

	other, err := NewSigner("another-key-of-enough-length")
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	other.now = s.now
	forged, _, _ := other.Sign(Claims{Subject: "cus_1", Role: RoleAdmin}, time.Hour)

	// signed builds a correctly signed token around any payload, to reach
	// the checks that follow the signature.
	signed := func(payload string) string {
		unsigned := header + "." + payload
		return unsigned + "." + s.mac(unsigned)
	}
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	// Swap the role in the payload but keep the signature: privilege escalation.
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	escalated := b64(strings.Replace(string(raw), `"customer"`, `"admin"`, 1))

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"empty", "", ErrMalformed},
		{"one part", "abc", ErrMalformed},
		{"two parts", h + "." + payload, ErrMalformed},
		{"other header", b64(`{"alg":"none","typ":"JWT"}`) + "." + payload + "." + sig, ErrMalformed},
		{"too long", signed(strings.Repeat("A", 5000)), ErrMalformed},
		{"payload not base64", signed("!!!not-base64!!!"), ErrMalformed},
		{"payload not JSON", signed(b64("not json")), ErrMalformed},
		{"tampered payload", h + "." + escalated + "." + sig, ErrSignature},
		{"tampered signature", h + "." + payload + "." + strings.ToUpper(sig[:4]) + sig[4:] + "x", ErrSignature},
		{"empty signature", h + "." + payload + ".", ErrSignature},
		{"other key", forged, ErrSignature},
		{"unknown role", signed(b64(`{"sub":"x","role":"chef","iat":0,"exp":9999999999}`)), ErrClaims},
		{"no subject", signed(b64(`{"sub":"","role":"admin","iat":0,"exp":9999999999}`)), ErrClaims},
		{"no expiry", signed(b64(`{"sub":"x","role":"admin","iat":0}`)), ErrExpired},
		{"issued in the future", signed(b64(fmt.Sprintf(`{"sub":"x","role":"admin","iat":%d,"exp":%d}`, epoch.Add(time.Hour).Unix(), epoch.Add(2*time.Hour).Unix()))), ErrNotYetValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := s.Verify(tt.token)
			if !errors.Is(err, tt.want) {
				t.Errorf("Verify(%.40q) = %+v, err = %v, want %v", tt.token, c, err, tt.want)
			}
		})
	}
}

func TestVerifyExpiry(t *testing.T) {
	now := epoch
	s := newTestSigner(t, &now)
	tok, _, err := s.Sign(Claims{Subject: "cus_1", Role: RoleCustomer}, time.Minute)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	tests := []struct {
		after time.Duration
		want  error
	}{
		{0, nil},
		{59 * time.Second, nil},
		{time.Minute, ErrExpired}, // expiry instant itself is too late
		{time.Hour, ErrExpired},
		{-time.Minute, nil}, // a clock a little behind the issuer accepts it
		{-time.Minute - time.Second, ErrNotYetValid},
		{-time.Hour, ErrNotYetValid},
	}
	for _, tt := range tests {
		now = epoch.Add(tt.after)
		if _, err := s.Verify(tok); !errors.Is(err, tt.want) {
			t.Errorf("Verify(tok) %v after issue: err = %v, want %v", tt.after, err, tt.want)
		}
	}

	now = epoch
	for _, ttl := range []time.Duration{0, -time.Second} {
		tok, _, err := s.Sign(Claims{Subject: "cus_1", Role: RoleCustomer}, ttl)
		if err != nil {
			t.Fatalf("Sign(ttl %v): %v", ttl, err)
		}
		if _, err := s.Verify(tok); !errors.Is(err, ErrExpired) {
			t.Errorf("Verify(token with ttl %v) err = %v, want ErrExpired", ttl, err)
		}
	}
}

func TestRole(t *testing.T) {
	tests := []struct {
		r            Role
		valid, staff bool
	}{
		{RoleCustomer, true, false},
		{RoleKitchen, true, true},
		{RoleCourier, true, true},
		{RoleAdmin, true, true},
		{RoleService, true, true},
		{"", false, false},
		{"chef", false, false},
		{"ADMIN", false, false},
	}
	for _, tt := range tests {
		if got := tt.r.Valid(); got != tt.valid {
			t.Errorf("Role(%q).Valid() = %v, want %v", tt.r, got, tt.valid)
		}
		if got := tt.r.IsStaff(); got != tt.staff {
			t.Errorf("Role(%q).IsStaff() = %v, want %v", tt.r, got, tt.staff)
		}
	}
}

// BenchmarkVerify is the check every authenticated call pays, in the
// gateway and again in the service.
func BenchmarkVerify(b *testing.B) {
	s, err := NewSigner(DevSecret)
	if err != nil {
		b.Fatal(err)
	}
	tok, _, err := s.Sign(Claims{Subject: "alice", Role: RoleCustomer, Name: "Alice"}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyFirst is the check of a token the signer has not seen
// yet: more distinct tokens than it remembers, in turn.
func BenchmarkVerifyFirst(b *testing.B) {
	s, err := NewSigner(DevSecret)
	if err != nil {
		b.Fatal(err)
	}
	toks := make([]string, 2*maxVerified+1)
	for i := range toks {
		if toks[i], _, err = s.Sign(Claims{Subject: fmt.Sprint("cus_", i), Role: RoleCustomer, Name: "Alice"}, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Verify(toks[i%len(toks)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// TestVerifyRemembered checks that a remembered token answers as a fresh
// check would: the same claims, expiry checked again, and a token that
// differs from it in one byte checked in full.
func TestVerifyRemembered(t *testing.T) {
	now := epoch
	s := newTestSigner(t, &now)
	want := Claims{Subject: "cus_1", Role: RoleKitchen, Name: "Kim"}
	tok, exp, err := s.Sign(want, time.Minute)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	want.IssuedAt, want.ExpiresAt = epoch, exp
	for i := range 3 {
		got, err := s.Verify(tok)
		same := got.Subject == want.Subject && got.Role == want.Role && got.Name == want.Name &&
			got.IssuedAt.Equal(want.IssuedAt) && got.ExpiresAt.Equal(want.ExpiresAt)
		if err != nil || !same {
			t.Fatalf("Verify(tok) #%d = %+v, %v; want %+v, nil", i, got, err, want)
		}
	}
	last := "A"
	if strings.HasSuffix(tok, last) {
		last = "B"
	}
	forged := tok[:len(tok)-1] + last
	if _, err := s.Verify(forged); !errors.Is(err, ErrSignature) {
		t.Errorf("Verify(token with its last byte changed) err = %v, want ErrSignature", err)
	}
	now = epoch.Add(time.Minute)
	if _, err := s.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Errorf("Verify(remembered token) at expiry err = %v, want ErrExpired", err)
	}
	for i := range maxVerified + 10 {
		tok, _, err := s.Sign(Claims{Subject: fmt.Sprint("cus_", i), Role: RoleCustomer}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Verify(tok); err != nil {
			t.Fatalf("Verify(token %d): %v", i, err)
		}
	}
	if n := len(s.verified); n > maxVerified {
		t.Errorf("signer remembers %d tokens, want at most %d", n, maxVerified)
	}
}
