package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/e2e/stack"
	"github.com/pizzashop/pizzashop/pkg/cardscan"
	"github.com/pizzashop/pizzashop/pkg/mongox/mongoxtest"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"go.mongodb.org/mongo-driver/v2/bson"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// The abuse suite attacks the local stack as the attacker did and
// checks that it holds: malformed keys, card numbers in every form and
// place, oversized requests, slow bodies, a flood of live streams and a
// stalled store. It logs the figures it measures.

// abuseBodyTimeout is the gateway's BODY_TIMEOUT in this suite.
const abuseBodyTimeout = 3 * time.Second

func TestAbuse(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole stack")
	}
	if stack.External() {
		t.Skip("scans the stack's own data files; needs the embedded servers")
	}
	s := stack.Start(t, stack.WithEnv("gateway", "BODY_TIMEOUT="+abuseBodyTimeout.String()))
	// One at a time, in this order: memory is measured with nothing else
	// going on, and the store stall restarts the order service.
	t.Run("NonASCIIKey", func(t *testing.T) { abuseNonASCIIKey(t, s.For(t)) })
	t.Run("AbandonAndRetry", func(t *testing.T) { abuseAbandonAndRetry(t, s.For(t)) })
	t.Run("CardNumbers", func(t *testing.T) { abuseCardNumbers(t, s.For(t)) })
	t.Run("Amplification", func(t *testing.T) { abuseAmplification(t, s.For(t)) })
	t.Run("SlowBodies", func(t *testing.T) { abuseSlowBodies(t, s.For(t)) })
	t.Run("Streams", func(t *testing.T) { abuseStreams(t, s.For(t)) })
	t.Run("StoreStall", func(t *testing.T) { abuseStoreStall(t, s.For(t)) })
}

// ---- abandon and retry: exactly one order per Idempotency-Key

// abuseAbandonAndRetry sends 300 orders, each with its own key, from a
// client that gives up on every one after a few milliseconds, while the
// order may still be queued in the store; then retries each with the same
// key and body. Exactly 300 orders must exist, and every retry answers with
// one of them.
func abuseAbandonAndRetry(t *testing.T, s *stack.Stack) {
	const n = 300
	token := s.Token("customer", uniq("retry"))
	body := pickupBody("margherita", "SIZE_SMALL")
	key := func(i int) string { return fmt.Sprintf("abandon-k%c%d", 'a'+i%26, i) }
	abandoned := 0
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Millisecond)
			defer cancel()
			resp, err := s.Client().Do(s.Request(ctx, http.MethodPost, "/v1/orders", token, body, "Idempotency-Key", key(i)))
			if err != nil {
				mu.Lock()
				abandoned++
				mu.Unlock()
				return
			}
			resp.Body.Close()
		})
	}
	wg.Wait()
	ids := map[string]bool{}
	for i := range n {
		code, raw, _ := s.Do(http.MethodPost, "/v1/orders", token, body, "Idempotency-Key", key(i))
		if code != http.StatusOK {
			t.Fatalf("retry %d = %d %s, want 200", i, code, raw)
		}
		var o orderv1.Order
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, &o); err != nil {
			t.Fatalf("retry %d: %v", i, err)
		}
		ids[o.GetId()] = true
	}
	stored := listAll(t, s, token, 100)
	t.Logf("abandon and retry: %d of %d first requests abandoned; %d distinct orders answered, %d stored", abandoned, n, len(ids), len(stored))
	if len(ids) != n || len(stored) != n {
		t.Errorf("%d abandoned-then-retried requests: %d orders answered, %d stored; want %d and %d", n, len(ids), len(stored), n, n)
	}
}

// ---- the non-ASCII Idempotency-Key

