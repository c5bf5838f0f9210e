package edge_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzOrderBody sends any body, with any Idempotency-Key, to POST
// /v1/orders: the gateway decodes it into the order request or refuses it
// with a JSON google.rpc.Status, and never fails with a server error.
func FuzzOrderBody(f *testing.F) {
	f.Add([]byte(validOrder), "7f3c2a")
	f.Add([]byte(`{"item":{"toppingIds":["a","b","c","d"]},"note":"\u0664\u0661"}`), "café-1")
	f.Add([]byte(`{"deliveryAddress":{"line1":"4111 1111 1111 1111"}}`), "")
	f.Add([]byte(`{"item": {"pizzaId"`), "k")
	f.Add([]byte(`[1,2,3]`), "4111111111111111")
	f.Add([]byte(`{"fulfillment":1e309}`), "\x00")
	s := newStack(f)
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		req := httptest.NewRequest(http.MethodPost, "/v1/orders", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header["Idempotency-Key"] = []string{key}
		}
		rec := httptest.NewRecorder()
		s.gw.ServeHTTP(rec, req)
		switch code := rec.Code; {
		case code == http.StatusOK:
		case code >= 400 && code < 500:
			var st rpcStatus
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.Code == 0 || st.Message == "" {
				t.Fatalf("POST /v1/orders %q = %d with body %q, want a JSON Status", body, code, rec.Body.String())
			}
		default:
			t.Fatalf("POST /v1/orders %q (key %q) = %d %s, want 200 or 4xx", body, key, code, rec.Body.String())
		}
	})
}
