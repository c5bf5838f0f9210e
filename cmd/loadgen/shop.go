package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/pizzashop/pizzashop/pkg/auth"
)

// shop is the gateway of the shop under load, with credentials for every
// role loadgen plays and the menu it orders from.
type shop struct {
	base     string
	http     *http.Client
	kitchen  string // credentials
	courier  string
	tokens   []string // one per customer
	pizzas   []string
	toppings []string
}

func newShop(ctx context.Context, base, secret string, customers, conns int) (*shop, error) {
	if secret == "" {
		secret = auth.DevSecret
	}
	signer, err := auth.NewSigner(secret)
	if err != nil {
		return nil, fmt.Errorf("AUTH_SECRET: %w", err)
	}
	sign := func(role auth.Role, sub string) (string, error) {
		t, _, err := signer.Sign(auth.Claims{Subject: sub, Role: role, Name: sub}, 12*time.Hour)
		return t, err
	}
	s := &shop{base: base, http: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        conns + 64,
			MaxIdleConnsPerHost: conns + 64,
			IdleConnTimeout:     time.Minute,
		},
	}}
	if s.kitchen, err = sign(auth.RoleKitchen, "loadgen-kitchen"); err != nil {
		return nil, err
	}
	if s.courier, err = sign(auth.RoleCourier, "loadgen-courier"); err != nil {
		return nil, err
	}
	for i := range customers {
		t, err := sign(auth.RoleCustomer, "loadgen-customer-"+strconv.Itoa(i))
		if err != nil {
			return nil, err
		}
		s.tokens = append(s.tokens, t)
	}
	if err := s.readMenu(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *shop) readMenu(ctx context.Context) error {
	code, body, err := s.do(ctx, http.MethodGet, "/v1/menu", "", nil, nil)
	if err != nil {
		return fmt.Errorf("read the menu at %s: %w", s.base, err)
	}
	if code != http.StatusOK {
		return fmt.Errorf("read the menu at %s: status %d: %.200s", s.base, code, body)
	}
	var m struct {
		Pizzas []struct {
			ID        string `json:"id"`
			Available bool   `json:"available"`
		} `json:"pizzas"`
		Toppings []struct {
			ID        string `json:"id"`
			Available bool   `json:"available"`
		} `json:"toppings"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return fmt.Errorf("decode the menu: %w", err)
	}
	for _, p := range m.Pizzas {
		if p.Available {
			s.pizzas = append(s.pizzas, p.ID)
		}
	}
	for _, t := range m.Toppings {
		if t.Available {
			s.toppings = append(s.toppings, t.ID)
		}
	}
	if len(s.pizzas) == 0 {
		return errors.New("no pizza is available on the menu")
	}
	return nil
}

// statusTransport is the status recorded for a call that got no answer.
const statusTransport = 599

func (s *shop) do(ctx context.Context, method, path, token string, body []byte, header map[string]string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return statusTransport, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return statusTransport, nil, err
	}
	return resp.StatusCode, b, nil
}

// orderBody is order n: pizzas, sizes and toppings rotate through the
// menu; delivery orders carry an address.
func (s *shop) orderBody(n int, delivery bool) []byte {
	req := map[string]any{
		"item": map[string]any{
			"pizzaId":    s.pizzas[n%len(s.pizzas)],
			"size":       []string{"SIZE_SMALL", "SIZE_MEDIUM", "SIZE_LARGE"}[n%3],
			"toppingIds": pick(s.toppings, n),
		},
		"fulfillment":   "FULFILLMENT_PICKUP",
		"paymentMethod": "PAYMENT_METHOD_CASH",
	}
	if delivery {
		req["fulfillment"] = "FULFILLMENT_DELIVERY"
		req["deliveryAddress"] = map[string]any{"line1": strconv.Itoa(1+n%400) + " Main St", "city": "Springfield", "postalCode": "12345"}
	}
	b, _ := json.Marshal(req)
	return b
}

// pick chooses up to three distinct toppings for order n.
func pick(toppings []string, n int) []string {
	out := []string{}
	for i := 0; i < n%4 && len(toppings) > 0; i++ {
		out = append(out, toppings[(n+i*7)%len(toppings)])
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// placed is the answer to placing one order.
type placed struct {
	id     string
	status int
	err    error
}

// place places order n with an Idempotency-Key unique to the run.
func (s *shop) place(ctx context.Context, key string, n int, delivery bool) placed {
	code, body, err := s.do(ctx, http.MethodPost, "/v1/orders", s.tokens[n%len(s.tokens)], s.orderBody(n, delivery),
		map[string]string{"Idempotency-Key": key})
	if err != nil {
		return placed{status: code, err: err}
	}
	if code != http.StatusOK {
		return placed{status: code, err: fmt.Errorf("status %d: %.200s", code, body)}
	}
	var out struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.ID == "" {
		return placed{status: code, err: fmt.Errorf("answer without an order id: %.200s", body)}
	}
	return placed{id: out.ID, status: code}
}
