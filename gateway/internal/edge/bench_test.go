package edge_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/pizzashop/pizzashop/gateway/internal/edge"
	"github.com/pizzashop/pizzashop/pkg/logging"
)

// The benchmarks measure GET /v1/menu and POST /v1/orders end to end in one
// process: an HTTP client over loopback, the whole gateway handler (tracing
// with the no-op provider, a JSON access log to io.Discard), a gRPC call
// over loopback and the menu double answering a 6-pizza, 10-topping menu
// or the order double echoing the order. Allocations count all three
// parties. They are the baseline for later figures.

func benchStack(b *testing.B) (*stack, *http.Client) {
	s := newStack(b, func(_ *stack, o *edge.Options) {
		o.Logger = logging.New(io.Discard, "gateway", "info")
	})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.Cleanup(client.CloseIdleConnections)
	return s, client
}

func getMenu(b *testing.B, client *http.Client, req *http.Request, want int) {
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != want {
		b.Fatalf("GET /v1/menu status = %d, want %d", resp.StatusCode, want)
	}
}

func BenchmarkGetMenu(b *testing.B) {
	s, client := benchStack(b)
	req, _ := http.NewRequest("GET", s.url+"/v1/menu", nil)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		getMenu(b, client, req, http.StatusOK)
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "req/s")
}

func BenchmarkGetMenuNotModified(b *testing.B) {
	s, client := benchStack(b)
	req, _ := http.NewRequest("GET", s.url+"/v1/menu", nil)
	req.Header.Set("If-None-Match", `"menu-v7"`)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		getMenu(b, client, req, http.StatusNotModified)
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "req/s")
}

func BenchmarkGetMenuParallel(b *testing.B) {
	s, client := benchStack(b)
	b.ReportAllocs()
	b.SetParallelism(8) // 8 clients per core
	b.RunParallel(func(pb *testing.PB) {
		req, _ := http.NewRequest("GET", s.url+"/v1/menu", nil)
		for pb.Next() {
			getMenu(b, client, req, http.StatusOK)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// orderBody is a delivery order as the storefront sends it.
const orderBody = `{"item":{"pizzaId":"margherita","size":"SIZE_LARGE","toppingIds":["basil","olives"]},` +
	`"fulfillment":"FULFILLMENT_DELIVERY","deliveryAddress":{"line1":"12 Main Street","city":"Springfield","postalCode":"12345"},` +
	`"paymentMethod":"PAYMENT_METHOD_CASH","note":"ring twice"}`

func BenchmarkPlaceOrder(b *testing.B) {
	s, client := benchStack(b)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		req, _ := http.NewRequest("POST", s.url+"/v1/orders", strings.NewReader(orderBody))
		req.Header.Set("Authorization", "Bearer customer-token")
		req.Header.Set("Idempotency-Key", "bench-"+strconv.Itoa(n))
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("POST /v1/orders status = %d, want 200", resp.StatusCode)
		}
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "req/s")
}
