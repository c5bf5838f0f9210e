package orderapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/auth"
	"github.com/pizzashop/pizzashop/pkg/errs"
	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"github.com/pizzashop/pizzashop/services/order/internal/order"
	"google.golang.org/grpc/metadata"
)

// testContext bounds a test's calls by the test's own deadline. A call
// without one gets the store's DefaultTimeout of 3 s per operation, which a
// loaded machine overruns while the password hashes of concurrent sign-ins
// hold the CPU, and the sign-in then fails with the store unavailable
// instead of with the answer under test.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fromClient is a call that came through the gateway from addr.
func fromClient(t *testing.T, addr string) context.Context {
	return metadata.NewIncomingContext(testContext(t), metadata.Pairs("x-forwarded-for", "203.0.113.9, "+addr))
}

func register(t *testing.T, s *Server, email, password string) *orderv1.RegisterCustomerResponse {
	t.Helper()
	resp, err := s.RegisterCustomer(testContext(t), &orderv1.RegisterCustomerRequest{
		Name: "Ann Example", Email: email, Phone: "+1 555 0100", Password: password,
		Address: &commonv1.Address{Line1: "1 Main St", City: "Springfield", PostalCode: "12345"},
	})
	if err != nil {
		t.Fatalf("RegisterCustomer(%s): %v", email, err)
	}
	return resp
}

func TestRegisterAndSignIn(t *testing.T) {
	s, _ := newServer(t)
	reg := register(t, s, "Ann@Example.com", "pizza for two")
	if reg.GetToken() == "" || reg.GetCustomer().GetEmail() != "ann@example.com" {
		t.Fatalf("RegisterCustomer = %v, want a token and the normalized email", reg)
	}

	resp, err := s.SignIn(fromClient(t, "198.51.100.1"), &orderv1.SignInRequest{Email: " ANN@example.com ", Password: "pizza for two"})
	if err != nil {
		t.Fatalf("SignIn with the right password: %v", err)
	}
	if resp.GetCustomer().GetId() != reg.GetCustomer().GetId() || resp.GetCustomer().GetAddress().GetCity() != "Springfield" {
		t.Errorf("SignIn customer = %v, want the registered one with their address", resp.GetCustomer())
	}
	claims, err := s.signer.Verify(resp.GetToken())
	if err != nil || claims.Subject != reg.GetCustomer().GetId() || claims.Role != auth.RoleCustomer {
		t.Errorf("SignIn token claims = %+v, %v; want the customer's id with role customer", claims, err)
	}
	if exp := resp.GetTokenExpireTime().AsTime(); exp.Unix() != claims.ExpiresAt.Unix() {
		t.Errorf("token_expire_time = %v, want the token's expiry %v", exp, claims.ExpiresAt)
	}

	// The password is stored only as an argon2id hash.
	_, hash, err := s.store.Credential(testContext(t), "ann@example.com")
	if err != nil || !strings.HasPrefix(hash, "$argon2id$") || strings.Contains(hash, "pizza for two") {
		t.Errorf("stored credential = %q, %v; want an argon2id hash only", hash, err)
	}

	// An unknown email and a wrong password get the very same answer.
	_, wrong := s.SignIn(fromClient(t, "198.51.100.1"), &orderv1.SignInRequest{Email: "ann@example.com", Password: "pizza for one"})
	_, unknown := s.SignIn(fromClient(t, "198.51.100.1"), &orderv1.SignInRequest{Email: "bob@example.com", Password: "pizza for two"})
	if !errors.Is(wrong, order.ErrSignInFailed) || !errors.Is(unknown, order.ErrSignInFailed) || wrong.Error() != unknown.Error() {
		t.Errorf("SignIn(wrong password) = %v, SignIn(unknown email) = %v; want one ErrSignInFailed for both", wrong, unknown)
	}
}

