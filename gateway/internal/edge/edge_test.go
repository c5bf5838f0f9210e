package edge_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/pizzashop/pizzashop/gateway/internal/edge"
	"github.com/pizzashop/pizzashop/gateway/openapi"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
)

const validOrder = `{"item":{"pizzaId":"margherita","size":"SIZE_LARGE","toppingIds":["basil"]},` +
	`"fulfillment":"FULFILLMENT_PICKUP","paymentMethod":"PAYMENT_METHOD_CASH"}`

func TestGetMenuCaching(t *testing.T) {
	s := newStack(t)
	tests := []struct {
		name        string
		ifNoneMatch string
		want        int
	}{
		{"unconditional", "", http.StatusOK},
		{"current tag", `"menu-v7"`, http.StatusNotModified},
		{"weak current tag", `W/"menu-v7"`, http.StatusNotModified},
		{"list holding the current tag", `"menu-v5", "menu-v7"`, http.StatusNotModified},
		{"any tag", `*`, http.StatusNotModified},
		{"stale tag", `"menu-v6"`, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.ifNoneMatch != "" {
				h.Set("If-None-Match", tt.ifNoneMatch)
			}
			resp, body := s.do(t, "GET", "/v1/menu", nil, h)
			if resp.StatusCode != tt.want {
				t.Fatalf("GET /v1/menu (If-None-Match %s) status = %d, want %d\n%s", tt.ifNoneMatch, resp.StatusCode, tt.want, body)
			}
			if got, want := resp.Header.Get("ETag"), `"menu-v7"`; got != want {
				t.Errorf("GET /v1/menu ETag = %s, want %s", got, want)
			}
			if got, want := resp.Header.Get("Cache-Control"), "no-cache"; got != want {
				t.Errorf("GET /v1/menu Cache-Control = %q, want %q", got, want)
			}
			if tt.want == http.StatusNotModified {
				if len(body) != 0 {
					t.Errorf("GET /v1/menu 304 body = %q, want none", body)
				}
				return
			}
			if got, want := resp.Header.Get("Content-Type"), "application/json"; got != want {
				t.Errorf("GET /v1/menu Content-Type = %q, want %q", got, want)
			}
			var menu struct {
				Pizzas []struct {
					ID        string `json:"id"`
					Available *bool  `json:"available"`
				} `json:"pizzas"`
				Toppings     []json.RawMessage `json:"toppings"`
				Version      string            `json:"version"`
				CurrencyCode string            `json:"currencyCode"`
			}
			if err := json.Unmarshal(body, &menu); err != nil {
				t.Fatalf("GET /v1/menu body: %v\n%s", err, body)
			}
			if len(menu.Pizzas) != 6 || len(menu.Toppings) != 10 || menu.Version != "7" || menu.CurrencyCode != "USD" {
				t.Errorf("GET /v1/menu = %d pizzas, %d toppings, version %q, currency %q; want 6, 10, \"7\", \"USD\"",
					len(menu.Pizzas), len(menu.Toppings), menu.Version, menu.CurrencyCode)
			}
			soldOut := menu.Pizzas[4]
			if soldOut.Available == nil || *soldOut.Available {
				t.Errorf("GET /v1/menu pizza %s available = %v, want an explicit false", soldOut.ID, soldOut.Available)
			}
		})
	}
}

func TestForwardedHeaders(t *testing.T) {
	s := newStack(t)
	h := http.Header{
		"Authorization":               {"Bearer customer-token"},
		"Idempotency-Key":             {"key-1"},
		"X-Request-Id":                {"req-1"},
		"Cookie":                      {"session=browser-secret"},
		"Grpc-Metadata-Role":          {"admin"},
		"X-Internal-Debug":            {"1"},
		"Content-Type":                {"application/json"},
		"Grpc-Metadata-Authorization": {"Bearer someone-else"},
	}
	resp, body := s.do(t, "POST", "/v1/orders", strings.NewReader(validOrder), h)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/orders status = %d, want 200\n%s", resp.StatusCode, body)
	}
	md, _ := s.order.seen()
	for key, want := range map[string][]string{
		"authorization":   {"Bearer customer-token"},
		"idempotency-key": {"key-1"},
		"x-request-id":    {"req-1"},
	} {
		if got := md.Get(key); len(got) != 1 || got[0] != want[0] {
			t.Errorf("metadata %q = %q, want %q", key, got, want)
		}
	}
	for _, key := range []string{"grpcgateway-authorization", "grpcgateway-cookie", "cookie", "role", "x-internal-debug"} {
		if got := md.Get(key); len(got) != 0 {
			t.Errorf("metadata %q = %q, want it not forwarded", key, got)
		}
	}
}

