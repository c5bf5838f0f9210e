package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPasswordHash(t *testing.T) {
	ctx := context.Background()
	h1, err := HashPassword(ctx, "correct horse battery", DefaultPasswordParams)
	if err != nil {
		t.Fatalf("HashPassword: %v", err)
	}
	if !strings.HasPrefix(h1, "$argon2id$v=19$m=19456,t=2,p=1$") || strings.Contains(h1, "correct horse") {
		t.Errorf("HashPassword = %q, want an argon2id PHC string without the password", h1)
	}
	h2, err := HashPassword(ctx, "correct horse battery", DefaultPasswordParams)
	if err != nil {
		t.Fatal(err)
	}
	if h1 == h2 {
		t.Errorf("two hashes of one password are equal (%q): the salt is not random", h1)
	}
	if err := CheckPassword(ctx, "correct horse battery", h1); err != nil {
		t.Errorf("CheckPassword(right password) = %v, want nil", err)
	}
	for _, wrong := range []string{"correct horse batter", "Correct horse battery", ""} {
		if err := CheckPassword(ctx, wrong, h1); !errors.Is(err, ErrPasswordMismatch) {
			t.Errorf("CheckPassword(%q) = %v, want ErrPasswordMismatch", wrong, err)
		}
	}
	// Parameters travel with the hash: a cheaper one still checks.
	cheap, err := HashPassword(ctx, "pw-cheap-1", PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPassword(ctx, "pw-cheap-1", cheap); err != nil {
		t.Errorf("CheckPassword with its own parameters = %v, want nil", err)
	}
}

func TestCheckPasswordRefusesForeignHashes(t *testing.T) {
	for _, h := range []string{
		"",
		"plain text",
		"$2a$10$abcdefghijklmnopqrstuu", // bcrypt
		"$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=18$m=19456,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=99999999,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5", // memory bomb
		"$argon2id$v=19$m=19456,t=2,p=1$!!$a2V5a2V5a2V5a2V5a2V5a2V5",
	} {
		err := CheckPassword(context.Background(), "pw", h)
		if err == nil || errors.Is(err, ErrPasswordMismatch) {
			t.Errorf("CheckPassword(hash %q) = %v, want an error about the hash", h, err)
		}
	}
	if _, _, _, err := decodeHash(dummyHash); err != nil {
		t.Errorf("the dummy hash does not decode: %v", err)
	}
}

func TestPasswordHashWaitsForSlot(t *testing.T) {
	for range cap(hashSlots) {
		hashSlots <- struct{}{}
	}
	defer func() {
		for range cap(hashSlots) {
			<-hashSlots
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := HashPassword(ctx, "pw-waits", DefaultPasswordParams); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("HashPassword with every slot busy = %v, want the context's deadline", err)
	}
}

// BenchmarkCheckPassword is the cost of one sign-in's hash with the default
// parameters: go test ./auth -run '^$' -bench CheckPassword -benchtime 20x
func BenchmarkCheckPassword(b *testing.B) {
	ctx := context.Background()
	h, err := HashPassword(ctx, "correct horse battery", DefaultPasswordParams)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := CheckPassword(ctx, "correct horse battery", h); err != nil {
			b.Fatal(err)
		}
	}
}