func TestRegisterRejects(t *testing.T) {
	s, _ := newServer(t)
	register(t, s, "taken@example.com", "long enough")
	for _, tt := range []struct {
		name  string
		req   *orderv1.RegisterCustomerRequest
		field string
	}{
		{"short password", &orderv1.RegisterCustomerRequest{Name: "A", Email: "a@example.com", Phone: "+1 555 0100", Password: "short"}, "password"},
		{"no password", &orderv1.RegisterCustomerRequest{Name: "A", Email: "a@example.com", Phone: "+1 555 0100"}, "password"},
		{"password and email", &orderv1.RegisterCustomerRequest{Name: "A", Email: "nope", Phone: "+1 555 0100", Password: "x"}, "email"},
		{"card in the name", &orderv1.RegisterCustomerRequest{Name: "4111 1111 1111 1111", Email: "a@example.com", Phone: "+1 555 0100", Password: "long enough"}, "name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.RegisterCustomer(testContext(t), tt.req)
			if errs.KindOf(err) != errs.KindInvalid {
				t.Fatalf("RegisterCustomer = %v, want an invalid-argument error", err)
			}
			found := false
			for _, f := range errs.Fields(err) {
				found = found || f.Field == tt.field
			}
			if !found {
				t.Errorf("RegisterCustomer = %v, want a problem with field %q", err, tt.field)
			}
		})
	}
	// A password that looks like a card number is only hashed, never kept.
	if _, err := s.RegisterCustomer(testContext(t), &orderv1.RegisterCustomerRequest{
		Name: "Card Pw", Email: "cardpw@example.com", Phone: "+1 555 0100", Password: "4111111111111111"}); err != nil {
		t.Errorf("RegisterCustomer with a digits-only password = %v, want it accepted", err)
	}
	_, err := s.RegisterCustomer(testContext(t), &orderv1.RegisterCustomerRequest{
		Name: "Other", Email: "TAKEN@example.com", Phone: "+1 555 0100", Password: "long enough"})
	if !errors.Is(err, order.ErrEmailTaken) {
		t.Errorf("RegisterCustomer with a taken email = %v, want ErrEmailTaken", err)
	}
}

func TestSignInRateLimit(t *testing.T) {
	s, _ := newServer(t)
	s.signIn = newSignInGuard(SignInOptions{PerAccount: 3, PerClient: 5, Window: time.Minute,
		Password: auth.PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1}})
	register(t, s, "ann@example.com", "right password")

	// Per account: three failures from anywhere lock the account, even for
	// the right password, with the same answer for an unknown email.
	for i, addr := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"} {
		if _, err := s.SignIn(fromClient(t, addr), &orderv1.SignInRequest{Email: "ann@example.com", Password: "guess"}); !errors.Is(err, order.ErrSignInFailed) {
			t.Fatalf("guess %d = %v, want ErrSignInFailed", i+1, err)
		}
	}
	_, err := s.SignIn(fromClient(t, "198.51.100.4"), &orderv1.SignInRequest{Email: "ann@example.com", Password: "right password"})
	if !errors.Is(err, order.ErrTooManyAttempts) || !strings.Contains(err.Error(), "try again in 1 minute") {
		t.Errorf("SignIn after 3 failures = %v, want ErrTooManyAttempts saying when to retry", err)
	}

	// Per client: five failures from one address over several accounts.
	for i := range 5 {
		email := []string{"b@example.com", "c@example.com", "d@example.com", "e@example.com", "f@example.com"}[i]
		if _, err := s.SignIn(fromClient(t, "192.0.2.7"), &orderv1.SignInRequest{Email: email, Password: "guess"}); !errors.Is(err, order.ErrSignInFailed) {
			t.Fatalf("guess %d from one client = %v, want ErrSignInFailed", i+1, err)
		}
	}
	if _, err := s.SignIn(fromClient(t, "192.0.2.7"), &orderv1.SignInRequest{Email: "g@example.com", Password: "guess"}); !errors.Is(err, order.ErrTooManyAttempts) {
		t.Errorf("sixth guess from one client = %v, want ErrTooManyAttempts", err)
	}
	// Another client is not held back by it.
	if _, err := s.SignIn(fromClient(t, "192.0.2.8"), &orderv1.SignInRequest{Email: "g@example.com", Password: "guess"}); !errors.Is(err, order.ErrSignInFailed) {
		t.Errorf("a guess from another client = %v, want ErrSignInFailed", err)
	}
}

func TestSignInNeedsEmailAndPassword(t *testing.T) {
	s, _ := newServer(t)
	_, err := s.SignIn(fromClient(t, "198.51.100.1"), &orderv1.SignInRequest{})
	var fields []string
	for _, f := range errs.Fields(err) {
		fields = append(fields, f.Field)
	}
	if errs.KindOf(err) != errs.KindInvalid || strings.Join(fields, ",") != "email,password" {
		t.Errorf("SignIn{} = %v (fields %v), want invalid email and password", err, fields)
	}
}