func TestOrderResponseShape(t *testing.T) {
	s := newStack(t)
	resp, body := s.do(t, "POST", "/v1/orders", strings.NewReader(validOrder), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/orders status = %d, want 200\n%s", resp.StatusCode, body)
	}
	var order map[string]any
	if err := json.Unmarshal(body, &order); err != nil {
		t.Fatalf("POST /v1/orders body: %v\n%s", err, body)
	}
	// response_body is "order": the order is the whole body, in lowerCamelCase,
	// with unset fields present.
	for _, key := range []string{"id", "customerId", "paymentMethod", "rejectionReason", "history"} {
		if _, ok := order[key]; !ok {
			t.Errorf("POST /v1/orders body has no %q\n%s", key, body)
		}
	}
	if _, ok := order["customer_id"]; ok {
		t.Errorf("POST /v1/orders body has snake_case keys\n%s", body)
	}
	if len(resp.Header.Values("Grpc-Metadata-Content-Type")) != 0 {
		t.Errorf("POST /v1/orders leaks upstream metadata: %v", resp.Header)
	}
}

func TestUpstreamErrors(t *testing.T) {
	s := newStack(t)
	tests := []struct {
		name       string
		set        func()
		method     string
		path       string
		body       string
		wantStatus int
		wantCode   codes.Code
		wantMsg    string // substring of message
		wantDetail string // @type of one detail
	}{
		{
			name: "field violations",
			set: func() {
				s.menu.priceErr = statusErr(codes.InvalidArgument, "topping_ids: at most 3 toppings",
					reason("INVALID_ARGUMENT"),
					&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
						{Field: "topping_ids", Description: "at most 3 toppings"},
					}})
			},
			method: "POST", path: "/v1/menu:price", body: `{"pizzaId":"margherita","size":"SIZE_SMALL"}`,
			wantStatus: http.StatusBadRequest, wantCode: codes.InvalidArgument, wantMsg: "at most 3 toppings",
			wantDetail: "type.googleapis.com/google.rpc.BadRequest",
		},
		{
			name: "idempotency key reused",
			set: func() {
				s.order.createErr = statusErr(codes.FailedPrecondition, "idempotency key reused", reason("IDEMPOTENCY_KEY_REUSED"))
			},
			method: "POST", path: "/v1/orders", body: validOrder,
			wantStatus: http.StatusUnprocessableEntity, wantCode: codes.FailedPrecondition, wantMsg: "idempotency key reused",
			wantDetail: "type.googleapis.com/google.rpc.ErrorInfo",
		},
		{
			name:   "idempotency key in flight",
			set:    func() { s.order.createErr = statusErr(codes.Aborted, "a request with this key is in flight") },
			method: "POST", path: "/v1/orders", body: validOrder,
			wantStatus: http.StatusConflict, wantCode: codes.Aborted, wantMsg: "in flight",
		},
		{
			name: "order not cancellable",
			set: func() {
				s.order.cancelErr = statusErr(codes.FailedPrecondition, "baking has started", reason("ORDER_NOT_CANCELLABLE"))
			},
			method: "POST", path: "/v1/orders/o-1:cancel", body: `{}`,
			wantStatus: http.StatusConflict, wantCode: codes.FailedPrecondition, wantMsg: "baking has started",
		},
		{
			name: "invalid transition",
			set: func() {
				s.order.cancelErr = statusErr(codes.FailedPrecondition, "order is delivered", reason("INVALID_TRANSITION"))
			},
			method: "POST", path: "/v1/orders/o-1:cancel", body: `{}`,
			wantStatus: http.StatusConflict, wantCode: codes.FailedPrecondition,
		},
		{
			name: "reason of another domain keeps the code's status",
			set: func() {
				s.order.cancelErr = statusErr(codes.FailedPrecondition, "no", &errdetails.ErrorInfo{Reason: "ORDER_NOT_CANCELLABLE", Domain: "example.com"})
			},
			method: "POST", path: "/v1/orders/o-1:cancel", body: `{}`,
			wantStatus: http.StatusBadRequest, wantCode: codes.FailedPrecondition,
		},
		{
			name: "sold out",
			set: func() {
				s.order.createErr = statusErr(codes.FailedPrecondition, "pizza margherita is sold out", reason("SOLD_OUT"))
			},
			method: "POST", path: "/v1/orders", body: validOrder,
			wantStatus: http.StatusBadRequest, wantCode: codes.FailedPrecondition, wantMsg: "sold out",
		},
		{
			name:   "not found",
			set:    func() { s.order.getErr = statusErr(codes.NotFound, "order o-2 not found") },
			method: "GET", path: "/v1/orders/o-2",
			wantStatus: http.StatusNotFound, wantCode: codes.NotFound, wantMsg: "o-2",
		},
		{
			name:   "unauthenticated",
			set:    func() { s.order.getErr = statusErr(codes.Unauthenticated, "missing credential") },
			method: "GET", path: "/v1/orders/o-2",
			wantStatus: http.StatusUnauthorized, wantCode: codes.Unauthenticated, wantMsg: "missing credential",
		},
		{
			name:   "internal detail stays inside",
			set:    func() { s.order.getErr = statusErr(codes.Internal, "mongo: connection to 10.0.0.7:27017 refused") },
			method: "GET", path: "/v1/orders/o-2",
			wantStatus: http.StatusInternalServerError, wantCode: codes.Internal, wantMsg: "internal error",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.set()
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			resp, got := s.do(t, tt.method, tt.path, body, nil)
			what := tt.method + " " + tt.path
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("%s status = %d, want %d\n%s", what, resp.StatusCode, tt.wantStatus, got)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s Content-Type = %q, want application/json", what, ct)
			}
			st := decodeStatus(t, what, got)
			if codes.Code(st.Code) != tt.wantCode {
				t.Errorf("%s body code = %d, want %d (%v)", what, st.Code, tt.wantCode, tt.wantCode)
			}
			if !strings.Contains(st.Message, tt.wantMsg) {
				t.Errorf("%s body message = %q, want it to contain %q", what, st.Message, tt.wantMsg)
			}
			if strings.Contains(string(got), "10.0.0.7") {
				t.Errorf("%s body leaks upstream detail: %s", what, got)
			}
			if tt.wantDetail != "" && !hasDetail(st, tt.wantDetail) {
				t.Errorf("%s body details = %v, want one of @type %s", what, st.Details, tt.wantDetail)
			}
			if tt.wantStatus == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s has no WWW-Authenticate header", what)
			}
		})
	}
}

