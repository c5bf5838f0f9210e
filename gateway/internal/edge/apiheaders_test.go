package edge_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestAPIResponseHeaders: answers carrying a customer's data (an order, a
// fresh token) are never kept by a cache, and no answer is sniffed as
// another type than it says; the menu stays cacheable.
func TestAPIResponseHeaders(t *testing.T) {
	s := newStack(t)
	authz := http.Header{"Authorization": {"Bearer t"}}
	for _, tt := range []struct {
		method, path string
		body         string
		wantCache    string
	}{
		{"GET", "/v1/orders/o-1", "", "no-store"},
		{"POST", "/v1/orders", validOrder, "no-store"},
		{"GET", "/v1/orders/o-1:watch", "", "no-store"},
		{"GET", "/v1/menu", "", "no-cache"},
		{"GET", "/v1/nothing-here", "", "no-store"},
	} {
		var resp *http.Response
		if tt.body != "" {
			resp, _ = s.do(t, tt.method, tt.path, strings.NewReader(tt.body), authz)
		} else {
			resp, _ = s.do(t, tt.method, tt.path, nil, authz)
		}
		if got := resp.Header.Get("Cache-Control"); got != tt.wantCache {
			t.Errorf("%s %s Cache-Control = %q, want %q", tt.method, tt.path, got, tt.wantCache)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s %s X-Content-Type-Options = %q, want nosniff", tt.method, tt.path, got)
		}
	}
}