func abuseNonASCIIKey(t *testing.T, s *stack.Stack) {
	token := s.Token("customer", uniq("cafe"))
	for i := range 3 {
		code, raw, _ := s.Do(http.MethodPost, "/v1/orders", token, pickupBody("margherita", "SIZE_SMALL"), "Idempotency-Key", "café-1")
		if code != http.StatusBadRequest {
			t.Fatalf("POST #%d with Idempotency-Key café-1 = %d %s, want 400", i+1, code, raw)
		}
		if e := decodeError(t, raw); !strings.Contains(e.message, "Idempotency-Key") {
			t.Errorf("answer %q does not name the header", e.message)
		}
	}
	if orders := listAll(t, s, token, 50); len(orders) != 0 {
		t.Errorf("three refused POSTs made %d orders, want 0", len(orders))
	}
	// Over gRPC, a key that is not a well-formed identifier is refused
	// too (grpc-go will not send non-ASCII metadata, so a space and a card
	// number stand in).
	conn := grpcConn(t, s.GRPCAddr("order"))
	for _, key := range []string{"k 1", "4111-1111-1111-1111"} {
		ctx := metadata.AppendToOutgoingContext(testCtx(t), "authorization", "Bearer "+token, "idempotency-key", key)
		_, err := orderv1.NewOrderServiceClient(conn).CreateOrder(ctx, &orderv1.CreateOrderRequest{})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "Idempotency-Key") {
			t.Errorf("gRPC CreateOrder with key %q = %v, want InvalidArgument naming Idempotency-Key", key, err)
		}
	}
}

// ---- card numbers

// cardNumbers are the test numbers the suite tries to slip in.
var cardNumbers = []string{"4111111111111111", "5555555555554444", "378282246310005", "4249785182452929", "6011111111111117"}

// cardForms writes a card number in the ways the attacker did.
func cardForms(card string) []string {
	join := func(sep string) string {
		var groups []string
		for i := 0; i < len(card); i += 4 {
			groups = append(groups, card[i:min(i+4, len(card))])
		}
		return strings.Join(groups, sep)
	}
	shift := func(zero rune) string {
		return strings.Map(func(r rune) rune { return zero + (r - '0') }, card)
	}
	every := func(sep string) string {
		return strings.Join(strings.Split(card, ""), sep)
	}
	return []string{
		card, join(" "), join("-"), join("  "), join("."), join("/"), join("\t"), join("\u00a0"),
		join("\u2013"), join("_"), join("\n"), join(" - "), join("\u2009"), join("\u3000"),
		shift('\uff10'), shift('\u0660'), shift('\u0966'),
		every("\u200b"), every("\u200d"), every("\ufeff"),
		join(" ") + " 123", join(" ") + " 12 28", "1 " + join(" "), "card: " + card + ", cvv 123",
	}
}

// allCardForms is every form of every card number.
func allCardForms() []string {
	var all []string
	for _, c := range cardNumbers {
		all = append(all, cardForms(c)...)
	}
	return all
}