func hasDetail(st rpcStatus, typ string) bool {
	for _, d := range st.Details {
		if d["@type"] == typ {
			return true
		}
	}
	return false
}

func TestUpstreamDown(t *testing.T) {
	s := newStack(t, func(s *stack, o *edge.Options) { o.Menu = dial(t, closedAddr(t)) })

	resp, body := s.do(t, "GET", "/v1/menu", nil, nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("GET /v1/menu status = %d, want 503\n%s", resp.StatusCode, body)
	}
	st := decodeStatus(t, "GET /v1/menu", body)
	if codes.Code(st.Code) != codes.Unavailable {
		t.Errorf("GET /v1/menu body code = %d, want %d", st.Code, codes.Unavailable)
	}
	if strings.Contains(st.Message, "127.0.0.1") {
		t.Errorf("GET /v1/menu body message = %q, leaks the upstream address", st.Message)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Errorf("GET /v1/menu 503 has no Retry-After header")
	}
	if !strings.Contains(s.logs.String(), "upstream call failed") {
		t.Errorf("log has no line for the failed upstream call:\n%s", s.logs)
	}

	resp, body = s.do(t, "GET", "/readyz", nil, nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("GET /readyz status = %d, want 503\n%s", resp.StatusCode, body)
	}
	rep := decodeReady(t, body)
	if got := rep.upstream("menu"); got.Status != "Unavailable" || got.Error == "" {
		t.Errorf("GET /readyz menu = %+v, want status Unavailable with an error", got)
	}
	if got := rep.upstream("order"); got.Status != "SERVING" {
		t.Errorf("GET /readyz order = %+v, want status SERVING", got)
	}
}

