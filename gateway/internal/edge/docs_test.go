package edge_test

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/pizzashop/pizzashop/gateway/internal/edge"
	"github.com/pizzashop/pizzashop/gateway/openapi"
	deliveryv1 "github.com/pizzashop/pizzashop/proto/pizzashop/delivery/v1"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
)

// apiDoc is the part of the OpenAPI document these tests read.
type apiDoc struct {
	OpenAPI string `json:"openapi"`
	Paths   map[string]map[string]struct {
		OperationID string                     `json:"operationId"`
		Responses   map[string]json.RawMessage `json:"responses"`
	} `json:"paths"`
	Components struct {
		Schemas map[string]struct {
			Properties map[string]any `json:"properties"`
		} `json:"schemas"`
	} `json:"components"`
}

func loadAPIDoc(t *testing.T) apiDoc {
	t.Helper()
	var doc apiDoc
	if err := json.Unmarshal(openapi.Spec, &doc); err != nil {
		t.Fatalf("openapi.Spec: %v", err)
	}
	if doc.OpenAPI != "3.1.0" || len(doc.Paths) == 0 {
		t.Fatalf("openapi.Spec: openapi %q with %d paths, want 3.1.0 with the API", doc.OpenAPI, len(doc.Paths))
	}
	return doc
}

// routes lists every documented operation as "METHOD /path".
func (d apiDoc) routes() []string {
	var out []string
	for path, item := range d.Paths {
		for method := range item {
			out = append(out, strings.ToUpper(method)+" "+path)
		}
	}
	slices.Sort(out)
	return out
}

// eventDoc is the part of the AsyncAPI document these tests read.
type eventDoc struct {
	AsyncAPI string `json:"asyncapi"`
	Channels map[string]struct {
		Address string `json:"address"`
	} `json:"channels"`
	Operations map[string]struct {
		Consumer *struct {
			Durable string `json:"durable"`
		} `json:"x-pizzashop-consumer"`
	} `json:"operations"`
	Components struct {
		Messages map[string]struct {
			Name        string `json:"name"`
			ContentType string `json:"contentType"`
		} `json:"messages"`
	} `json:"components"`
}

func loadEventDoc(t *testing.T) eventDoc {
	t.Helper()
	var doc eventDoc
	if err := json.Unmarshal(openapi.Events, &doc); err != nil {
		t.Fatalf("openapi.Events: %v", err)
	}
	if !strings.HasPrefix(doc.AsyncAPI, "3.") || len(doc.Channels) == 0 {
		t.Fatalf("openapi.Events: asyncapi %q with %d channels, want 3.x with the events", doc.AsyncAPI, len(doc.Channels))
	}
	return doc
}

// withAllUpstreams wires every service, the ones without a double as
// servers that implement nothing, so that every route is registered.
func withAllUpstreams(t *testing.T) stackOption {
	return func(_ *stack, o *edge.Options) {
		o.OpenAPI, o.AsyncAPI = openapi.Spec, openapi.Events
		if o.Kitchen == nil {
			o.Kitchen, _ = serveGRPC(t, func(g *grpc.Server) {
				kitchenv1.RegisterKitchenServiceServer(g, kitchenv1.UnimplementedKitchenServiceServer{})
			})
		}
		if o.Delivery == nil {
			o.Delivery, _ = serveGRPC(t, func(g *grpc.Server) {
				deliveryv1.RegisterDeliveryServiceServer(g, deliveryv1.UnimplementedDeliveryServiceServer{})
			})
		}
	}
}

var pathParam = regexp.MustCompile(`\{[^}]+\}`)

// Every documented operation is a route of the gateway: it reaches an
// upstream instead of the gateway's "no such route" or "method not allowed".
func TestDocumentedRoutesExist(t *testing.T) {
	doc := loadAPIDoc(t)
	s := newStack(t, withAllUpstreams(t))
	routes := doc.routes()
	if len(routes) < 25 {
		t.Fatalf("the document has %d operations, want every REST route (25 or more)", len(routes))
	}
	for _, route := range routes {
		method, path, _ := strings.Cut(route, " ")
		var body io.Reader
		if method != http.MethodGet {
			body = strings.NewReader(`{}`)
		}
		resp, got := s.do(t, method, pathParam.ReplaceAllString(path, "x1"), body, nil)
		if resp.StatusCode == http.StatusMethodNotAllowed || strings.Contains(string(got), "no such route") {
			t.Errorf("%s: the gateway answers %d %s; the document lists a route it does not serve", route, resp.StatusCode, got)
		}
	}
}