func abuseCardNumbers(t *testing.T, s *stack.Stack) {
	for _, c := range cardNumbers {
		if !cardscan.Luhn([]byte(c)) {
			t.Fatalf("test card %s fails Luhn", c)
		}
	}
	forms := allCardForms()
	for i, f := range forms {
		// The scan below must be able to see every form.
		if c := cardNumbers[i/len(cardForms(cardNumbers[0]))]; !strings.Contains(cardscan.Digits(f), c) {
			t.Fatalf("the scan would not see %s written as %q", c, f)
		}
	}
	customer := s.Token("customer", uniq("mallory"))
	kitchen := s.Token("kitchen", uniq("kim"))
	admin := s.Token("admin", uniq("ada"))
	// A real order and its ticket, for the cancel and reject reasons.
	victim := place(t, s, customer, pickupBody("margherita", "SIZE_SMALL"))
	waitTicket(t, s, victim.GetId(), kitchenv1.TicketStatus_TICKET_STATUS_QUEUED, 20*time.Second)

	type attempt struct {
		where   string
		method  string
		path    string
		token   string
		body    func(card string) any
		headers func(card string) []string
	}
	orderWith := func(set func(b map[string]any, card string)) func(string) any {
		return func(card string) any {
			b := deliveryBody("margherita", "SIZE_SMALL")
			set(b, card)
			return b
		}
	}
	address := func(field string) func(string) any {
		return orderWith(func(b map[string]any, card string) { b["deliveryAddress"].(map[string]any)[field] = card })
	}
	attempts := []attempt{
		{where: "order note", method: "POST", path: "/v1/orders", token: customer, body: orderWith(func(b map[string]any, c string) { b["note"] = c })},
		{where: "address line1", method: "POST", path: "/v1/orders", token: customer, body: address("line1")},
		{where: "address line2", method: "POST", path: "/v1/orders", token: customer, body: address("line2")},
		{where: "address city", method: "POST", path: "/v1/orders", token: customer, body: address("city")},
		{where: "address postal code", method: "POST", path: "/v1/orders", token: customer, body: address("postalCode")},
		{where: "delivery instructions", method: "POST", path: "/v1/orders", token: customer, body: address("instructions")},
		{where: "pizza id", method: "POST", path: "/v1/orders", token: customer, body: orderWith(func(b map[string]any, c string) { b["item"].(map[string]any)["pizzaId"] = c })},
		{where: "topping id", method: "POST", path: "/v1/orders", token: customer, body: orderWith(func(b map[string]any, c string) { b["item"].(map[string]any)["toppingIds"] = []string{c} })},
		{where: "Idempotency-Key", method: "POST", path: "/v1/orders", token: customer, body: orderWith(func(map[string]any, string) {}),
			headers: func(c string) []string { return []string{"Idempotency-Key", c} }},
		{where: "X-Request-Id", method: "GET", path: "/v1/orders", token: customer,
			headers: func(c string) []string { return []string{"X-Request-Id", c} }},
		{where: "cancel reason", method: "POST", path: "/v1/orders/" + victim.GetId() + ":cancel", token: customer,
			body: func(c string) any { return map[string]any{"reason": c} }},
		{where: "reject reason", method: "POST", path: "/v1/kitchen/tickets/" + victim.GetId() + ":reject", token: kitchen,
			body: func(c string) any { return map[string]any{"reason": c} }},
		{where: "menu pizza name", method: "POST", path: "/v1/menu/pizzas", token: admin, body: func(c string) any {
			return map[string]any{"name": c, "description": "x", "available": true,
				"prices": []any{map[string]any{"size": "SIZE_SMALL", "amountMinor": 900}}}
		}},
		{where: "menu pizza description", method: "POST", path: "/v1/menu/pizzas", token: admin, body: func(c string) any {
			return map[string]any{"name": "Carta", "description": c, "available": true,
				"prices": []any{map[string]any{"size": "SIZE_SMALL", "amountMinor": 900}}}
		}},
		{where: "price request", method: "POST", path: "/v1/menu:price", body: func(c string) any {
			return map[string]any{"pizzaId": "margherita", "size": "SIZE_SMALL", "toppingIds": []string{c}}
		}},
		{where: "customer name", method: "POST", path: "/v1/customers", body: func(c string) any {
			return map[string]any{"name": c, "email": "m@example.com", "phone": "+1 555 0100", "password": "correct horse battery"}
		}},
		{where: "order path", method: "GET", path: "/v1/orders/{card}", token: customer},
		{where: "ticket path", method: "POST", path: "/v1/kitchen/tickets/{card}:start", token: kitchen, body: func(string) any { return map[string]any{} }},
		{where: "topping path", method: "PATCH", path: "/v1/menu/toppings/{card}", token: admin, body: func(string) any { return map[string]any{"available": false} }},
	}
	// Every form goes to at least three places, every place gets many forms.
	tried, accepted := 0, 0
	for i, form := range forms {
		for k := range 3 {
			a := attempts[(i*3+k)%len(attempts)]
			if a.headers != nil && strings.ContainsAny(form, "\r\n") {
				// HTTP cannot carry a line break in a header; the gateway
				// answers such requests 400 before any handler (edge tests).
				a = attempts[0]
			}
			path := strings.ReplaceAll(a.path, "{card}", url.PathEscape(form))
			var body any
			if a.body != nil {
				body = a.body(form)
			}
			var headers []string
			if a.headers != nil {
				headers = a.headers(form)
			}
			code, raw, _ := s.Do(a.method, path, a.token, body, headers...)
			tried++
			if code < 400 || code >= 500 {
				accepted++
				t.Errorf("%s with %q: %s %s = %d %s, want a 4xx refusal", a.where, form, a.method, a.path, code, raw)
			}
		}
	}
	t.Logf("card numbers: %d forms of %d numbers, %d attempts over %d places, %d accepted", len(forms), len(cardNumbers), tried, len(attempts), accepted)
	// The refusals leave nothing behind anywhere.
	time.Sleep(time.Second) // let relays publish and logs flush
	hits := scanForCards(t, s)
	if len(hits) > 0 {
		t.Errorf("card numbers found in %d places: %v", len(hits), hits)
	}
	t.Logf("card numbers found in the store, the streams, the data files and the logs: %d", len(hits))
}

