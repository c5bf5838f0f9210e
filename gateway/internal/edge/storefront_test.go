package edge_test

import (
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
)

// TestPublicCallsIgnoreStaleToken: a storefront that still holds an expired
// or otherwise bad token can price a pizza and sign in again; the gateway
// leaves the credential to the service, whose public methods ignore it.
// Protected calls are still refused before their body is read.
func TestPublicCallsIgnoreStaleToken(t *testing.T) {
	opt, tok := withSigner(t, 8<<10)
	s := newStack(t, opt)
	s.menu.priceErr = statusErr(codes.NotFound, "pizza nope not found", reason("PIZZA_NOT_FOUND"))
	stale := http.Header{"Authorization": {"Bearer " + tok[:len(tok)-4] + "AAAA"}}

	for _, tt := range []struct {
		path, body string
		want       int
	}{
		{"/v1/menu:price", `{"pizzaId":"nope","size":"SIZE_SMALL"}`, http.StatusNotFound}, // the menu service answered
		// These reach the order service, which serves no CustomerService here.
		{"/v1/customers:signIn", `{"email":"a@example.com","password":"pw"}`, http.StatusNotImplemented},
		{"/v1/customers", `{"email":"a@example.com","password":"pw"}`, http.StatusNotImplemented},
		{"/v1/orders", validOrder, http.StatusUnauthorized}, // not public: refused at the gateway
	} {
		resp, body := s.do(t, "POST", tt.path, strings.NewReader(tt.body), stale)
		if resp.StatusCode != tt.want {
			t.Errorf("POST %s with a stale token = %d, want %d\n%s", tt.path, resp.StatusCode, tt.want, body)
		}
	}
	// A public call's body keeps the anonymous limit.
	big := `{"email":"` + strings.Repeat("a", 2048) + `"}`
	if resp, body := s.do(t, "POST", "/v1/customers:signIn", strings.NewReader(big), stale); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("POST /v1/customers:signIn with 2 KiB = %d, want 413\n%s", resp.StatusCode, body)
	}
}
