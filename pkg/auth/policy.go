package auth

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Policy says, per full gRPC method name ("/pizzashop.menu.v1.MenuService/GetMenu"),
// who may call it. A method missing from the policy is refused for everyone,
// so a new RPC is closed until someone decides who may call it.
type Policy map[string]Rule

// Rule is the access rule of one method.
type Rule struct {
	// Public methods need no credential. A valid credential sent anyway
	// reaches the handler; a stale, foreign or malformed one is ignored, so
	// a browser holding an expired token can still read the menu and sign
	// in again.
	Public bool
	// Roles that may call the method. Empty with Public false means any
	// authenticated caller.
	Roles []Role
}

// Anyone may call the method without a credential.
var Anyone = Rule{Public: true}

// Authenticated may be called by any valid credential.
var Authenticated = Rule{}

// Only allows the given roles.
func Only(roles ...Role) Rule { return Rule{Roles: roles} }

// Interceptors returns the unary and stream server interceptors that verify
// the bearer token in the "authorization" metadata and enforce p. Methods of
// the gRPC health and reflection services are always public.
func Interceptors(s *Signer, p Policy) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	check := func(ctx context.Context, method string) (context.Context, error) {
		rule, ok := p[method]
		if strings.HasPrefix(method, "/grpc.health.v1.") || strings.HasPrefix(method, "/grpc.reflection.") {
			rule, ok = Anyone, true
		}
		if !ok {
			return nil, status.Errorf(codes.PermissionDenied, "method %s is not open to any caller", method)
		}
		token, err := bearer(ctx)
		if err != nil {
			if rule.Public {
				return ctx, nil
			}
			return nil, err
		}
		if token == "" {
			if rule.Public {
				return ctx, nil
			}
			return nil, status.Error(codes.Unauthenticated, "missing credential: send \"authorization: Bearer <token>\"")
		}
		claims, err := s.Verify(token)
		if err != nil {
			if rule.Public {
				return ctx, nil
			}
			return nil, status.Errorf(codes.Unauthenticated, "invalid credential: %v", err)
		}
		if !rule.allows(claims.Role) {
			return nil, status.Errorf(codes.PermissionDenied, "role %q may not call %s", claims.Role, method[strings.LastIndex(method, "/")+1:])
		}
		return WithClaims(ctx, claims), nil
	}
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ctx, err := check(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		ctx, err := check(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return h(srv, &ctxStream{ServerStream: ss, ctx: ctx})
	}
	return unary, stream
}

func (r Rule) allows(role Role) bool {
	if len(r.Roles) == 0 {
		return true
	}
	for _, x := range r.Roles {
		if x == role {
			return true
		}
	}
	return false
}

func bearer(ctx context.Context) (string, error) {
	vals := metadata.ValueFromIncomingContext(ctx, "authorization")
	if len(vals) == 0 || vals[0] == "" {
		return "", nil
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || token == "" {
		return "", status.Error(codes.Unauthenticated, "malformed authorization header: want \"Bearer <token>\"")
	}
	return strings.TrimSpace(token), nil
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

// ServiceCredentials returns per-RPC credentials that send a fresh service
// token on every call, for calls between Pizzashop services.
func ServiceCredentials(s *Signer, service string) grpc.CallOption {
	return grpc.PerRPCCredentials(serviceCreds{s: s, sub: service})
}

// DialServiceCredentials is ServiceCredentials as a dial option.
func DialServiceCredentials(s *Signer, service string) grpc.DialOption {
	return grpc.WithPerRPCCredentials(serviceCreds{s: s, sub: service})
}

type serviceCreds struct {
	s   *Signer
	sub string
}

func (c serviceCreds) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	tok, _, err := c.s.Sign(Claims{Subject: c.sub, Role: RoleService}, serviceTokenTTL)
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

func (serviceCreds) RequireTransportSecurity() bool { return false }