// scanForCards looks for every test card number, in any form, in every
// document of the store, every message of every stream, and every file of
// the stack (data and logs), and returns where it found them.
func scanForCards(t *testing.T, s *stack.Stack) []string {
	t.Helper()
	var hits []string
	var docs, msgs, files, size int
	check := func(where, text string) {
		size += len(text)
		digits := cardscan.Digits(text)
		for _, c := range cardNumbers {
			if strings.Contains(digits, c) {
				hits = append(hits, where+": "+c)
			}
		}
	}
	ctx := testCtx(t)
	for _, svc := range []string{"menu", "order", "kitchen", "delivery"} {
		db := s.Mongo(svc)
		names, err := db.ListCollectionNames(ctx, bson.D{})
		if err != nil {
			t.Fatalf("list collections of %s: %v", svc, err)
		}
		for _, name := range names {
			cur, err := db.Collection(name).Find(ctx, bson.D{})
			if err != nil {
				t.Fatalf("read %s.%s: %v", svc, name, err)
			}
			for cur.Next(ctx) {
				docs++
				check("store "+svc+"."+name, cur.Current.String())
			}
			_ = cur.Close(ctx)
		}
	}
	names := s.JS().StreamNames(ctx)
	for name := range names.Name() {
		st, err := s.JS().Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		info := st.CachedInfo()
		for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				continue // deleted
			}
			var b strings.Builder
			b.Write(m.Data)
			for k, vs := range m.Header {
				b.WriteString(k + strings.Join(vs, " "))
			}
			msgs++
			check("stream "+name+" #"+strconv.FormatUint(seq, 10), b.String())
		}
	}
	if err := names.Err(); err != nil {
		t.Fatalf("list streams: %v", err)
	}
	root := filepath.Dir(s.LogDir())
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil // removed meanwhile
		}
		rel, _ := filepath.Rel(root, path)
		files++
		for _, text := range textOf(b) {
			check("file "+rel, text)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	t.Logf("scanned %d documents, %d stream messages, %d files: %d KB", docs, msgs, files, size>>10)
	if docs == 0 || msgs == 0 || files == 0 {
		t.Errorf("the scan saw %d documents, %d messages, %d files; want some of each", docs, msgs, files)
	}
	return hits
}

// textOf returns the text a file holds: the whole file when it is text, and
// its runs of text when it is binary (a SQLite page, a stream block). The
// digits of a binary file taken as one run would join unrelated bytes that
// happen to be digits (0x31 is a common length or type byte) into a number
// that was never written; a card number written as text lies within a run.
// What that leaves out: the store keeps documents as JSON, which escapes
// control bytes, and a stream keeps each message body whole, so a stored
// string is one run; a string split over two SQLite overflow pages, or one
// whose own raw control bytes reach a file (an index keeps a field's
// decoded text), is not. The store's documents and the streams' messages
// are scanned whole through their APIs as well.
func textOf(b []byte) []string {
	if !bytes.Contains(b, []byte{0}) {
		return []string{string(b)}
	}
	var runs []string
	for _, run := range bytes.FieldsFunc(b, func(r rune) bool {
		return r < 0x20 && r != '\t' && r != '\n' && r != '\r'
	}) {
		runs = append(runs, string(run))
	}
	return runs
}

// ---- memory

// rss reads a process's resident memory from its /metrics.
func rss(t *testing.T, metricsURL string) int64 {
	t.Helper()
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatalf("GET %s: %v", metricsURL, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_resident_memory_bytes "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: process_resident_memory_bytes %q", metricsURL, v)
			}
			return int64(f)
		}
	}
	t.Fatalf("%s has no process_resident_memory_bytes", metricsURL)
	return 0
}

// memory reads the resident memory of every process of the stack.
func memory(t *testing.T, s *stack.Stack) map[string]int64 {
	m := map[string]int64{"gateway": rss(t, s.URL("/metrics"))}
	for _, svc := range []string{"menu", "order", "kitchen", "delivery"} {
		m[svc] = rss(t, "http://"+s.MetricsAddr(svc)+"/metrics")
	}
	return m
}

// checkGrowth fails when a process grew more than limit since before.
func checkGrowth(t *testing.T, what string, before, after map[string]int64, limit int64) {
	t.Helper()
	var parts []string
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range before {
			if !yield(k) {
				return
			}
		}
	}) {
		grew := after[name] - before[name]
		parts = append(parts, fmt.Sprintf("%s %d->%d MB", name, before[name]>>20, after[name]>>20))
		if grew > limit {
			t.Errorf("%s: %s grew %d MB, want at most %d MB", what, name, grew>>20, limit>>20)
		}
	}
	t.Logf("%s: %s", what, strings.Join(parts, ", "))
}

