package orderapi

import (
	"context"
	"errors"
	"math"
	"net"
	"strings"
	"time"

	"github.com/pizzashop/pizzashop/pkg/auth"
	"github.com/pizzashop/pizzashop/pkg/errs"
	"github.com/pizzashop/pizzashop/pkg/ids"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"github.com/pizzashop/pizzashop/services/order/internal/order"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// SignInOptions bound password guessing. Zero values take the defaults.
type SignInOptions struct {
	// PerAccount failed sign-ins per email in each Window; default 5.
	PerAccount int
	// PerClient failed sign-ins per client address in each Window; default 20.
	PerClient int
	// Window is the counting window; default 15 minutes.
	Window time.Duration
	// Password are the argon2id parameters of new hashes; default
	// auth.DefaultPasswordParams.
	Password auth.PasswordParams
}

// signInGuard counts failed sign-ins per account and per client.
type signInGuard struct {
	accounts *auth.Attempts
	clients  *auth.Attempts
	params   auth.PasswordParams
}

func newSignInGuard(o SignInOptions) *signInGuard {
	if o.PerAccount <= 0 {
		o.PerAccount = 5
	}
	if o.PerClient <= 0 {
		o.PerClient = 20
	}
	if o.Window <= 0 {
		o.Window = 15 * time.Minute
	}
	if o.Password == (auth.PasswordParams{}) {
		o.Password = auth.DefaultPasswordParams
	}
	return &signInGuard{accounts: auth.NewAttempts(o.PerAccount, o.Window), clients: auth.NewAttempts(o.PerClient, o.Window),
		params: o.Password}
}

// signInTry is one sign-in's attempt of its account and of its client.
// Both count while the password is checked, so that concurrent guesses are
// held to the limits; one that is not a failed guess is forgiven.
type signInTry struct {
	guard           *signInGuard
	email           string
	account, client *auth.Attempt
}

// begin reserves an attempt of the account and of the client, or refuses
// the sign-in while either has used up its attempts. It answers the same
// whether or not the account exists. The client is reserved first, and
// every sign-in does so in that order, so two waiting for each other's
// turn cannot wait for ever.
func (g *signInGuard) begin(ctx context.Context, email, client string) (*signInTry, error) {
	c, waitC, err := g.clients.Reserve(ctx, client)
	if err != nil {
		return nil, err
	}
	var a *auth.Attempt
	var waitA time.Duration
	if c == nil {
		_, waitA = g.accounts.Allow(email)
	} else if a, waitA, err = g.accounts.Reserve(ctx, email); err != nil || a == nil {
		c.Forgive()
	}
	if err != nil {
		return nil, err
	}
	if a != nil && c != nil {
		return &signInTry{guard: g, email: email, account: a, client: c}, nil
	}
	wait := max(waitA, waitC)
	minutes := int(math.Ceil(wait.Minutes()))
	unit := "minutes"
	if minutes == 1 {
		unit = "minute"
	}
	return nil, errs.Wrap(order.ErrTooManyAttempts, "", "too many sign-in attempts; try again in %d %s", minutes, unit)
}

// fail counts the try as a failed guess.
func (t *signInTry) fail() {
	t.account.Fail()
	t.client.Fail()
}

// succeed forgives the try, and the account's earlier failures.
func (t *signInTry) succeed() {
	t.account.Forgive()
	t.guard.accounts.Reset(t.email)
	t.client.Forgive()
}

// end forgives the try unless it failed or succeeded: a sign-in that ended
// in an error of the store's is not a guess.
func (t *signInTry) end() {
	t.account.Forgive()
	t.client.Forgive()
}

// clientAddr names the caller for rate limiting: the address the gateway
// received the request from (the last X-Forwarded-For entry, which the
// gateway appends itself), or the gRPC peer for direct callers.
func clientAddr(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if xff := md.Get("x-forwarded-for"); len(xff) > 0 {
		last := xff[len(xff)-1]
		if i := strings.LastIndex(last, ","); i >= 0 {
			last = last[i+1:]
		}
		if a := strings.TrimSpace(last); a != "" {
			return a
		}
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
			return host
		}
		return p.Addr.String()
	}
	return "unknown"
}

