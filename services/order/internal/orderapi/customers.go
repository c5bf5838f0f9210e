package orderapi

import (
	"context"
	"errors"
	"math"
	"net"
	"strings"
	"sync"
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

	// busy holds the sign-ins in progress per email. Checking an account's
	// attempts and counting its failure are two steps a hash apart: run
	// concurrently, every guess would pass the check before the first
	// failure counted, and a burst of guesses would get all its passwords
	// checked. One sign-in per email at a time keeps the limit exact.
	mu   sync.Mutex
	busy map[string]*emailTurn
}

type emailTurn struct {
	slot chan struct{}
	refs int
}

// turn waits until no other sign-in for email is in progress; done ends
// the caller's turn.
func (g *signInGuard) turn(ctx context.Context, email string) (done func(), err error) {
	g.mu.Lock()
	t := g.busy[email]
	if t == nil {
		t = &emailTurn{slot: make(chan struct{}, 1)}
		g.busy[email] = t
	}
	t.refs++
	g.mu.Unlock()
	leave := func() {
		g.mu.Lock()
		if t.refs--; t.refs == 0 {
			delete(g.busy, email)
		}
		g.mu.Unlock()
	}
	select {
	case t.slot <- struct{}{}:
		return func() { <-t.slot; leave() }, nil
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	}
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
		params: o.Password, busy: map[string]*emailTurn{}}
}

// allow refuses a sign-in while the account or the client has used up its
// attempts. It answers the same whether or not the account exists.
func (g *signInGuard) allow(email, client string) error {
	okA, waitA := g.accounts.Allow(email)
	okC, waitC := g.clients.Allow(client)
	if okA && okC {
		return nil
	}
	wait := max(waitA, waitC)
	minutes := int(math.Ceil(wait.Minutes()))
	unit := "minutes"
	if minutes == 1 {
		unit = "minute"
	}
	return errs.Wrap(order.ErrTooManyAttempts, "", "too many sign-in attempts; try again in %d %s", minutes, unit)
}

func (g *signInGuard) fail(email, client string) {
	g.accounts.Fail(email)
	g.clients.Fail(client)
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
	done, err := s.signIn.turn(ctx, email)
	if err != nil {
		return nil, err
	}
	defer done()
	client := clientAddr(ctx)
	if err := s.signIn.allow(email, client); err != nil {
		return nil, err
	}
	failed := func() (*orderv1.SignInResponse, error) {
		s.signIn.fail(email, client)
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
	s.signIn.accounts.Reset(email)
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