func TestRequestBodies(t *testing.T) {
	s := newStack(t) // MaxBodyBytes is 1024
	padded := func(n int) string {
		// A valid order padded with spaces to exactly n bytes.
		return validOrder + strings.Repeat(" ", n-len(validOrder))
	}
	tests := []struct {
		name       string
		body       io.Reader
		wantStatus int
		wantMsg    string
	}{
		{"valid", strings.NewReader(validOrder), http.StatusOK, ""},
		{"exactly at the limit", strings.NewReader(padded(1024)), http.StatusOK, ""},
		{"client-chosen price", strings.NewReader(`{"note":"x","price":{"total":{"amountMinor":"1"}}}`), http.StatusBadRequest, `unknown field "price"`},
		{"client-chosen customer", strings.NewReader(`{"customerId":"c-2","note":"x"}`), http.StatusBadRequest, `unknown field "customerId"`},
		{"wrong type", strings.NewReader(`{"note":5}`), http.StatusBadRequest, "note"},
		{"bad enum", strings.NewReader(`{"fulfillment":"FULFILLMENT_DRONE"}`), http.StatusBadRequest, "FULFILLMENT_DRONE"},
		{"malformed JSON", strings.NewReader(`{"note": "x",}`), http.StatusBadRequest, "malformed JSON"},
		{"truncated JSON", strings.NewReader(`{"item": {"pizzaId"`), http.StatusBadRequest, "malformed JSON"},
		{"two JSON values", strings.NewReader(`{"note":"a"} {"note":"b"}`), http.StatusBadRequest, "unexpected data after the JSON object"},
		{"over the limit with Content-Length", strings.NewReader(padded(1025)), http.StatusRequestEntityTooLarge, "larger than 1024 bytes"},
		// io.MultiReader hides the length, so the client sends it chunked.
		{"over the limit chunked", io.MultiReader(strings.NewReader(padded(4096))), http.StatusRequestEntityTooLarge, "larger than 1024 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, callsBefore := s.order.seen()
			resp, body := s.do(t, "POST", "/v1/orders", tt.body, http.Header{"Content-Type": {"application/json"}})
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("POST /v1/orders status = %d, want %d\n%s", resp.StatusCode, tt.wantStatus, body)
			}
			_, callsAfter := s.order.seen()
			if tt.wantStatus == http.StatusOK {
				return
			}
			st := decodeStatus(t, "POST /v1/orders", body)
			if codes.Code(st.Code) != codes.InvalidArgument {
				t.Errorf("POST /v1/orders body code = %d, want %d", st.Code, codes.InvalidArgument)
			}
			if !strings.Contains(st.Message, tt.wantMsg) {
				t.Errorf("POST /v1/orders body message = %q, want it to contain %q", st.Message, tt.wantMsg)
			}
			if strings.Contains(st.Message, "\u00a0") || strings.HasPrefix(st.Message, "proto:") {
				t.Errorf("POST /v1/orders body message = %q, want it without protojson's prefix", st.Message)
			}
			if callsAfter != callsBefore {
				t.Errorf("POST /v1/orders reached the order service %d times, want 0", callsAfter-callsBefore)
			}
		})
	}
}

func TestRouting(t *testing.T) {
	s := newStack(t)
	tests := []struct {
		method, path string
		wantStatus   int
	}{
		{"GET", "/v1/nothing-here", http.StatusNotFound},
		{"GET", "/v1/kitchen/tickets", http.StatusNotFound}, // no kitchen connection in this stack
		{"DELETE", "/v1/menu", http.StatusMethodNotAllowed},
		{"POST", "/healthz", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp, body := s.do(t, tt.method, tt.path, nil, nil)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("%s %s status = %d, want %d\n%s", tt.method, tt.path, resp.StatusCode, tt.wantStatus, body)
			}
			st := decodeStatus(t, tt.method+" "+tt.path, body)
			if !strings.Contains(st.Message, tt.path) {
				t.Errorf("%s %s body message = %q, want it to name the path", tt.method, tt.path, st.Message)
			}
		})
	}
}