func abuseAmplification(t *testing.T, s *stack.Stack) {
	const (
		oneLimit  = 20 << 20
		manyLimit = 100 << 20
	)
	toppings := make([]string, 340_000) // ~1 MB on the wire, as in the issue
	for i := range toppings {
		toppings[i] = "x"
	}
	customer := s.Token("customer", uniq("amp"))
	menu := menuv1.NewMenuServiceClient(grpcConn(t, s.GRPCAddr("menu")))
	order := orderv1.NewOrderServiceClient(grpcConn(t, s.GRPCAddr("order")))
	bigPrice := &menuv1.PriceOrderRequest{PizzaId: "margherita", ToppingIds: toppings}
	bigOrder := &orderv1.CreateOrderRequest{Item: &orderv1.OrderItem{PizzaId: "margherita", ToppingIds: toppings}}
	asCustomer := func() context.Context {
		return metadata.AppendToOutgoingContext(testCtx(t), "authorization", "Bearer "+customer)
	}
	grpcCalls := func(n int) {
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				if _, err := menu.PriceOrder(testCtx(t), bigPrice); status.Code(err) != codes.ResourceExhausted {
					t.Errorf("1 MB PriceOrder = %v, want ResourceExhausted", err)
				}
				if _, err := order.CreateOrder(asCustomer(), bigOrder); status.Code(err) != codes.ResourceExhausted {
					t.Errorf("1 MB CreateOrder = %v, want ResourceExhausted", err)
				}
			})
		}
		wg.Wait()
	}
	before := memory(t, s)
	grpcCalls(1)
	checkGrowth(t, "one 1 MB gRPC PriceOrder and CreateOrder", before, memory(t, s), oneLimit)
	grpcCalls(50)
	checkGrowth(t, "50 concurrent 1 MB gRPC PriceOrder and CreateOrder", before, memory(t, s), manyLimit)

	// Through the gateway: 64 KB bodies of topping ids.
	ids := strings.Repeat(`"x",`, 64<<10/4)
	body64 := `{"pizzaId":"margherita","size":"SIZE_SMALL","toppingIds":[` + ids[:len(ids)-1] + `]}`
	order64 := `{"item":{"pizzaId":"margherita","size":"SIZE_SMALL","toppingIds":[` + ids[:len(ids)-1] + `]},"fulfillment":"FULFILLMENT_PICKUP","paymentMethod":"PAYMENT_METHOD_CASH"}`
	// The largest anonymous body the gateway reads, all bad toppings.
	small := strings.Repeat(`"nope",`, 4000/7)
	body4 := `{"pizzaId":"margherita","size":"SIZE_SMALL","toppingIds":[` + small[:len(small)-1] + `]}`
	gatewayCalls := func(n int) {
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				if code, raw, _ := s.Do(http.MethodPost, "/v1/menu:price", "", body64); code != http.StatusRequestEntityTooLarge {
					t.Errorf("64 KB anonymous menu:price = %d %.200s, want 413", code, raw)
				}
				if code, raw, _ := s.Do(http.MethodPost, "/v1/orders", customer, order64); code != http.StatusRequestEntityTooLarge {
					t.Errorf("64 KB order = %d %.200s, want 413", code, raw)
				}
				code, raw, _ := s.Do(http.MethodPost, "/v1/menu:price", "", body4)
				if code != http.StatusBadRequest {
					t.Errorf("4 KB menu:price of bad toppings = %d %.200s, want 400", code, raw)
				}
				if len(raw) > len(body4) {
					t.Errorf("a %d byte menu:price drew a %d byte error: amplification", len(body4), len(raw))
				}
			})
		}
		wg.Wait()
	}
	before = memory(t, s)
	gatewayCalls(1)
	checkGrowth(t, "one 64 KB request through the gateway", before, memory(t, s), oneLimit)
	gatewayCalls(50)
	checkGrowth(t, "50 concurrent 64 KB requests through the gateway", before, memory(t, s), manyLimit)
	_, raw, _ := s.Do(http.MethodPost, "/v1/menu:price", "", body4)
	t.Logf("amplification: a %d byte menu:price of bad toppings draws a %d byte error", len(body4), len(raw))
}