// What the gateway answers is what the document says: the status is one
// the operation lists, and a 200 body has only the documented fields.
func TestAnswersAreDocumented(t *testing.T) {
	doc := loadAPIDoc(t)
	s := newStack(t, withAllUpstreams(t))
	order := `{"item":{"pizzaId":"margherita","size":"SIZE_LARGE"},"fulfillment":"FULFILLMENT_PICKUP","paymentMethod":"PAYMENT_METHOD_CASH"}`
	etag := ""
	tests := []struct {
		name         string
		setup        func()
		method, path string
		docPath      string
		body         string
		header       http.Header
		wantStatus   int
		wantSchema   string // for 200: the schema the body must fit
	}{
		{name: "menu", method: "GET", path: "/v1/menu", wantStatus: 200, wantSchema: "pizzashop.menu.v1.Menu"},
		{name: "menu unchanged", method: "GET", path: "/v1/menu", header: http.Header{"If-None-Match": {"set below"}}, wantStatus: 304},
		{name: "malformed request id", method: "GET", path: "/v1/menu", header: http.Header{"X-Request-Id": {"café-1"}}, wantStatus: 400},
		{name: "create answers the order itself", method: "POST", path: "/v1/orders", body: order,
			header: http.Header{"Idempotency-Key": {"k1"}}, wantStatus: 200, wantSchema: "pizzashop.order.v1.Order"},
		{name: "key reused", setup: func() {
			s.order.createErr = statusErr(codes.FailedPrecondition, "this Idempotency-Key was already used", reason("IDEMPOTENCY_KEY_REUSED"))
		}, method: "POST", path: "/v1/orders", body: order, header: http.Header{"Idempotency-Key": {"k1"}}, wantStatus: 422},
		{name: "body too large", method: "POST", path: "/v1/orders", body: `{"note":"` + strings.Repeat("x", 4096) + `"}`, wantStatus: 413},
		{name: "bad body", method: "POST", path: "/v1/orders", body: `{"price":1}`, wantStatus: 400},
		{name: "not found", setup: func() { s.order.getErr = statusErr(codes.NotFound, "order not found") },
			method: "GET", path: "/v1/orders/x1", docPath: "/v1/orders/{id}", wantStatus: 404},
		{name: "not cancellable", setup: func() {
			s.order.cancelErr = statusErr(codes.FailedPrecondition, "baking", reason("ORDER_NOT_CANCELLABLE"))
		}, method: "POST", path: "/v1/orders/x1:cancel", docPath: "/v1/orders/{id}:cancel", body: `{}`, wantStatus: 409},
		{name: "unauthenticated", setup: func() { s.order.getErr = statusErr(codes.Unauthenticated, "missing credential") },
			method: "GET", path: "/v1/orders/x1", docPath: "/v1/orders/{id}", wantStatus: 401},
		{name: "upstream down", setup: func() { s.order.getErr = statusErr(codes.Unavailable, "store down") },
			method: "GET", path: "/v1/orders/x1", docPath: "/v1/orders/{id}", wantStatus: 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			if tt.header.Get("If-None-Match") != "" {
				tt.header.Set("If-None-Match", etag)
			}
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			resp, got := s.do(t, tt.method, tt.path, body, tt.header)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, resp.StatusCode, got, tt.wantStatus)
			}
			if e := resp.Header.Get("ETag"); e != "" {
				etag = e
			}
			docPath := tt.docPath
			if docPath == "" {
				docPath = tt.path
			}
			op, ok := doc.Paths[docPath][strings.ToLower(tt.method)]
			if !ok {
				t.Fatalf("%s %s is not in the document", tt.method, docPath)
			}
			if _, listed := op.Responses[strconv.Itoa(resp.StatusCode)]; !listed {
				t.Errorf("%s answered %d, which the document does not list (it lists %v)", op.OperationID, resp.StatusCode, slices.Sorted(maps.Keys(op.Responses)))
			}
			if tt.wantSchema == "" {
				return
			}
			var ok200 struct {
				Content map[string]struct {
					Schema struct {
						Ref string `json:"$ref"`
					} `json:"schema"`
				} `json:"content"`
			}
			if err := json.Unmarshal(op.Responses["200"], &ok200); err != nil {
				t.Fatal(err)
			}
			if ref := ok200.Content["application/json"].Schema.Ref; ref != "#/components/schemas/"+tt.wantSchema {
				t.Fatalf("%s: documented 200 body = %q, want %s", op.OperationID, ref, tt.wantSchema)
			}
			var fields map[string]any
			if err := json.Unmarshal(got, &fields); err != nil {
				t.Fatalf("%s body %s: %v", op.OperationID, got, err)
			}
			props := doc.Components.Schemas[tt.wantSchema].Properties
			for k := range fields {
				if _, documented := props[k]; !documented {
					t.Errorf("%s answered field %q, which %s does not document (the body is not what the document says)", op.OperationID, k, tt.wantSchema)
				}
			}
		})
	}
}

// Each event of the catalogue is a message of the protos, named by its
// Content-Type as pkg/natsx publishes it (cmd/pizzashop's events test reads
// that header off real messages).
func TestCatalogueMessagesAreTheEvents(t *testing.T) {
	doc := loadEventDoc(t)
	n := 0
	for id, m := range doc.Components.Messages {
		if id == "DeadLetter" {
			continue
		}
		n++
		name, ok := strings.CutPrefix(m.ContentType, "application/protobuf; proto=")
		if !ok {
			t.Errorf("message %s: contentType %q, want application/protobuf; proto=<message>", id, m.ContentType)
			continue
		}
		if _, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(name)); err != nil {
			t.Errorf("message %s: %s is not a message of the protos: %v", id, name, err)
		}
	}
	if n != 4 {
		t.Errorf("the catalogue has %d events, want 4 (menu, order, kitchen, delivery)", n)
	}
}

