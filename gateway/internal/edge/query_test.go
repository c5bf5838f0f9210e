package edge_test

import (
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
)

// TestQueryStrings: a query parameter the route does not have is an error
// naming it, not silently dropped, and a card number in a query string is
// refused on every route, before any service sees the request.
func TestQueryStrings(t *testing.T) {
	s := newStack(t)
	const card = "4111111111111111"
	tests := []struct {
		name, method, path string
		want               int
		wantMsg            string
	}{
		{"known parameter", "GET", "/v1/orders/o-1?id=o-1", http.StatusOK, ""},
		{"no query", "GET", "/v1/orders/o-1", http.StatusOK, ""},
		// ListOrders reads its query (pageSize, pageToken); GetOrder reads none.
		{"unknown parameter", "GET", "/v1/orders?customerId=c-2", http.StatusBadRequest, `unknown query parameter "customerId"`},
		{"unknown nested parameter", "GET", "/v1/orders?page.size=1", http.StatusBadRequest, `unknown query parameter "page.size"`},
		{"card in an unknown parameter", "GET", "/v1/menu?note=" + card, http.StatusBadRequest, "card"},
		{"card with spaces", "GET", "/v1/orders/o-1?id=4111%201111%201111%201111", http.StatusBadRequest, "card"},
		{"card as a parameter name", "GET", "/v1/orders/o-1?" + card + "=1", http.StatusBadRequest, "card"},
		{"card in the query of a POST", "POST", "/v1/orders?note=" + card, http.StatusBadRequest, "card"},
		{"card in a typed parameter", "GET", "/v1/orders/o-1?id=x&pageSize=" + card, http.StatusBadRequest, "card"},
		{"malformed query", "GET", "/v1/orders/o-1?id=%zz", http.StatusBadRequest, "query"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, before := s.order.seen()
			var body *strings.Reader
			if tt.method == "POST" {
				body = strings.NewReader(validOrder)
			}
			var resp *http.Response
			var got []byte
			if body != nil {
				resp, got = s.do(t, tt.method, tt.path, body, nil)
			} else {
				resp, got = s.do(t, tt.method, tt.path, nil, nil)
			}
			if resp.StatusCode != tt.want {
				t.Fatalf("%s %s = %d, want %d\n%s", tt.method, tt.path, resp.StatusCode, tt.want, got)
			}
			if tt.want == http.StatusOK {
				return
			}
			st := decodeStatus(t, tt.path, got)
			if codes.Code(st.Code) != codes.InvalidArgument || !strings.Contains(st.Message, tt.wantMsg) {
				t.Errorf("%s %s status = %d %q, want INVALID_ARGUMENT containing %q", tt.method, tt.path, st.Code, st.Message, tt.wantMsg)
			}
			if strings.Contains(string(got), "4111") {
				t.Errorf("%s %s answer quotes the card number: %s", tt.method, tt.path, got)
			}
			if _, after := s.order.seen(); after != before {
				t.Errorf("%s %s reached the order service, want it refused at the gateway", tt.method, tt.path)
			}
		})
	}
	if logs := s.logs.String(); strings.Contains(withoutRandomFields(logs), "4111") {
		t.Errorf("log holds the card number:\n%s", logs)
	}
}