// RegisterCustomer creates a customer with a password and returns their
// credential.
func (s *Server) RegisterCustomer(ctx context.Context, req *orderv1.RegisterCustomerRequest) (*orderv1.RegisterCustomerResponse, error) {
	// The password is hashed, never stored, so it is not scanned as a card.
	scan := proto.CloneOf(req)
	scan.Password = ""
	if err := rejectCards(scan); err != nil {
		return nil, err
	}
	p, err := order.NewProfile(ids.New(), req.GetName(), req.GetEmail(), req.GetPhone(), addressFromProto(req.GetAddress()), s.now())
	if err := errors.Join(err, order.ValidatePassword(req.GetPassword())); err != nil {
		return nil, err
	}
	hash, err := auth.HashPassword(ctx, req.GetPassword(), s.signIn.params)
	if err != nil {
		return nil, err
	}
	if err := s.store.RegisterCustomer(ctx, p, hash); err != nil {
		return nil, err
	}
	tok, exp, err := s.signer.Sign(auth.Claims{Subject: p.ID, Role: auth.RoleCustomer, Name: p.Name}, s.opts.TokenTTL)
	if err != nil {
		return nil, err
	}
	return &orderv1.RegisterCustomerResponse{Customer: profileToProto(p), Token: tok, TokenExpireTime: timestamppb.New(exp)}, nil
}

// SignIn checks a returning customer's email and password. An unknown email
// costs the same hashing time and gets the same error as a wrong password.
func (s *Server) SignIn(ctx context.Context, req *orderv1.SignInRequest) (*orderv1.SignInResponse, error) {
	email, pw := order.NormalizeEmail(req.GetEmail()), req.GetPassword()
	var problems []error
	switch {
	case email == "":
		problems = append(problems, errs.Invalid("email", "is required"))
	case len(email) > order.MaxEmailLen:
		// No account has one this long; refused before it becomes a key
		// of the attempt counts, which would keep it in memory.
		problems = append(problems, errs.Invalid("email", "must be at most %d characters", order.MaxEmailLen))
	}
	if pw == "" {
		problems = append(problems, errs.Invalid("password", "is required"))
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	try, err := s.signIn.begin(ctx, email, clientAddr(ctx))
	if err != nil {
		return nil, err
	}
	defer try.end()
	failed := func() (*orderv1.SignInResponse, error) {
		try.fail()
		return nil, order.ErrSignInFailed
	}
	if len(pw) > 4*order.MaxPasswordLen {
		return failed() // no registered password is this long
	}
	id, hash, err := s.store.Credential(ctx, email)
	if errors.Is(err, order.ErrCustomerNotFound) {
		auth.DummyCheck(ctx, pw)
		return failed()
	}
	if err != nil {
		return nil, err
	}
	if err := auth.CheckPassword(ctx, pw, hash); errors.Is(err, auth.ErrPasswordMismatch) {
		return failed()
	} else if err != nil {
		return nil, err
	}
	p, err := s.store.GetCustomer(ctx, id)
	if errors.Is(err, order.ErrCustomerNotFound) {
		return failed() // a registration that crashed half-way
	}
	if err != nil {
		return nil, err
	}
	try.succeed()
	tok, exp, err := s.signer.Sign(auth.Claims{Subject: p.ID, Role: auth.RoleCustomer, Name: p.Name}, s.opts.TokenTTL)
	if err != nil {
		return nil, err
	}
	return &orderv1.SignInResponse{Customer: profileToProto(p), Token: tok, TokenExpireTime: timestamppb.New(exp)}, nil
}

// GetCurrentCustomer returns the caller's profile.
func (s *Server) GetCurrentCustomer(ctx context.Context, _ *orderv1.GetCurrentCustomerRequest) (*orderv1.GetCurrentCustomerResponse, error) {
	c, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	p, err := s.store.GetCustomer(ctx, c.Subject)
	if err != nil {
		return nil, err
	}
	return &orderv1.GetCurrentCustomerResponse{Customer: profileToProto(p)}, nil
}
