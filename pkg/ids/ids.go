// Package ids makes and checks the shop's entity ids (orders, customers):
// 128 random bits in lower-case base32, unguessable, and safe as a NATS
// subject token. Every service that takes such an id from a caller checks
// it with Valid before it reaches a store query or a subject.
package ids

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"strings"
)

// MaxLen bounds an id.
const MaxLen = 64

var encoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// New returns a fresh id.
func New() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(encoding.EncodeToString(b[:]))
}

// Valid reports whether id could be one of ours: 1 to MaxLen lower-case
// ASCII letters and digits. Anything else is answered as not found.
func Valid(id string) bool {
	if id == "" || len(id) > MaxLen {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// Derive returns the id that parts name, in the form New gives: the same
// parts always give the same id, and different parts, in practice, never do.
// An order placed with an Idempotency-Key gets Derive("order", customer, key),
// so the store's unique key is what refuses a second order for one key.
func Derive(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		// Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
		_ = binary.Write(h, binary.BigEndian, uint64(len(p)))
		h.Write([]byte(p))
	}
	return strings.ToLower(encoding.EncodeToString(h.Sum(nil)[:16]))
}