// ---- slow bodies

func abuseSlowBodies(t *testing.T, s *stack.Stack) {
	const conns = 300
	token := s.Token("customer", uniq("slow"))
	addr := strings.TrimPrefix(s.URL(""), "http://")
	closedAfter := make([]time.Duration, conns)
	answers := make([]int, conns)
	begin := time.Now()
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Errorf("dial %s: %v", addr, err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(abuseBodyTimeout + 30*time.Second))
			authz := ""
			if i%15 != 0 { // 20 of them with no credential
				authz = "Authorization: Bearer " + token + "\r\n"
			}
			start := time.Now()
			fmt.Fprintf(c, "POST /v1/orders HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\n%sContent-Length: 1000\r\n\r\n{", authz)
			stop := make(chan struct{})
			defer close(stop)
			go func() { // one byte a second
				for {
					select {
					case <-stop:
						return
					case <-time.After(time.Second):
						if _, err := c.Write([]byte(" ")); err != nil {
							return
						}
					}
				}
			}()
			br := bufio.NewReader(c)
			if resp, err := http.ReadResponse(br, nil); err == nil {
				answers[i] = resp.StatusCode
				_, _ = io.Copy(io.Discard, resp.Body)
			}
			_, _ = io.Copy(io.Discard, br) // until the server closes
			closedAfter[i] = time.Since(start)
		})
	}
	// Others are served meanwhile.
	time.Sleep(abuseBodyTimeout / 2)
	if code, raw, _ := s.Do(http.MethodGet, "/v1/menu", "", nil); code != http.StatusOK {
		t.Errorf("GET /v1/menu during the slow bodies = %d %s", code, raw)
	}
	wg.Wait()
	slices.Sort(closedAfter)
	worst := closedAfter[len(closedAfter)-1]
	timeouts := 0
	for _, c := range answers {
		if c == http.StatusRequestTimeout {
			timeouts++
		}
	}
	t.Logf("slow bodies: %d connections sending a byte a second, %d answered 408, all closed within %v (body timeout %v; whole run %v)",
		conns, timeouts, worst.Round(10*time.Millisecond), abuseBodyTimeout, time.Since(begin).Round(10*time.Millisecond))
	if timeouts != conns {
		t.Errorf("%d of %d slow bodies answered 408", timeouts, conns)
	}
	if worst > abuseBodyTimeout+2*time.Second {
		t.Errorf("a slow body's connection stayed open %v, want it closed within the %v body timeout", worst, abuseBodyTimeout)
	}
}

// ---- live streams

func abuseStreams(t *testing.T, s *stack.Stack) {
	const streams = 500
	kim := s.Token("kitchen", uniq("kim"))
	lea := s.Token("kitchen", uniq("lea"))
	customer := s.Token("customer", uniq("other"))
	// Another client's calls: the kitchen's list and a customer's orders,
	// both read from the store.
	measure := func() time.Duration {
		var took []time.Duration
		for i := range 100 {
			path, token := "/v1/kitchen/tickets", lea
			if i%2 == 1 {
				path, token = "/v1/orders", customer
			}
			start := time.Now()
			if code, raw, _ := s.Do(http.MethodGet, path, token, nil); code != http.StatusOK {
				t.Errorf("GET %s = %d %s", path, code, raw)
			}
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		return took[98]
	}
	measure() // warm up
	before := measure()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	statuses := make(chan int, streams)
	var wg sync.WaitGroup
	for range streams {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL("/v1/kitchen/tickets:watch"), nil)
			req.Header.Set("Authorization", "Bearer "+kim)
			resp, err := client.Do(req)
			if err != nil {
				statuses <- 0
				return
			}
			statuses <- resp.StatusCode
			if resp.StatusCode == http.StatusOK {
				<-ctx.Done() // hold it open
			}
			resp.Body.Close()
		})
	}
	counts := map[int]int{}
	for range streams {
		counts[<-statuses]++
	}
	burst := measure() // while the refused connections close
	// With the accepted streams held open: the better of two rounds, so a
	// pause of the shared machine in one round is not taken for the
	// streams' doing.
	after := min(measure(), measure())
	if code, raw, _ := s.Do(http.MethodGet, "/readyz", "", nil); code != http.StatusOK {
		t.Errorf("GET /readyz with %d streams open = %d %s", streams, code, raw)
	}
	cancel()
	wg.Wait()
	client.CloseIdleConnections()
	t.Logf("streams: %d from one kitchen credential: %v (status: count); another client's p99 %v before, %v right after the burst, %v with the streams held",
		streams, counts, before.Round(time.Millisecond), burst.Round(time.Millisecond), after.Round(time.Millisecond))
	if counts[http.StatusOK] == 0 || counts[http.StatusOK] > 16 {
		t.Errorf("%d streams of one caller opened, want 1 to 16", counts[http.StatusOK])
	}
	if counts[http.StatusOK]+counts[http.StatusTooManyRequests] != streams {
		t.Errorf("stream answers %v, want only 200 and 429", counts)
	}
	// Latency is measured here, not held to a tight bound: on a shared
	// 2-core machine running other test packages beside this one, p99
	// doubles without the streams' help (CI saw 50 -> 102 ms). The bound
	// catches what the streams could really do to other callers: a
	// process spinning or blocked for them.
	if limit := max(5*before, before+500*time.Millisecond); after > limit {
		t.Errorf("another client's p99 went from %v to %v with the streams open, want at most %v", before, after, limit)
	}
}