func TestPages(t *testing.T) {
	s := newStack(t)
	tests := []struct {
		path     string
		wantType string
		check    func(t *testing.T, body []byte)
	}{
		{"/healthz", "application/json", func(t *testing.T, body []byte) {
			if got := strings.TrimSpace(string(body)); got != `{"status":"ok"}` {
				t.Errorf("GET /healthz body = %s, want {\"status\":\"ok\"}", got)
			}
		}},
		{"/openapi.json", "application/json", func(t *testing.T, body []byte) {
			var doc map[string]any
			if err := json.Unmarshal(body, &doc); err != nil {
				t.Fatalf("GET /openapi.json: %v", err)
			}
			if _, ok := doc["openapi"]; !ok {
				t.Errorf("GET /openapi.json has no \"openapi\" key")
			}
		}},
		{"/metrics", "", func(t *testing.T, body []byte) {
			if !strings.Contains(string(body), "# metrics") {
				t.Errorf("GET /metrics body = %q, want the metrics handler's", body)
			}
		}},
		{"/", "text/html; charset=utf-8", func(t *testing.T, body []byte) {
			for _, link := range []string{`href="/openapi.json"`, `href="/v1/menu"`} {
				if !strings.Contains(string(body), link) {
					t.Errorf("GET / has no link %s", link)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := s.do(t, "GET", tt.path, nil, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s status = %d, want 200\n%s", tt.path, resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); tt.wantType != "" && ct != tt.wantType {
				t.Errorf("GET %s Content-Type = %q, want %q", tt.path, ct, tt.wantType)
			}
			tt.check(t, body)
		})
	}
}

func TestEmbeddedOpenAPI(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(openapi.Spec, &doc); err != nil {
		t.Fatalf("openapi.Spec: %v", err)
	}
	if doc["openapi"] != "3.1.0" {
		t.Errorf("openapi.Spec openapi = %v, want 3.1.0", doc["openapi"])
	}
	s := newStack(t, func(_ *stack, o *edge.Options) { o.OpenAPI = openapi.Spec })
	resp, body := s.do(t, "GET", "/openapi.json", nil, nil)
	if resp.StatusCode != http.StatusOK || len(body) != len(openapi.Spec) {
		t.Fatalf("GET /openapi.json = %d with %d bytes, want 200 with %d", resp.StatusCode, len(body), len(openapi.Spec))
	}
	resp, _ = s.do(t, "GET", "/openapi.json", nil, http.Header{"If-None-Match": {resp.Header.Get("ETag")}})
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("GET /openapi.json with its ETag status = %d, want 304", resp.StatusCode)
	}
}

type readyBody struct {
	Status    string `json:"status"`
	Upstreams []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
		Error  string `json:"error"`
	} `json:"upstreams"`
}

func (r readyBody) upstream(name string) (u struct{ Status, Error string }) {
	for _, x := range r.Upstreams {
		if x.Name == name {
			return struct{ Status, Error string }{x.Status, x.Error}
		}
	}
	return u
}

func decodeReady(t *testing.T, body []byte) readyBody {
	t.Helper()
	var r readyBody
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("GET /readyz body: %v\n%s", err, body)
	}
	return r
}

func TestReadyz(t *testing.T) {
	s := newStack(t)
	steps := []struct {
		name       string
		do         func()
		wantStatus int
		want       string
	}{
		{"all serving", func() {}, http.StatusOK, "ready"},
		{"order not serving", func() {
			s.orderHealth.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
		}, http.StatusServiceUnavailable, "not_ready"},
		{"order back", func() {
			s.orderHealth.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		}, http.StatusOK, "ready"},
		{"shutting down", s.gw.BeginShutdown, http.StatusServiceUnavailable, "shutting_down"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do()
			time.Sleep(time.Millisecond) // past ReadyCacheTTL
			resp, body := s.do(t, "GET", "/readyz", nil, nil)
			if resp.StatusCode != st.wantStatus {
				t.Fatalf("GET /readyz status = %d, want %d\n%s", resp.StatusCode, st.wantStatus, body)
			}
			if got := decodeReady(t, body); got.Status != st.want {
				t.Errorf("GET /readyz status field = %q, want %q\n%s", got.Status, st.want, body)
			}
			if st.want == "not_ready" && !strings.Contains(string(body), `"name":"order","status":"NOT_SERVING"`) {
				t.Errorf("GET /readyz body = %s, want it to name order as NOT_SERVING", body)
			}
		})
	}
}