func TestServesDocumentsAndReferencePage(t *testing.T) {
	s := newStack(t, withAllUpstreams(t))
	resp, body := s.do(t, "GET", "/asyncapi.json", nil, nil)
	if resp.StatusCode != http.StatusOK || string(body) != string(openapi.Events) {
		t.Fatalf("GET /asyncapi.json = %d with %d bytes, want 200 with the catalogue's %d", resp.StatusCode, len(body), len(openapi.Events))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET /asyncapi.json Content-Type = %q, want application/json", ct)
	}
	resp, _ = s.do(t, "GET", "/asyncapi.json", nil, http.Header{"If-None-Match": {resp.Header.Get("ETag")}})
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("GET /asyncapi.json with its ETag = %d, want 304", resp.StatusCode)
	}
	resp, body = s.do(t, "GET", "/docs", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `src="/web/docs.js"`) {
		t.Fatalf("GET /docs = %d %.200s, want the reference page", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("GET /docs Content-Security-Policy = %q, want the pages' strict policy", csp)
	}
	for _, asset := range []string{"/web/docs.js", "/web/docs.css"} {
		if resp, _ := s.do(t, "GET", asset, nil, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", asset, resp.StatusCode)
		}
	}
}

// The reference page, in a real browser, shows every REST route and every
// event of the two documents, from the gateway alone (no other origin).
func TestReferencePageInBrowser(t *testing.T) {
	api, events := loadAPIDoc(t), loadEventDoc(t)
	s := newStack(t, withAllUpstreams(t))
	p := newBrowserPage(t)
	p.do(t, "open /docs", chromedp.Navigate(s.url+"/docs"),
		chromedp.WaitVisible(chromedp.CSS(`body[data-ready="true"] #schemas`)))

	list := func(js string) []string {
		got, err := chromedp.Run(p.ctx, chromedp.Evaluate[[]string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		slices.Sort(got)
		return slices.Compact(got)
	}
	same := func(what string, got, want []string) {
		t.Helper()
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("/docs shows %s %q\nthe documents have %q", what, got, want)
		}
	}
	same("REST routes", list(`Array.from(document.querySelectorAll("[data-route]"), (e) => e.dataset.route)`), api.routes())

	var messages, channels, consumers []string
	for _, m := range events.Components.Messages {
		messages = append(messages, m.Name)
	}
	for _, c := range events.Channels {
		channels = append(channels, c.Address)
	}
	for _, o := range events.Operations {
		if o.Consumer != nil {
			consumers = append(consumers, o.Consumer.Durable)
		}
	}
	if len(messages) < 5 || len(consumers) < 4 {
		t.Fatalf("the catalogue has %d messages and %d consumers, want every event (4 and dead letters) and every durable consumer", len(messages), len(consumers))
	}
	same("events", list(`Array.from(document.querySelectorAll("[data-event]"), (e) => e.dataset.event)`), messages)
	same("subjects", list(`Array.from(document.querySelectorAll("[data-channel]"), (e) => e.dataset.channel)`), channels)
	same("consumers", list(`Array.from(document.querySelectorAll("[data-consumer]"), (e) => e.dataset.consumer)`), consumers)

	// An event shows its content type and headers.
	ev := p.text(t, `[data-event="OrderStatusChanged"]`)
	for _, want := range []string{"application/protobuf; proto=pizzashop.order.v1.OrderStatusChanged", "Nats-Msg-Id", "traceparent", "Pizzashop-Event-Type", "Content-Type"} {
		if !strings.Contains(ev, want) {
			t.Errorf("event OrderStatusChanged on /docs does not show %q", want)
		}
	}
	// A create shows the statuses it answers, and public operations say so.
	create := p.text(t, `[data-route="POST /v1/orders"]`)
	for _, want := range []string{"Idempotency-Key", "422", "413", "503", "credential"} {
		if !strings.Contains(create, want) {
			t.Errorf("POST /v1/orders on /docs does not show %q", want)
		}
	}
	if menu := p.text(t, `[data-route="GET /v1/menu"] .badge`); menu != "public" {
		t.Errorf("GET /v1/menu badge = %q, want public", menu)
	}
	p.screenshotTop(t, "docs")

	// The filter narrows the page to what matches.
	p.do(t, "filter", chromedp.SendKeys(chromedp.CSS("#filter"), "menu:price"))
	visible := list(`Array.from(document.querySelectorAll(".op:not([hidden])"), (e) => e.dataset.route)`)
	if !slices.Equal(visible, []string{"POST /v1/menu:price"}) {
		t.Errorf("operations shown for filter \"menu:price\" = %q, want [POST /v1/menu:price]", visible)
	}
}