// ---- a stalled store

func abuseStoreStall(t *testing.T, s *stack.Stack) {
	stall, uri := mongoxtest.StallIn(t, s.MongoURI())
	// The order service reaches the store through the proxy.
	s.Stop("order")
	s.StartService("order", "MONGO_URI="+uri)
	defer func() {
		stall.Resume()
		s.Stop("order")
		s.StartService("order")
	}()
	s.WaitReady()
	customer := s.Token("customer", uniq("stall"))
	place(t, s, customer, pickupBody("margherita", "SIZE_SMALL"))

	stall.Stall()
	begin := time.Now()
	code, raw, _ := s.Do(http.MethodGet, "/v1/orders", customer, nil)
	to503 := time.Since(begin)
	if code != http.StatusServiceUnavailable {
		t.Errorf("GET /v1/orders with the store stalled = %d %s, want 503", code, raw)
	}
	if to503 > 3*time.Second+1500*time.Millisecond {
		t.Errorf("GET /v1/orders with the store stalled answered after %v, want within the 3s store call timeout", to503)
	}
	var toNotReady time.Duration
	eventually(t, 20*time.Second, "/readyz to report the stalled store", func() (bool, string) {
		code, raw, _ := s.Do(http.MethodGet, "/readyz", "", nil)
		toNotReady = time.Since(begin)
		return code == http.StatusServiceUnavailable, fmt.Sprintf("%d %s", code, raw)
	})
	stall.Resume()
	eventually(t, 30*time.Second, "/readyz after the store answers again", func() (bool, string) {
		code, raw, _ := s.Do(http.MethodGet, "/readyz", "", nil)
		return code == http.StatusOK, fmt.Sprintf("%d %s", code, raw)
	})
	if code, raw, _ := s.Do(http.MethodGet, "/v1/orders", customer, nil); code != http.StatusOK {
		t.Errorf("GET /v1/orders after the stall = %d %s", code, raw)
	}
	t.Logf("store stall: GET /v1/orders answered %d after %v; /readyz said 503 after %v", code, to503.Round(time.Millisecond), toNotReady.Round(time.Millisecond))
}

// ---- helpers

func grpcConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestTextOfBinaryFiles(t *testing.T) {
	found := func(b []byte) bool {
		for _, text := range textOf(b) {
			if strings.Contains(cardscan.Digits(text), cardNumbers[0]) {
				return true
			}
		}
		return false
	}
	card := cardNumbers[0]
	// Written as text inside binary data, in any form: found.
	for _, form := range cardForms(card) {
		if b := []byte("\x00\x02\x8c{\"note\":\"" + form + "\"}\x00\x07"); !found(b) {
			t.Errorf("%q inside binary data was not found", form)
		}
	}
	// Its digits scattered among binary bytes: not a card number.
	var scattered []byte
	for _, d := range []byte(card) {
		scattered = append(scattered, 0, 0x05, d, 0x81)
	}
	if found(scattered) {
		t.Errorf("digits scattered among binary bytes read as a card number")
	}
	// A text file is read whole, as before.
	if !found([]byte("log line " + card[:8] + "\n" + card[8:])) {
		t.Errorf("a card number split by a line break in a text file was not found")
	}
}