func TestReadyzCachesResult(t *testing.T) {
	s := newStack(t, func(_ *stack, o *edge.Options) { o.ReadyCacheTTL = time.Hour })
	if resp, body := s.do(t, "GET", "/readyz", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /readyz status = %d, want 200\n%s", resp.StatusCode, body)
	}
	s.menuHealth.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	if resp, body := s.do(t, "GET", "/readyz", nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /readyz within the cache TTL status = %d, want the cached 200\n%s", resp.StatusCode, body)
	}
}

func TestWatchOrderStream(t *testing.T) {
	s := newStack(t, func(s *stack, _ *edge.Options) {
		s.order.watch = []*orderv1.WatchOrderResponse{
			{Order: &orderv1.Order{Id: "o-1", Status: orderv1.OrderStatus_ORDER_STATUS_PLACED}},
			{Order: &orderv1.Order{Id: "o-1", Status: orderv1.OrderStatus_ORDER_STATUS_ACCEPTED}},
		}
	})
	resp, body := s.do(t, "GET", "/v1/orders/o-1:watch", nil, http.Header{"Authorization": {"Bearer t"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/orders/o-1:watch status = %d, want 200\n%s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("GET /v1/orders/o-1:watch Content-Type = %q, want application/x-ndjson", ct)
	}
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	want := []string{"ORDER_STATUS_PLACED", "ORDER_STATUS_ACCEPTED"}
	if len(lines) != len(want) {
		t.Fatalf("GET /v1/orders/o-1:watch sent %d lines, want %d:\n%s", len(lines), len(want), body)
	}
	for i, line := range lines {
		var msg struct {
			Result struct {
				Order struct{ ID, Status string }
			}
		}
		if err := json.Unmarshal([]byte(line), &msg); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, line)
		}
		if msg.Result.Order.ID != "o-1" || msg.Result.Order.Status != want[i] {
			t.Errorf("line %d = order %s %s, want o-1 %s", i, msg.Result.Order.ID, msg.Result.Order.Status, want[i])
		}
	}
	if md, _ := s.order.seen(); len(md.Get("authorization")) != 1 {
		t.Errorf("WatchOrder metadata authorization = %q, want the caller's", md.Get("authorization"))
	}
}

func TestBeginShutdownEndsStreams(t *testing.T) {
	s := newStack(t, func(s *stack, _ *edge.Options) {
		s.order.watch = []*orderv1.WatchOrderResponse{{Order: &orderv1.Order{Id: "o-1"}}}
		s.order.watchHold = true
	})
	resp, err := http.Get(s.url + "/v1/orders/o-1:watch")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	first, err := r.ReadString('\n')
	if err != nil || !strings.Contains(first, `"o-1"`) {
		t.Fatalf("first line = %q, %v; want the order", first, err)
	}

	s.gw.BeginShutdown()
	done := make(chan string, 1)
	go func() {
		rest, _ := io.ReadAll(r)
		done <- string(rest)
	}()
	select {
	case rest := <-done:
		var msg struct {
			Error rpcStatus `json:"error"`
		}
		if err := json.Unmarshal([]byte(rest), &msg); err != nil || codes.Code(msg.Error.Code) != codes.Unavailable {
			t.Errorf("after BeginShutdown the stream sent %q, want an UNAVAILABLE error line", rest)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stream still open 5s after BeginShutdown")
	}
}

func TestAccessLog(t *testing.T) {
	s := newStack(t)
	s.do(t, "GET", "/v1/menu", nil, http.Header{
		"Authorization": {"Bearer very-secret-token"},
		"X-Request-Id":  {"req-42"},
	})
	s.do(t, "POST", "/v1/orders", strings.NewReader(`{"note":"card 4111 1111 1111 1111"}`), http.Header{
		"Authorization": {"Bearer very-secret-token"},
	})
	logs := s.logs.String()
	for _, secret := range []string{"very-secret-token", "4111"} {
		if strings.Contains(withoutRandomFields(logs), secret) {
			t.Errorf("log contains %q:\n%s", secret, logs)
		}
	}
	var found bool
	for line := range strings.Lines(logs) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, line)
		}
		if rec["msg"] != "http request" || rec["path"] != "/v1/menu" {
			continue
		}
		found = true
		for key, want := range map[string]any{"method": "GET", "status": 200.0, "request_id": "req-42"} {
			if rec[key] != want {
				t.Errorf("access log %s = %v, want %v", key, rec[key], want)
			}
		}
		for _, key := range []string{"duration_ms", "bytes"} {
			if _, ok := rec[key]; !ok {
				t.Errorf("access log has no %s: %s", key, line)
			}
		}
	}
	if !found {
		t.Errorf("no access log line for GET /v1/menu:\n%s", logs)
	}
}