// TestSignInRateLimitConcurrent: guesses sent all at once are held to the
// account's limit as surely as guesses sent one after another.
func TestSignInRateLimitConcurrent(t *testing.T) {
	s, _ := newServer(t)
	s.signIn = newSignInGuard(SignInOptions{PerAccount: 3, PerClient: 100, Window: time.Minute})
	register(t, s, "ann@example.com", "right password")

	const n = 24
	checked, refused := guessAtOnce(t, s, n, func(i int) (string, *orderv1.SignInRequest) {
		return fmt.Sprintf("198.51.100.%d", i+1), &orderv1.SignInRequest{Email: "ann@example.com", Password: fmt.Sprintf("guess %d", i)}
	})
	if checked != 3 {
		t.Errorf("%d concurrent guesses at one account had %d passwords checked (%d refused), want 3", n, checked, refused)
	}
}

// guessAtOnce sends n wrong sign-ins at once, the i-th from the client and
// with the request guess(i) gives, and counts those whose password was
// checked and those refused for too many attempts.
func guessAtOnce(t *testing.T, s *Server, n int, guess func(i int) (string, *orderv1.SignInRequest)) (checked, refused int32) {
	t.Helper()
	var c, r atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			client, req := guess(i)
			_, err := s.SignIn(fromClient(t, client), req)
			switch {
			case errors.Is(err, order.ErrSignInFailed):
				c.Add(1)
			case errors.Is(err, order.ErrTooManyAttempts):
				r.Add(1)
			default:
				t.Errorf("concurrent guess = %v, want ErrSignInFailed or ErrTooManyAttempts", err)
			}
		})
	}
	wg.Wait()
	return c.Load(), r.Load()
}

// TestSignInBoundsEmail: an email longer than any that can be registered is
// refused as bad input, before it is kept as a key of the attempt counts.
func TestSignInBoundsEmail(t *testing.T) {
	s, _ := newServer(t)
	long := strings.Repeat("a", 64<<10) + "@example.com"
	_, err := s.SignIn(fromClient(t, "198.51.100.1"), &orderv1.SignInRequest{Email: long, Password: "guess"})
	fs := errs.Fields(err)
	if errs.KindOf(err) != errs.KindInvalid || len(fs) != 1 || fs[0].Field != "email" {
		t.Errorf("SignIn with a %d-byte email = %v, want invalid email", len(long), err)
	}
}

// TestSignInClientLimitConcurrent: one client guessing at many accounts all
// at once is held to the client's limit as surely as one guessing in turn.
func TestSignInClientLimitConcurrent(t *testing.T) {
	s, _ := newServer(t)
	s.signIn = newSignInGuard(SignInOptions{PerAccount: 100, PerClient: 5, Window: time.Minute})

	const n = 24
	checked, refused := guessAtOnce(t, s, n, func(i int) (string, *orderv1.SignInRequest) {
		return "192.0.2.7", &orderv1.SignInRequest{Email: fmt.Sprintf("user%d@example.com", i), Password: "guess"}
	})
	if checked != 5 {
		t.Errorf("%d concurrent guesses from one client had %d passwords checked (%d refused), want 5", n, checked, refused)
	}
}

// TestSignInSharedAddress: customers behind one address (a NAT) who sign in
// at the same moment with their right passwords all get in, and use up none
// of the address's failed attempts.
func TestSignInSharedAddress(t *testing.T) {
	s, _ := newServer(t)
	s.signIn = newSignInGuard(SignInOptions{PerAccount: 3, PerClient: 3, Window: time.Minute,
		Password: auth.PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1}})
	const n = 12
	for i := range n {
		register(t, s, fmt.Sprintf("user%d@example.com", i), "right password")
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := s.SignIn(fromClient(t, "192.0.2.7"), &orderv1.SignInRequest{Email: fmt.Sprintf("user%d@example.com", i), Password: "right password"}); err != nil {
				t.Errorf("SignIn(user%d) from a shared address = %v, want a token", i, err)
			}
		})
	}
	wg.Wait()
	for i := range 3 {
		if _, err := s.SignIn(fromClient(t, "192.0.2.7"), &orderv1.SignInRequest{Email: "nobody@example.com", Password: "guess"}); !errors.Is(err, order.ErrSignInFailed) {
			t.Fatalf("guess %d after the sign-ins = %v, want ErrSignInFailed", i+1, err)
		}
	}
}
