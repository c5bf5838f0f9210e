package auth

import "context"

type ctxKey struct{}

// WithClaims returns a context carrying the verified claims of the caller.
func WithClaims(ctx context.Context, c Claims) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// FromContext returns the caller's verified claims, if the call carried a
// valid credential.
func FromContext(ctx context.Context) (Claims, bool) {
	c, ok := ctx.Value(ctxKey{}).(Claims)
	return c, ok
}