func TestTracing(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	s := newStack(t)
	tests := []struct {
		method, path string
		wantSpan     string
		wantRoute    string
	}{
		{"GET", "/v1/orders/o-1", "GET /v1/orders/{id}", "/v1/orders/{id}"},
		{"POST", "/v1/orders/o-1:cancel", "POST /v1/orders/{id}:cancel", "/v1/orders/{id}:cancel"},
		{"GET", "/v1/menu", "GET /v1/menu", "/v1/menu"},
		{"GET", "/v1/nothing-here", "GET", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			var body io.Reader
			if tt.method == "POST" {
				body = strings.NewReader(`{}`)
			}
			s.do(t, tt.method, tt.path, body, nil)
			var span sdktrace.ReadOnlySpan
			for _, sp := range rec.Ended() {
				if sp.SpanKind() == trace.SpanKindServer && sp.Name() == tt.wantSpan {
					span = sp
				}
			}
			if span == nil {
				var names []string
				for _, sp := range rec.Ended() {
					names = append(names, sp.Name())
				}
				t.Fatalf("%s %s: no server span %q among %q", tt.method, tt.path, tt.wantSpan, names)
			}
			var route string
			for _, kv := range span.Attributes() {
				if kv.Key == "http.route" {
					route = kv.Value.AsString()
				}
			}
			if route != tt.wantRoute {
				t.Errorf("%s %s span http.route = %q, want %q", tt.method, tt.path, route, tt.wantRoute)
			}
			traceID := span.SpanContext().TraceID().String()
			if !strings.Contains(s.logs.String(), `"path":"`+tt.path+`","status"`) ||
				!strings.Contains(s.logs.String(), `"trace_id":"`+traceID+`"`) {
				t.Errorf("%s %s: no access log line with trace_id %s:\n%s", tt.method, tt.path, traceID, s.logs)
			}
		})
	}
}

func TestWatchOrderErrors(t *testing.T) {
	tests := []struct {
		name       string
		watch      []*orderv1.WatchOrderResponse
		err        error
		wantStatus int
		wantLines  int
		wantCode   codes.Code
		wantMsg    string
	}{
		// Before the first message the status is still the error's.
		{"not found", nil, statusErr(codes.NotFound, "order o-9 not found"), http.StatusNotFound, 1, codes.NotFound, "o-9"},
		// After it, the error is the stream's last line.
		{"fails midway", []*orderv1.WatchOrderResponse{{Order: &orderv1.Order{Id: "o-1"}}},
			statusErr(codes.Internal, "mongo: cursor died"), http.StatusOK, 2, codes.Internal, "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t, func(s *stack, _ *edge.Options) { s.order.watch, s.order.watchErr = tt.watch, tt.err })
			resp, body := s.do(t, "GET", "/v1/orders/o-1:watch", nil, nil)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("GET /v1/orders/o-1:watch status = %d, want %d\n%s", resp.StatusCode, tt.wantStatus, body)
			}
			lines := strings.Split(strings.TrimSpace(string(body)), "\n")
			if len(lines) != tt.wantLines {
				t.Fatalf("GET /v1/orders/o-1:watch sent %d lines, want %d:\n%s", len(lines), tt.wantLines, body)
			}
			var last struct {
				Error rpcStatus `json:"error"`
			}
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
				t.Fatalf("last line: %v: %s", err, lines[len(lines)-1])
			}
			if codes.Code(last.Error.Code) != tt.wantCode || !strings.Contains(last.Error.Message, tt.wantMsg) {
				t.Errorf("last line error = %d %q, want %d containing %q", last.Error.Code, last.Error.Message, tt.wantCode, tt.wantMsg)
			}
			if strings.Contains(string(body), "mongo") {
				t.Errorf("stream leaks upstream detail: %s", body)
			}
		})
	}
}
