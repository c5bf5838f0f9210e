// Package auth issues and verifies Pizzashop credentials: compact JWTs
// (HS256) carrying a subject and one role. Services verify them in a gRPC
// interceptor and check roles against a per-method policy, so identity always
// comes from the credential and never from a request body.
package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"
	"time"
)

// Role is what a caller may do.
type Role string

// The roles. RoleService is for calls between Pizzashop services.
const (
	RoleCustomer Role = "customer"
	RoleKitchen  Role = "kitchen"
	RoleCourier  Role = "courier"
	RoleAdmin    Role = "admin"
	RoleService  Role = "service"
)

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool {
	switch r {
	case RoleCustomer, RoleKitchen, RoleCourier, RoleAdmin, RoleService:
		return true
	}
	return false
}

// IsStaff reports whether r belongs to shop staff or a service, who may read
// any customer's orders.
func (r Role) IsStaff() bool { return r.Valid() && r != RoleCustomer }

// Claims is what a token says about its holder.
type Claims struct {
	Subject   string    `json:"sub"`
	Role      Role      `json:"role"`
	Name      string    `json:"name,omitempty"`
	IssuedAt  time.Time `json:"-"`
	ExpiresAt time.Time `json:"-"`
}

// Errors returned by Verify.
var (
	ErrMalformed   = errors.New("malformed token")
	ErrSignature   = errors.New("token signature does not match")
	ErrExpired     = errors.New("token expired")
	ErrClaims      = errors.New("token claims invalid")
	ErrNotYetValid = errors.New("token issued in the future")
)

// MinKeyLen is the shortest signing key accepted.
const MinKeyLen = 16

// Signer signs and verifies tokens with one shared HMAC key.
type Signer struct {
	key []byte
	now func() time.Time
	// macs holds HMACs already keyed with key: keying one costs two hash
	// blocks and a few allocations, and every call is verified.
	macs sync.Pool

	// verified remembers the claims of tokens that passed Verify. A client
	// sends the same token on every call until it expires, and decoding
	// its claims costs more than the signature check; a token is only
	// found here if it is byte for byte one that verified, so what it
	// claims is known, and only its expiry is checked again.
	mu       sync.Mutex
	verified map[string]Claims
}

// maxVerified bounds Signer.verified; when it is full it starts over.
const maxVerified = 1024

// NewSigner returns a Signer for key, which must be at least MinKeyLen bytes.
func NewSigner(key string) (*Signer, error) {
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("auth: signing key is %d bytes, want at least %d", len(key), MinKeyLen)
	}
	return &Signer{key: []byte(key), now: time.Now}, nil
}

type wireClaims struct {
	Sub  string `json:"sub"`
	Role Role   `json:"role"`
	Name string `json:"name,omitempty"`
	Iat  int64  `json:"iat"`
	Exp  int64  `json:"exp"`
}

var header = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// Sign returns a token for c that expires after ttl.
func (s *Signer) Sign(c Claims, ttl time.Duration) (string, time.Time, error) {
	if c.Subject == "" || !c.Role.Valid() {
		return "", time.Time{}, fmt.Errorf("auth: sign: %w: subject %q role %q", ErrClaims, c.Subject, c.Role)
	}
	now := s.now()
	exp := now.Add(ttl)
	payload, err := json.Marshal(wireClaims{Sub: c.Subject, Role: c.Role, Name: c.Name, Iat: now.Unix(), Exp: exp.Unix()})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign: %w", err)
	}
	unsigned := header + "." + base64.RawURLEncoding.EncodeToString(payload)
	return unsigned + "." + s.mac(unsigned), exp, nil
}

// maxClockSkew is how far in the future a token's issue time may lie, for
// clocks of the issuer and the verifier that do not quite agree. Beyond
// it the token was not issued by a Signer with a sane clock: it is refused.
const maxClockSkew = time.Minute

// Verify checks the signature, issue time and expiry of token and returns
// its claims.
func (s *Signer) Verify(token string) (Claims, error) {
	s.mu.Lock()
	c, ok := s.verified[token]
	s.mu.Unlock()
	if !ok {
		var err error
		if c, err = s.verify(token); err != nil {
			return Claims{}, err
		}
	}
	now := s.now()
	if !now.Before(c.ExpiresAt) {
		return Claims{}, ErrExpired
	}
	if c.IssuedAt.After(now.Add(maxClockSkew)) {
		return Claims{}, ErrNotYetValid
	}
	if !ok {
		s.mu.Lock()
		if len(s.verified) >= maxVerified || s.verified == nil {
			s.verified = make(map[string]Claims, maxVerified)
		}
		s.verified[token] = c
		s.mu.Unlock()
	}
	return c, nil
}

// verify checks everything about token but its issue time and expiry.
func (s *Signer) verify(token string) (Claims, error) {
	h, rest, ok1 := strings.Cut(token, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || h != header || len(token) > 4096 {
		return Claims{}, ErrMalformed
	}
	if !hmac.Equal([]byte(sig), []byte(s.mac(h+"."+payload))) {
		return Claims{}, ErrSignature
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	var w wireClaims
	if err := json.Unmarshal(raw, &w); err != nil {
		return Claims{}, ErrMalformed
	}
	if w.Sub == "" || !w.Role.Valid() {
		return Claims{}, ErrClaims
	}
	return Claims{Subject: w.Sub, Role: w.Role, Name: w.Name, IssuedAt: time.Unix(w.Iat, 0), ExpiresAt: time.Unix(w.Exp, 0)}, nil
}

func (s *Signer) mac(unsigned string) string {
	m, ok := s.macs.Get().(hash.Hash)
	if ok {
		m.Reset()
	} else {
		m = hmac.New(sha256.New, s.key)
	}
	_, _ = io.WriteString(m, unsigned)
	var sum [sha256.Size]byte
	sig := base64.RawURLEncoding.EncodeToString(m.Sum(sum[:0]))
	s.macs.Put(m)
	return sig
}

const serviceTokenTTL = 5 * 60 * 1e9 // five minutes; minted per call

// DevSecret is the signing key used when AUTH_SECRET is unset, so that `make
// run` works out of the box. Services log a warning when they run with it.
const DevSecret = "pizzashop-local-dev-secret-do-not-use-in-production"
