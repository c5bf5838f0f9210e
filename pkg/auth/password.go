package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Passwords are kept only as argon2id hashes in the PHC string format
// ("$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>"), so the parameters travel
// with each hash and can be raised later without invalidating old ones.

// PasswordParams are the argon2id cost parameters.
type PasswordParams struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
}

// DefaultPasswordParams follow OWASP's argon2id baseline (19 MiB, two
// passes, one lane): about 25 ms of one core per hash here, which makes
// guessing offline expensive while a sign-in stays quick.
var DefaultPasswordParams = PasswordParams{MemoryKiB: 19 * 1024, Time: 2, Threads: 1}

const (
	saltLen = 16
	keyLen  = 32
)

// ErrPasswordMismatch is returned by CheckPassword for a wrong password.
var ErrPasswordMismatch = errors.New("password does not match")

// hashSlots bounds how many hashes run at once: each holds MemoryKiB of
// memory, so a burst of sign-ins queues here instead of exhausting memory.
var hashSlots = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))

func acquire(ctx context.Context) error {
	select {
	case hashSlots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func release() { <-hashSlots }

// HashPassword returns the encoded argon2id hash of password with a fresh
// random salt.
func HashPassword(ctx context.Context, password string, p PasswordParams) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: salt: %w", err)
	}
	if err := acquire(ctx); err != nil {
		return "", err
	}
	defer release()
	key := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, keyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// CheckPassword reports nil when password matches encoded, ErrPasswordMismatch
// when it does not, and another error when encoded is not a hash this
// package wrote.
func CheckPassword(ctx context.Context, password, encoded string) error {
	p, salt, want, err := decodeHash(encoded)
	if err != nil {
		return err
	}
	if err := acquire(ctx); err != nil {
		return err
	}
	defer release()
	got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(want)))
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrPasswordMismatch
	}
	return nil
}

// DummyCheck spends the time of one CheckPassword, for a sign-in whose
// account does not exist: answering faster would tell which emails are
// registered.
func DummyCheck(ctx context.Context, password string) {
	_ = CheckPassword(ctx, password, dummyHash)
}

// dummyHash is a valid hash of a random password with the default
// parameters; nothing matches it.
var dummyHash = "$argon2id$v=19$m=19456,t=2,p=1$" +
	"c2hvcC1kdW1teS1zYWx0IQ" + "$" + "9y8d0x7kYwX1n3q2b6m5Jp4r0T1uV8sA2cE7fG9hK3M"

func decodeHash(encoded string) (PasswordParams, []byte, []byte, error) {
	bad := func(why string) (PasswordParams, []byte, []byte, error) {
		return PasswordParams{}, nil, nil, fmt.Errorf("auth: password hash: %s", why)
	}
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return bad("not an argon2id PHC string")
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return bad("unsupported version " + parts[2])
	}
	var p PasswordParams
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil {
		return bad("parameters " + parts[3])
	}
	if p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > 1<<20 || p.Time < 1 || p.Time > 16 || p.Threads < 1 {
		return bad("parameters out of range " + parts[3])
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	key, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(key) < 16 {
		return bad("salt or key")
	}
	return p, salt, key, nil
}
