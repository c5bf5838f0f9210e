package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/pizzashop/pizzashop/e2e/stack"
	"github.com/pizzashop/pizzashop/pkg/auth"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
)

// The storefront tests drive the real pages in headless Chromium against the
// whole shop (every binary, NATS, the store): customers on /, kitchen staff
// on /kitchen, couriers on /delivery and managers on /manage, each in a
// browser context of its own, as separate browsers would be. Every page
// state they reach is checked with axe-core and saved as screenshots at 375
// and 1280 px. They need the Debian package chromium and axe-core from npm
// (both installed by .ci/run: `npm ci --prefix e2e/axe`), and skip without
// them.

const chromiumPath = "/usr/bin/chromium"

var axePath = filepath.Join("axe", "node_modules", "axe-core", "axe.min.js")

// browser is one headless Chromium for a test.
type browser struct {
	root context.Context
	axe  string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test: skipped with -short")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("browser test: no Chromium at %s; install it with apt-get install -y chromium", chromiumPath)
	}
	axe, err := os.ReadFile(axePath)
	if err != nil {
		t.Skipf("browser test: no axe-core at %s; install it with npm ci --prefix e2e/axe", axePath)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	root, cancelRoot := chromedp.NewContext(actx)
	t.Cleanup(cancelRoot)
	if err := chromedp.Do(root); err != nil { // starts the browser
		t.Fatalf("start Chromium: %v", err)
	}
	return &browser{root: root, axe: string(axe)}
}

// page is one tab in a browser context of its own: its own storage, as if
// it were another browser.
type page struct {
	ctx  context.Context
	name string
	b    *browser

	mu       sync.Mutex
	console  []string
	problems []string // exceptions, console errors, CSP violations
	expected []string // console errors the test causes on purpose
}

// expect lets a console error containing text pass: one the test causes.
func (p *page) expect(text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expected = append(p.expected, text)
}

func (b *browser) page(t *testing.T, name string) *page {
	t.Helper()
	tab, cancelTab := chromedp.NewContext(b.root, chromedp.WithNewBrowserContext())
	t.Cleanup(cancelTab)
	ctx, cancel := context.WithTimeout(tab, 4*time.Minute)
	t.Cleanup(cancel)
	p := &page{ctx: ctx, name: name, b: b}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			p.mu.Lock()
			p.console = append(p.console, m.String())
			if m.IsException() || m.Type == "error" || m.Source == "security" || strings.Contains(m.Text, "Content Security Policy") {
				p.problems = append(p.problems, m.String())
			}
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, line := range p.console {
			t.Logf("%s console: %s", name, line)
		}
		for _, line := range p.problems {
			if expectedConsoleError(line) || slices.ContainsFunc(p.expected, func(e string) bool { return strings.Contains(line, e) }) {
				continue
			}
			t.Errorf("%s page error: %s", name, line)
		}
	})
	p.do(t, "set the viewport", chromedp.EmulateViewport(1280, 900))
	return p
}

// expectedConsoleError reports whether a console line is Chromium's own
// note of an HTTP error the page asked for and handled: a refused sign-in
// (401, 429), checkout (400) or cancel (409) shows in the page, not as a
// bug.
func expectedConsoleError(line string) bool {
	return strings.Contains(line, "Failed to load resource: the server responded with a status of 4")
}

// stepTimeout bounds one step of a page, so that a missing element fails
// the test quickly instead of at the test's deadline.
const stepTimeout = 30 * time.Second

func (p *page) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %s: %v", p.name, what, err)
	}
}

// hold has the page's requests whose URL matches pattern held at stage
// (before they are sent, or once their answer is in) until release, and
// returns them as they are held.
func (p *page) hold(t *testing.T, pattern string, stage fetch.RequestStage) <-chan fetch.RequestID {
	t.Helper()
	held := make(chan fetch.RequestID, 4)
	events := chromedp.Events(p.ctx, fetch.RequestPaused)
	go func() {
		for ev, err := range events {
			if err != nil {
				return
			}
			held <- ev.RequestID
		}
	}()
	p.do(t, "hold "+pattern, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{
			{URLPattern: pattern, RequestStage: stage}}})
		return err
	}))
	return held
}

// release lets a request hold kept go on, and holds no more.
func (p *page) release(t *testing.T, what string, id fetch.RequestID) {
	t.Helper()
	p.do(t, what, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		if _, err := chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: id}); err != nil {
			return err
		}
		_, err := chromedp.Call(ctx, fetch.Disable, struct{}{})
		return err
	}))
}

func (p *page) text(t *testing.T, sel string) string {
	t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("%s: text of %s: %v", p.name, sel, err)
	}
	return s
}

func eval[T any](t *testing.T, p *page, expr string) T {
	t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: evaluate %s: %v", p.name, expr, err)
	}
	return v
}

// until waits for the JavaScript condition expr to hold.
func (p *page) until(t *testing.T, what, expr string, timeout time.Duration) {
	t.Helper()
	if _, err := chromedp.Run(p.ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(timeout))); err != nil {
		body, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.querySelector('main') ? document.querySelector('main').innerText.slice(0, 2000) : ''`))
		t.Fatalf("%s: waiting for %s: %v\npage text:\n%s", p.name, what, err, body)
	}
}

// shots saves the page at 375 and 1280 px wide as
// <temp>/pizzashop-screenshots/<name>-375.png and -1280.png, and checks
// each width with axe-core: no serious or critical violation.
func (p *page) shots(t *testing.T, name string) {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "pizzashop-screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, w := range []int64{375, 1280} {
		p.do(t, "resize", chromedp.EmulateViewport(w, 900), chromedp.Sleep(150*time.Millisecond))
		p.axe(t, fmt.Sprintf("%s at %d px", name, w))
		if over := eval[int](t, p, `document.documentElement.scrollWidth - window.innerWidth`); over > 0 {
			t.Errorf("%s at %d px: the page is %d px wider than the window", name, w, over)
		}
		png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		path := filepath.Join(dir, fmt.Sprintf("%s-%d.png", name, w))
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s", path)
	}
	p.do(t, "resize back", chromedp.EmulateViewport(1280, 900))
}

type axeViolation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target []any  `json:"target"`
		HTML   string `json:"html"`
	} `json:"nodes"`
}

// axe runs axe-core (WCAG 2.x A and AA rules) in the page and fails on a
// serious or critical violation. Scripts evaluated over DevTools are not
// subject to the page's Content-Security-Policy, so the page keeps its
// strict one.
func (p *page) axe(t *testing.T, what string) {
	t.Helper()
	for _, v := range p.axeViolations(t) {
		line := fmt.Sprintf("%s: axe %s (%s): %s", what, v.ID, v.Impact, v.Help)
		for _, n := range v.Nodes {
			line += fmt.Sprintf("\n    %v %s", n.Target, n.HTML)
		}
		if v.Impact == "serious" || v.Impact == "critical" {
			t.Error(line)
		} else {
			t.Log(line)
		}
	}
}

func (p *page) axeViolations(t *testing.T) []axeViolation {
	t.Helper()
	if _, err := chromedp.Run(p.ctx, chromedp.Evaluate[bool](p.b.axe+"\n;true")); err != nil {
		t.Fatalf("%s: load axe-core: %v", p.name, err)
	}
	raw, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](
		`axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}, resultTypes: ['violations']})
		  .then((r) => JSON.stringify(r.violations))`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: run axe-core: %v", p.name, err)
	}
	var vs []axeViolation
	if err := json.Unmarshal([]byte(raw), &vs); err != nil {
		t.Fatalf("%s: axe-core result: %v", p.name, err)
	}
	return vs
}

// customer is one registered customer of the tests.
type customer struct {
	name, email, phone, password string
}

func newCustomer(prefix string) customer {
	id := uniq(prefix)
	return customer{name: "Ada " + id, email: id + "@example.com", phone: "+1 555 0100", password: "correct horse " + id}
}

// register creates the customer through the page's form; the page is then
// signed in.
func (p *page) register(t *testing.T, base string, c customer, address bool) {
	t.Helper()
	steps := []chromedp.Action[chromedp.Void]{
		chromedp.Navigate(base + "/#/register"),
		chromedp.WaitVisible(chromedp.CSS(`#register-form`)),
		chromedp.SendKeys(chromedp.CSS(`#rg-name`), c.name),
		chromedp.SendKeys(chromedp.CSS(`#rg-email`), c.email),
		chromedp.SendKeys(chromedp.CSS(`#rg-phone`), c.phone),
		chromedp.SendKeys(chromedp.CSS(`#rg-password`), c.password),
	}
	if address {
		steps = append(steps,
			chromedp.SendKeys(chromedp.CSS(`#rg-line1`), "12 Analytical Row"),
			chromedp.SendKeys(chromedp.CSS(`#rg-postal`), "12345"),
			chromedp.SendKeys(chromedp.CSS(`#rg-city`), "Springfield"))
	}
	steps = append(steps, chromedp.Click(chromedp.CSS(`#register-form button[type=submit]`)))
	p.do(t, "register", steps...)
	p.until(t, "signed in after registering", `!document.getElementById('signout').hidden`, 20*time.Second)
}

func (p *page) signIn(t *testing.T, c customer) {
	t.Helper()
	p.do(t, "sign in",
		chromedp.WaitVisible(chromedp.CSS(`#signin-form`)),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('si-email').value = ''; document.getElementById('si-password').value = ''`),
		chromedp.SendKeys(chromedp.CSS(`#si-email`), c.email),
		chromedp.SendKeys(chromedp.CSS(`#si-password`), c.password),
		chromedp.Click(chromedp.CSS(`#signin-form button[type=submit]`)))
}

// build chooses a pizza, a size and toppings in the builder and waits for
// the server's price.
func (p *page) build(t *testing.T, pizza, size string, toppings ...string) {
	t.Helper()
	p.do(t, "choose pizza and size",
		chromedp.WaitVisible(chromedp.CSS(`#pz-`+pizza)),
		chromedp.Click(chromedp.CSS(`label[for="pz-`+pizza+`"]`)),
		chromedp.Click(chromedp.CSS(`label[for="sz-`+size+`"]`)))
	for _, tp := range toppings {
		p.do(t, "choose topping "+tp, chromedp.Click(chromedp.CSS(`label[for="tp-`+tp+`"]`)))
	}
	p.until(t, "the server's price", `!document.getElementById('to-checkout').disabled && document.getElementById('price-total') !== null`, 15*time.Second)
}

// checkout goes from a priced pizza to the checkout form.
func (p *page) checkout(t *testing.T) {
	t.Helper()
	p.do(t, "go to checkout", chromedp.Click(chromedp.CSS(`#to-checkout`)), chromedp.WaitVisible(chromedp.CSS(`#checkout-form`)))
}

// placeOrder submits the checkout form and returns the new order's id.
func (p *page) placeOrder(t *testing.T) string {
	t.Helper()
	p.do(t, "place the order", chromedp.Click(chromedp.CSS(`#place`)))
	p.until(t, "the order page", `location.hash.startsWith('#/orders/') && document.getElementById('order-status') !== null`, 20*time.Second)
	return strings.TrimPrefix(eval[string](t, p, `decodeURIComponent(location.hash)`), "#/orders/")
}

// stepDone waits for the order page's timeline to show status as reached.
func (p *page) stepDone(t *testing.T, status string) {
	t.Helper()
	p.until(t, "timeline step "+status,
		`document.querySelector('#timeline li.done[data-status="`+status+`"] time') !== null`, 30*time.Second)
}

// staff opens a staff page (kitchen, delivery) signed in with token.
func (b *browser) staff(t *testing.T, s *stack.Stack, role, token, path string) *page {
	t.Helper()
	p := b.page(t, role)
	p.do(t, "open "+path,
		chromedp.Navigate(s.URL("/")),
		chromedp.Evaluate[chromedp.Void](`sessionStorage.setItem("pizzashop.`+role+`.token", `+jsString(token)+`)`),
		chromedp.Navigate(s.URL(path)))
	return p
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// ordersOf lists a customer's orders over REST, as the shop stored them.
func ordersOf(t *testing.T, s *stack.Stack, token string) []*orderv1.Order {
	t.Helper()
	return listAll(t, s, token, 100)
}

// tokenOf reads the token the storefront keeps.
func tokenOf(t *testing.T, p *page) string {
	t.Helper()
	tok := eval[string](t, p, `localStorage.getItem('pizzashop.customer.token') || ''`)
	if tok == "" {
		t.Fatalf("%s: no customer token in localStorage", p.name)
	}
	return tok
}

func TestStorefrontInBrowser(t *testing.T) {
	s := stack.Start(t)
	b := newBrowser(t)

	t.Run("journey", func(t *testing.T) { storefrontJourney(t, s.For(t), b) })
	t.Run("double submit and retry", func(t *testing.T) { storefrontDoubleSubmit(t, s.For(t), b) })
	t.Run("cancel", func(t *testing.T) { storefrontCancel(t, s.For(t), b) })
	t.Run("pickup", func(t *testing.T) { storefrontPickup(t, s.For(t), b) })
	t.Run("sold out", func(t *testing.T) { storefrontSoldOut(t, s.For(t), b) })
	t.Run("manage add refused", func(t *testing.T) { manageAddRefused(t, s.For(t), b) })
	t.Run("expired token", func(t *testing.T) { storefrontExpiredToken(t, s.For(t), b) })
	t.Run("wrong password and rate limit", func(t *testing.T) { storefrontSignInLimits(t, s.For(t), b) })
	t.Run("rejected", func(t *testing.T) { storefrontRejected(t, s.For(t), b) })
	t.Run("keyboard only", func(t *testing.T) { storefrontKeyboard(t, s.For(t), b) })
	t.Run("history pages", func(t *testing.T) { storefrontHistoryPages(t, s.For(t), b) })
	t.Run("two customers in one tab", func(t *testing.T) { storefrontTwoCustomers(t, s.For(t), b) })
	t.Run("someone else's order", func(t *testing.T) { storefrontNotMine(t, s.For(t), b) })
	t.Run("order page for screen readers", func(t *testing.T) { storefrontOrderAnnounced(t, s.For(t), b) })
	t.Run("kitchen from the keyboard", func(t *testing.T) { kitchenKeyboard(t, s.For(t), b) })
	t.Run("board memory", func(t *testing.T) { boardMemory(t, s.For(t), b) })
	t.Run("slow menu", func(t *testing.T) { storefrontSlowMenu(t, s.For(t), b) })
	t.Run("reconnect", func(t *testing.T) { storefrontReconnect(t, s.For(t), b) }) // last: restarts the gateway
}

// storefrontJourney: a new customer registers, signs out, signs in again in
// another browser, builds a large pizza with three toppings (a fourth is
// refused), checks out for delivery and follows the order live while the
// kitchen and a courier move it on their own screens.
func storefrontJourney(t *testing.T, s *stack.Stack, b *browser) {
	c := newCustomer("journey")
	first := b.page(t, "customer-first-browser")

	// The menu, measured on the first load of a fresh browser.
	p0 := time.Now()
	first.do(t, "open the storefront", chromedp.Navigate(s.URL("/")), chromedp.WaitVisible(chromedp.CSS(`#pz-margherita`)))
	wall := time.Since(p0)
	rendered := eval[float64](t, first, `performance.getEntriesByName('menu-rendered')[0].startTime`)
	weight := eval[float64](t, first, `[...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')].reduce((n, e) => n + e.transferSize, 0)`)
	t.Logf("first load: %.0f bytes transferred, menu rendered %.0f ms after navigation start (%.0f ms wall clock with the test's round trips)", weight, rendered, float64(wall.Milliseconds()))
	if weight <= 0 || weight > 60_000 {
		t.Errorf("first load transferred %.0f bytes, want some and under 60 kB", weight)
	}
	menuText := first.text(t, `#pizza-list`)
	if !strings.Contains(menuText, "Margherita") || !strings.Contains(menuText, "Small") || !strings.Contains(menuText, "Large") {
		t.Errorf("menu = %q, want pizzas with the price of each size", menuText)
	}
	first.shots(t, "storefront-menu")

	// The check can fail: an input without a label is a critical violation.
	first.do(t, "add an unlabelled input", chromedp.Evaluate[chromedp.Void](
		`document.querySelector('main').append(Object.assign(document.createElement('input'), {id: 'axe-probe'}))`))
	found := false
	for _, v := range first.axeViolations(t) {
		found = found || v.ID == "label" && v.Impact == "critical"
	}
	if !found {
		t.Errorf("axe-core did not report an unlabelled input")
	}
	first.do(t, "remove it", chromedp.Evaluate[chromedp.Void](`document.getElementById('axe-probe').remove()`))

	first.register(t, s.URL(""), c, true)
	if who := first.text(t, `#who`); !strings.Contains(who, c.name) {
		t.Errorf("after registering the header says %q, want the name %q", who, c.name)
	}
	first.do(t, "sign out", chromedp.Click(chromedp.CSS(`#signout`)), chromedp.WaitVisible(chromedp.CSS(`#nav-signin`)))
	if tok := eval[string](t, first, `localStorage.getItem('pizzashop.customer.token') || ''`); tok != "" {
		t.Errorf("token still stored after signing out")
	}

	// Later, another browser.
	p := b.page(t, "customer")
	p.do(t, "open the sign-in form", chromedp.Navigate(s.URL("/#/signin")), chromedp.WaitVisible(chromedp.CSS(`#signin-form`)))
	p.shots(t, "storefront-signin")
	p.signIn(t, c)
	p.until(t, "signed in", `!document.getElementById('signout').hidden`, 20*time.Second)

	// Build a large Margherita with three toppings; a fourth is refused.
	p.build(t, "margherita", "SIZE_LARGE", "mushrooms", "basil", "olives")
	p.do(t, "try a fourth topping", chromedp.Click(chromedp.CSS(`label[for="tp-red-onion"]`)))
	if checked := eval[bool](t, p, `document.getElementById('tp-red-onion').checked`); checked {
		t.Errorf("a fourth topping was taken")
	}
	if msg := p.text(t, `#topping-limit`); !strings.Contains(msg, "at most 3 toppings") {
		t.Errorf("topping limit message = %q, want it to say why", msg)
	}
	// The price on the page is the server's.
	code, raw, _ := s.Do(http.MethodPost, "/v1/menu:price", "", map[string]any{
		"pizzaId": "margherita", "size": "SIZE_LARGE", "toppingIds": []string{"mushrooms", "basil", "olives"}})
	var priced struct {
		Price struct {
			Total struct {
				AmountMinor string `json:"amountMinor"`
			} `json:"total"`
		} `json:"price"`
	}
	if code != http.StatusOK || json.Unmarshal(raw, &priced) != nil {
		t.Fatalf("POST /v1/menu:price = %d %s", code, raw)
	}
	shown := eval[string](t, p, `document.getElementById('price-total').textContent`)
	wantMinor := priced.Price.Total.AmountMinor
	if !strings.Contains(strings.ReplaceAll(strings.ReplaceAll(shown, ".", ""), ",", ""), wantMinor) {
		t.Errorf("page total %q, server total %s minor units", shown, wantMinor)
	}
	p.shots(t, "storefront-builder-limit")

	// Checkout for delivery: the address comes from the profile.
	p.checkout(t)
	if line1 := eval[string](t, p, `document.getElementById('co-line1').value`); line1 != "12 Analytical Row" {
		t.Errorf("delivery address line 1 = %q, want it prefilled from the profile", line1)
	}
	if n := eval[int](t, p, `document.querySelectorAll('input[autocomplete^="cc-"], input[name*="card" i]').length`); n != 0 {
		t.Errorf("%d card fields on the checkout form, want none", n)
	}
	p.do(t, "write a note", chromedp.SendKeys(chromedp.CSS(`#co-note`), "Ring twice"))
	p.shots(t, "storefront-checkout")
	id := p.placeOrder(t)
	p.stepDone(t, "ORDER_STATUS_ACCEPTED")
	if eta := p.text(t, `#eta`); !strings.Contains(eta, "Estimated ready at") {
		t.Errorf("order page ETA = %q", eta)
	}
	p.shots(t, "storefront-order-accepted")

	// The kitchen starts and readies it on its display.
	kitchen := b.staff(t, s, "kitchen", s.Token("kitchen", "kim"), "/kitchen")
	kitchen.do(t, "start", chromedp.WaitVisible(chromedp.CSS(`#col-queued li[data-id="`+id+`"] button.start`)),
		chromedp.Click(chromedp.CSS(`#col-queued li[data-id="`+id+`"] button.start`)))
	p.stepDone(t, "ORDER_STATUS_BAKING")
	if hidden := eval[bool](t, p, `document.getElementById('cancel').hidden`); !hidden {
		t.Errorf("cancel is offered while baking")
	}
	p.shots(t, "storefront-order-baking")
	kitchen.do(t, "ready", chromedp.WaitVisible(chromedp.CSS(`#col-baking li[data-id="`+id+`"] button.ready`)),
		chromedp.Click(chromedp.CSS(`#col-baking li[data-id="`+id+`"] button.ready`)))
	p.stepDone(t, "ORDER_STATUS_READY")

	// A courier dispatches and delivers it on the delivery board.
	courier := b.staff(t, s, "courier", s.Token("courier", "cody"), "/delivery")
	courier.do(t, "dispatch", chromedp.WaitVisible(chromedp.CSS(`#group-waiting li[data-id="`+id+`"] button.dispatch`)),
		chromedp.Click(chromedp.CSS(`#group-waiting li[data-id="`+id+`"] button.dispatch`)))
	p.stepDone(t, "ORDER_STATUS_OUT_FOR_DELIVERY")
	// Another courier sees who has it, and no button to close it.
	other := b.staff(t, s, "courier", s.Token("courier", "dana"), "/delivery")
	other.do(t, "see whose it is", chromedp.WaitVisible(chromedp.CSS(`#group-out li[data-id="`+id+`"] .theirs`)))
	if got := other.text(t, `#group-out li[data-id="`+id+`"] .theirs`); !strings.Contains(got, "cody") {
		t.Errorf("another courier's card says %q, want it to name cody", got)
	}
	if n := eval[int](t, other, `document.querySelectorAll('#group-out li[data-id="`+id+`"] button.done').length`); n != 0 {
		t.Errorf("another courier is offered %d Delivered buttons for cody's delivery", n)
	}
	courier.do(t, "deliver", chromedp.WaitVisible(chromedp.CSS(`#group-out li[data-id="`+id+`"] button.done`)),
		chromedp.Click(chromedp.CSS(`#group-out li[data-id="`+id+`"] button.done`)))
	p.stepDone(t, "ORDER_STATUS_DELIVERED")
	timeline := p.text(t, `#timeline`)
	if got, ok := containsAll(timeline, "Placed", "Accepted", "In the oven", "Ready", "Out for delivery", "Delivered"); !ok {
		t.Errorf("timeline %q misses %q", timeline, got)
	}
	if n := eval[int](t, p, `performance.getEntriesByType('navigation').length`); n != 1 {
		t.Errorf("%d navigations on the customer's page, want 1: every step arrives without a reload", n)
	}
	p.shots(t, "storefront-order-delivered")

	// History: the order, newest first.
	p.do(t, "open the history", chromedp.Click(chromedp.CSS(`#nav-orders`)),
		chromedp.WaitVisible(chromedp.CSS(`#orders-list li[data-id="`+id+`"]`)))
	if got := p.text(t, `#orders-list li[data-id="`+id+`"]`); !strings.Contains(got, "Delivered") || !strings.Contains(got, "Large Margherita") {
		t.Errorf("history entry = %q, want the large Margherita, delivered", got)
	}
	p.shots(t, "storefront-history")
}

// storefrontDoubleSubmit: a double click on "Place order" and a retry after
// the answer was lost on the way back each make exactly one order.
func storefrontDoubleSubmit(t *testing.T, s *stack.Stack, b *browser) {
	c := newCustomer("double")
	p := b.page(t, "customer")
	p.register(t, s.URL(""), c, true)
	token := tokenOf(t, p)
	p.do(t, "back to the menu", chromedp.Navigate(s.URL("/#/")))
	p.build(t, "funghi", "SIZE_MEDIUM", "ham")
	p.checkout(t)
	p.do(t, "double click Place order", chromedp.DoubleClick(chromedp.CSS(`#place`)))
	p.until(t, "the order page", `location.hash.startsWith('#/orders/')`, 20*time.Second)
	if got := ordersOf(t, s, token); len(got) != 1 {
		t.Fatalf("%d orders after a double click, want 1", len(got))
	}

	// The shop stores the order but the answer never reaches the page; the
	// customer presses the button again: same attempt, same key, one order.
	p.do(t, "back to the menu", chromedp.Navigate(s.URL("/#/")))
	p.build(t, "diavola", "SIZE_SMALL")
	p.checkout(t)
	lost := make(chan string, 1)
	fail := chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{
			{URLPattern: "*/v1/orders", RequestStage: fetch.RequestStageResponse}}})
		return err
	})
	events := chromedp.Events(p.ctx, fetch.RequestPaused)
	p.do(t, "intercept order answers", fail)
	p.expect("net::ERR_CONNECTION_RESET")
	go func() {
		for ev, err := range events {
			if err != nil {
				return
			}
			if ev.Request.Method != http.MethodPost {
				_, _ = chromedp.Call(p.ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
				continue
			}
			_, _ = chromedp.Call(p.ctx, fetch.FailRequest, fetch.FailRequestParams{RequestID: ev.RequestID, ErrorReason: "ConnectionReset"})
			lost <- fmt.Sprint(ev.ResponseStatusCode)
			return
		}
	}()
	p.do(t, "place the order", chromedp.Click(chromedp.CSS(`#place`)))
	select {
	case code := <-lost:
		if code != "200" {
			t.Fatalf("the order call answered %s before the answer was dropped, want 200", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the order call never reached the shop")
	}
	p.until(t, "the network error next to the form", `!document.getElementById('checkout-error').hidden`, 10*time.Second)
	if msg := p.text(t, `#checkout-error`); !strings.Contains(msg, "Network error") {
		t.Errorf("checkout error = %q, want a network error", msg)
	}
	p.shots(t, "storefront-checkout-network-error")
	p.do(t, "stop intercepting", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, fetch.Disable, struct{}{})
		return err
	}))
	id := p.placeOrder(t)
	orders := ordersOf(t, s, token)
	if len(orders) != 2 || orders[0].GetId() != id {
		t.Errorf("orders after a lost answer and a retry = %d (newest %s), want 2 with %s newest", len(orders), orders[0].GetId(), id)
	}
}

// storefrontCancel: cancelling before baking works; once the kitchen has
// started, the shop's 409 reason is shown.
func storefrontCancel(t *testing.T, s *stack.Stack, b *browser) {
	c := newCustomer("cancel")
	p := b.page(t, "customer")
	p.register(t, s.URL(""), c, false)
	p.do(t, "back to the menu", chromedp.Navigate(s.URL("/#/")))
	p.build(t, "margherita", "SIZE_SMALL")
	p.checkout(t)
	// No address on the profile: the shop refuses a delivery without one,
	// and the page shows each problem next to the field the shop names.
	p.do(t, "deliver without an address", chromedp.Click(chromedp.CSS(`#place`)))
	p.until(t, "the field errors", `!document.getElementById('co-line1-err').hidden`, 15*time.Second)
	for _, id := range []string{"co-line1", "co-city", "co-postal"} {
		if msg := p.text(t, "#"+id+"-err"); !strings.Contains(msg, "required for delivery") {
			t.Errorf("error next to #%s = %q, want the shop's message", id, msg)
		}
	}
	if focused := eval[string](t, p, `document.activeElement.id`); focused != "co-line1" {
		t.Errorf("focus after the refusal is on #%s, want the first field named", focused)
	}
	p.shots(t, "storefront-checkout-field-errors")
	p.do(t, "choose pickup", chromedp.Click(chromedp.CSS(`input[value=FULFILLMENT_PICKUP]`)))
	p.placeOrder(t)
	p.stepDone(t, "ORDER_STATUS_ACCEPTED")
	p.do(t, "cancel", chromedp.WaitVisible(chromedp.CSS(`#cancel`)), chromedp.Click(chromedp.CSS(`#cancel`)))
	p.stepDone(t, "ORDER_STATUS_CANCELLED")
	if !eval[bool](t, p, `document.getElementById('cancel').hidden`) {
		t.Errorf("cancel still offered on a cancelled order")
	}
	p.shots(t, "storefront-order-cancelled")

	// The kitchen starts the next one. The page hides Cancel as soon as it
	// hears of it; to stage the customer pressing it just before, the test
	// shows the button again, and the shop's refusal reaches the page.
	p.do(t, "back to the menu", chromedp.Navigate(s.URL("/#/")))
	p.build(t, "margherita", "SIZE_SMALL")
	p.checkout(t)
	p.do(t, "choose pickup", chromedp.Click(chromedp.CSS(`input[value=FULFILLMENT_PICKUP]`)))
	id := p.placeOrder(t)
	p.stepDone(t, "ORDER_STATUS_ACCEPTED")
	post(t, s, "/v1/kitchen/tickets/"+id+":start", s.Token("kitchen", "kim"), http.StatusOK)
	p.stepDone(t, "ORDER_STATUS_BAKING")
	p.do(t, "press a stale Cancel",
		chromedp.Evaluate[chromedp.Void](`document.getElementById('cancel').hidden = false`),
		chromedp.Click(chromedp.CSS(`#cancel`)))
	p.until(t, "the refusal", `!document.getElementById('cancel-error').hidden`, 10*time.Second)
	if msg := p.text(t, `#cancel-error`); !strings.Contains(msg, "can no longer be cancelled") || len(msg) < len("It can no longer be cancelled: ")+5 {
		t.Errorf("cancel error = %q, want the shop's reason", msg)
	}
	if focused := eval[string](t, p, `document.activeElement.id`); focused != "cancel-error" {
		t.Errorf("focus after the refused cancel is on %q, want the refusal", focused)
	}
	p.shots(t, "storefront-cancel-refused")
}

// storefrontPickup: a pickup order goes PLACED ... READY, PICKED_UP live.
func storefrontPickup(t *testing.T, s *stack.Stack, b *browser) {
	c := newCustomer("pickup")
	p := b.page(t, "customer")
	p.register(t, s.URL(""), c, false)
	p.do(t, "back to the menu", chromedp.Navigate(s.URL("/#/")))
	p.build(t, "funghi", "SIZE_SMALL", "basil")
	p.checkout(t)
	p.do(t, "choose pickup and card", chromedp.Click(chromedp.CSS(`input[value=FULFILLMENT_PICKUP]`)),
		chromedp.Click(chromedp.CSS(`input[value=PAYMENT_METHOD_CARD]`)))
	if visible := eval[bool](t, p, `!document.getElementById('co-address').hidden`); visible {
		t.Errorf("the address is asked for a pickup")
	}
	id := p.placeOrder(t)
	p.stepDone(t, "ORDER_STATUS_ACCEPTED")
	kitchen := s.Token("kitchen", "kim")
	post(t, s, "/v1/kitchen/tickets/"+id+":start", kitchen, http.StatusOK)
	post(t, s, "/v1/kitchen/tickets/"+id+":ready", kitchen, http.StatusOK)
	p.stepDone(t, "ORDER_STATUS_READY")
	eventually(t, 15*time.Second, "the delivery service knows the order", func() (bool, string) {
		code, raw, _ := s.Do(http.MethodPost, "/v1/delivery/deliveries/"+id+":pickup", s.Token("courier", "cody"), map[string]any{})
		return code == http.StatusOK, string(raw)
	})
	p.stepDone(t, "ORDER_STATUS_PICKED_UP")
	if n := eval[int](t, p, `document.querySelectorAll('#timeline li').length`); n != 5 {
		t.Errorf("pickup timeline has %d steps, want 5 (no delivery steps)", n)
	}
	p.shots(t, "storefront-pickup-done")
}

// storefrontSoldOut: a manager marks a topping sold out on /manage; an open
// storefront shows it within seconds and no longer offers it.
func storefrontSoldOut(t *testing.T, s *stack.Stack, b *browser) {
	shopper := b.page(t, "customer")
	shopper.do(t, "open the storefront", chromedp.Navigate(s.URL("/")), chromedp.WaitVisible(chromedp.CSS(`#tp-anchovies`)))
	if eval[bool](t, shopper, `document.getElementById('tp-anchovies').disabled`) {
		t.Fatal("anchovies already sold out")
	}
	// The open page revalidates the menu with its ETag: unchanged, 304.
	shopper.until(t, "a 304 to the menu's revalidation",
		`performance.getEntriesByType('resource').some((e) => e.name.endsWith('/v1/menu') && e.responseStatus === 304)`, 15*time.Second)
	manager := b.staff(t, s, "admin", s.Token("admin", "ada"), "/manage")
	manager.do(t, "wait for the menu", chromedp.WaitVisible(chromedp.CSS(`#toppings li[data-id="anchovies"] .toggle`)))
	manager.shots(t, "manage-menu")
	manager.do(t, "mark anchovies sold out", chromedp.Click(chromedp.CSS(`#toppings li[data-id="anchovies"] .toggle`)))
	manager.until(t, "the change stored", `document.querySelector('#toppings li[data-id="anchovies"]').classList.contains('soldout')`, 10*time.Second)
	begin := time.Now()
	shopper.until(t, "anchovies sold out on the storefront", `document.getElementById('tp-anchovies').disabled`, 15*time.Second)
	t.Logf("sold out reached the open storefront in %s", time.Since(begin).Round(100*time.Millisecond))
	if got := shopper.text(t, `#topping-list li[data-id="anchovies"]`); !strings.Contains(got, "Sold out") {
		t.Errorf("anchovies on the storefront = %q, want it shown as sold out", got)
	}
	shopper.shots(t, "storefront-sold-out")

	// A manager edits a price; the storefront follows.
	manager.do(t, "change a price",
		chromedp.SetValue(chromedp.CSS(`#pizza-marinara-size_large`), "19.75"),
		chromedp.Click(chromedp.CSS(`#pizzas li[data-id="marinara"] button[type=submit]`)))
	shopper.until(t, "the new price on the storefront", `document.querySelector('#pizza-list li[data-id="marinara"]').textContent.includes('19.75')`, 15*time.Second)
	// Another manager changes the description meanwhile. This page's next
	// save of the pizza is refused rather than put back the description it
	// shows, and the page then shows the other manager's change.
	const elsewhere = "Tomato, garlic, oregano, basil; no cheese"
	if code, raw, _ := s.Do(http.MethodPatch, "/v1/menu/pizzas/marinara", s.Token("admin", "max"), map[string]any{"description": elsewhere}); code != http.StatusOK {
		t.Fatalf("PATCH marinara's description: %d %s", code, raw)
	}
	manager.do(t, "save over a change made elsewhere",
		chromedp.SetValue(chromedp.CSS(`#pizza-marinara-name`), "Marinara Classica"),
		chromedp.Click(chromedp.CSS(`#pizzas li[data-id="marinara"] button[type=submit]`)))
	manager.until(t, "the refusal on the row", `(document.querySelector('#pizzas li[data-id="marinara"] .error') || {}).textContent?.includes('changed by someone else')`, 10*time.Second)
	if got := eval[string](t, manager, `document.getElementById('pizza-marinara-description').value`); got != elsewhere {
		t.Errorf("description on the manager's page after the refusal = %q, want the other manager's %q", got, elsewhere)
	}
	if got := eval[string](t, manager, `document.getElementById('pizza-marinara-name').value`); got != "Marinara" {
		t.Errorf("name on the manager's page after the refusal = %q, want the stored Marinara", got)
	}
	// A price the currency cannot hold is refused on the page, not rounded.
	manager.do(t, "a price with a third decimal",
		chromedp.SetValue(chromedp.CSS(`#pizza-marinara-size_large`), "19.755"),
		chromedp.Click(chromedp.CSS(`#pizzas li[data-id="marinara"] button[type=submit]`)))
	manager.until(t, "the third decimal refused", `(document.querySelector('#pizzas li[data-id="marinara"] .error') || {}).textContent?.includes('at most 2')`, 10*time.Second)
	// Something typed into one row and not saved yet survives the reload
	// that another change (adding a topping, below) brings.
	manager.do(t, "type into margherita without saving", chromedp.SendKeys(chromedp.CSS(`#pizza-margherita-description`), " and a draft"))
	// A new topping appears on the open storefront.
	manager.do(t, "add a topping",
		chromedp.SendKeys(chromedp.CSS(`#nt-name`), "Truffle"),
		chromedp.SendKeys(chromedp.CSS(`#nt-small`), "2.50"),
		chromedp.SendKeys(chromedp.CSS(`#nt-medium`), "3"),
		chromedp.SendKeys(chromedp.CSS(`#nt-large`), "3.50"),
		chromedp.Click(chromedp.CSS(`#add-topping button[type=submit]`)))
	shopper.until(t, "the new topping on the storefront", `document.querySelector('#topping-list').textContent.includes('Truffle')`, 15*time.Second)
	manager.until(t, "the new topping on the manager's page", `!!document.querySelector('#toppings li[data-id="truffle"]')`, 10*time.Second)
	if got := eval[string](t, manager, `document.getElementById('pizza-margherita-description').value`); !strings.HasSuffix(got, " and a draft") {
		t.Errorf("margherita's description after another change reloaded the menu = %q, want the unsaved draft kept", got)
	}
	manager.do(t, "anchovies back", chromedp.Click(chromedp.CSS(`#toppings li[data-id="anchovies"] .toggle`)))
	manager.until(t, "focus back on the switch after the reload", `!document.querySelector('#toppings li[data-id="anchovies"]').classList.contains('soldout') && document.activeElement && document.activeElement.id === 'topping-anchovies-toggle'`, 10*time.Second)
	shopper.until(t, "anchovies back on the storefront", `!document.getElementById('tp-anchovies').disabled`, 15*time.Second)
}

// manageAddRefused: the menu refuses a new pizza and a new topping on
// /manage. Each refusal that names a field of the add form shows beside that
// field, which is marked invalid and described by it, and takes the focus;
// editing the field clears it, and so does submitting again. A refusal that
// names no field of the form shows in the form's alert. The page's own price
// checks use the same boxes.
func manageAddRefused(t *testing.T, s *stack.Stack, b *browser) {
	m := b.staff(t, s, "admin", s.Token("admin", "ada"), "/manage")
	m.do(t, "wait for the menu", chromedp.WaitVisible(chromedp.CSS(`#add-pizza button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#pizzas li[data-id="margherita"]`)))
	invalid := func(id string) bool {
		return eval[bool](t, m, `document.getElementById(`+jsString(id)+`).getAttribute('aria-invalid') === 'true'`)
	}
	boxOf := func(id string) string {
		return eval[string](t, m, `(() => { const b = document.getElementById(`+jsString(id+"-err")+`); return b.hidden ? '' : b.textContent; })()`)
	}
	describedBy := func(id string) string {
		return eval[string](t, m, `document.getElementById(`+jsString(id)+`).getAttribute('aria-describedby') || ''`)
	}

	// A name of blanks (the menu wants a visible character) and a large
	// price above the menu's highest: two field violations from the server.
	m.do(t, "add a pizza the menu refuses",
		chromedp.SendKeys(chromedp.CSS(`#np-name`), "   "),
		chromedp.SendKeys(chromedp.CSS(`#np-small`), "9"),
		chromedp.SendKeys(chromedp.CSS(`#np-medium`), "11"),
		chromedp.SendKeys(chromedp.CSS(`#np-large`), "5000"),
		chromedp.Click(chromedp.CSS(`#add-pizza button[type=submit]`)))
	m.until(t, "the refusal beside the name", `!document.getElementById('np-name-err').hidden`, 10*time.Second)
	if got := boxOf("np-name"); !strings.Contains(got, "must not be empty") {
		t.Errorf("name's error box = %q, want the menu's refusal of the name", got)
	}
	// The menu counts in minor units; the page says it as the price is typed.
	if got := boxOf("np-large"); !strings.Contains(got, "at most 1000.00, got 5000.00") {
		t.Errorf("large price's error box = %q, want the menu's refusal of the price in major units (at most 1000.00, got 5000.00)", got)
	}
	for _, id := range []string{"np-name", "np-large"} {
		if !invalid(id) {
			t.Errorf("#%s is not aria-invalid after the menu refused it", id)
		}
		if got := describedBy(id); !slices.Contains(strings.Fields(got), id+"-err") {
			t.Errorf("#%s aria-describedby = %q, want its error box %s-err", id, got, id)
		}
	}
	for _, id := range []string{"np-description", "np-small", "np-medium"} {
		if invalid(id) || boxOf(id) != "" {
			t.Errorf("#%s shows an error (%q), want none: the menu did not refuse it", id, boxOf(id))
		}
	}
	if !eval[bool](t, m, `document.getElementById('add-pizza-error').hidden`) {
		t.Errorf("the form's alert shows %q, want every refusal beside its field", m.text(t, `#add-pizza-error`))
	}
	if got := eval[string](t, m, `document.activeElement.id`); got != "np-name" {
		t.Errorf("focus after the refusal is on %q, want the first invalid field np-name", got)
	}
	m.shots(t, "manage-add-refused")

	// Editing the name clears its error, not the price's.
	m.do(t, "type a name", chromedp.SendKeys(chromedp.CSS(`#np-name`), "Diavola"))
	if invalid("np-name") || boxOf("np-name") != "" {
		t.Errorf("the name still shows its error (%q) after it was edited", boxOf("np-name"))
	}
	if !invalid("np-large") || boxOf("np-large") == "" {
		t.Errorf("the large price's error went away when the name was edited")
	}

	// The page's own check of a price: the same box, and submitting again
	// clears the server's refusal of the large price.
	m.do(t, "a price that is no number",
		chromedp.SetValue(chromedp.CSS(`#np-medium`), "eleven"),
		chromedp.Click(chromedp.CSS(`#add-pizza button[type=submit]`)))
	m.until(t, "the page's refusal beside the medium price", `!document.getElementById('np-medium-err').hidden`, 10*time.Second)
	if got := boxOf("np-medium"); !strings.Contains(got, "not a number") {
		t.Errorf("medium price's error box = %q, want the page's refusal", got)
	}
	if !invalid("np-medium") {
		t.Errorf("#np-medium is not aria-invalid after the page refused it")
	}
	if invalid("np-large") || boxOf("np-large") != "" {
		t.Errorf("the large price still shows the last refusal (%q) after submitting again", boxOf("np-large"))
	}
	if got := eval[string](t, m, `document.activeElement.id`); got != "np-medium" {
		t.Errorf("focus after the page's refusal is on %q, want np-medium", got)
	}

	// A topping that is already on the menu: the refusal names no field of
	// the form, so it shows in the form's alert.
	m.do(t, "add a topping that exists",
		chromedp.SendKeys(chromedp.CSS(`#nt-name`), "Basil"),
		chromedp.SendKeys(chromedp.CSS(`#nt-small`), "1"),
		chromedp.SendKeys(chromedp.CSS(`#nt-medium`), "1.50"),
		chromedp.SendKeys(chromedp.CSS(`#nt-large`), "2"),
		chromedp.Click(chromedp.CSS(`#add-topping button[type=submit]`)))
	m.until(t, "the refusal in the form's alert", `!document.getElementById('add-topping-error').hidden`, 10*time.Second)
	if got := m.text(t, `#add-topping-error`); !strings.Contains(got, "already exists") {
		t.Errorf("topping form's alert = %q, want the menu's refusal of a second basil", got)
	}
	if n := eval[int](t, m, `document.querySelectorAll('#add-topping [aria-invalid="true"]').length`); n != 0 {
		t.Errorf("%d topping fields marked invalid for a refusal that names none", n)
	}
}

// storefrontExpiredToken: a browser that kept an expired token still sees
// the menu and prices, and is asked to sign in again where it needs one.
func storefrontExpiredToken(t *testing.T, s *stack.Stack, b *browser) {
	c := newCustomer("expired")
	p := b.page(t, "customer")
	p.register(t, s.URL(""), c, false)
	signer, err := auth.NewSigner(s.Secret())
	if err != nil {
		t.Fatal(err)
	}
	claims, err := signer.Verify(tokenOf(t, p))
	if err != nil {
		t.Fatal(err)
	}
	stale, _, err := signer.Sign(claims, -time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// The public calls take no notice of the stale token.
	for _, call := range []struct {
		method, path string
		body         any
	}{
		{http.MethodGet, "/v1/menu", nil},
		{http.MethodPost, "/v1/menu:price", map[string]any{"pizzaId": "margherita", "size": "SIZE_SMALL"}},
		{http.MethodPost, "/v1/customers:signIn", map[string]any{"email": c.email, "password": c.password}},
	} {
		if code, raw, _ := s.Do(call.method, call.path, stale, call.body); code != http.StatusOK {
			t.Errorf("%s %s with an expired token = %d %s, want 200", call.method, call.path, code, raw)
		}
	}
	if code, raw, _ := s.Do(http.MethodGet, "/v1/orders", stale, nil); code != http.StatusUnauthorized {
		t.Errorf("GET /v1/orders with an expired token = %d %s, want 401", code, raw)
	}

	// The page, reopened later with the stale token kept, shows the menu and
	// asks to sign in again.
	p.do(t, "come back after the token expired", chromedp.Evaluate[chromedp.Void](`localStorage.setItem('pizzashop.customer.token', `+jsString(stale)+`)`),
		chromedp.Navigate(s.URL("/?again#/orders")))
	p.until(t, "the sign-in form", `!document.getElementById('view-signin').hidden`, 15*time.Second)
	if why := p.text(t, `#signin-why`); !strings.Contains(why, "expired") {
		t.Errorf("sign-in form says %q, want that the sign-in expired", why)
	}
	p.until(t, "the menu, loaded with the stale token present", `document.querySelectorAll('#pizza-list li').length > 0`, 15*time.Second)
	p.shots(t, "storefront-expired")
	p.signIn(t, c)
	p.until(t, "back on my orders", `!document.getElementById('view-orders').hidden`, 20*time.Second)
	if tok := tokenOf(t, p); tok == stale {
		t.Errorf("the stale token is still kept after signing in again")
	}
}

// storefrontSignInLimits: a wrong password and an unknown email get the
// same message; too many attempts are refused for a while.
func storefrontSignInLimits(t *testing.T, s *stack.Stack, b *browser) {
	c := newCustomer("limits")
	code, raw, _ := s.Do(http.MethodPost, "/v1/customers", "", map[string]any{
		"name": c.name, "email": c.email, "phone": c.phone, "password": c.password})
	if code != http.StatusOK {
		t.Fatalf("register over REST = %d %s", code, raw)
	}
	p := b.page(t, "customer")
	p.do(t, "open sign-in", chromedp.Navigate(s.URL("/#/signin")))
	wrong := c
	wrong.password = "not the password"
	p.signIn(t, wrong)
	p.until(t, "the refusal", `!document.getElementById('signin-error').hidden`, 15*time.Second)
	msgWrong := p.text(t, `#signin-error`)
	p.shots(t, "storefront-signin-wrong")
	unknown := newCustomer("nobody")
	p.signIn(t, unknown)
	p.until(t, "the refusal", `document.getElementById('signin-error').textContent !== ''`, 15*time.Second)
	msgUnknown := p.text(t, `#signin-error`)
	if msgWrong != msgUnknown || !strings.Contains(strings.ToLower(msgWrong), "email or password is not correct") {
		t.Errorf("wrong password says %q, unknown email says %q; want the same refusal", msgWrong, msgUnknown)
	}
	// The account allows 5 failures per 15 minutes: 4 more, then refused.
	for i := range 4 {
		p.signIn(t, wrong)
		p.until(t, fmt.Sprintf("refusal %d", i+2), `document.getElementById('signin-error').textContent !== '' && !document.querySelector('#signin-form button').disabled`, 15*time.Second)
	}
	p.signIn(t, c) // even the right password, for now
	p.until(t, "the rate limit", `document.getElementById('signin-error').textContent.toLowerCase().includes('too many sign-in attempts')`, 15*time.Second)
	p.shots(t, "storefront-signin-limited")
	if !eval[bool](t, p, `document.getElementById('signout').hidden`) {
		t.Errorf("signed in despite the limit")
	}
}

// storefrontKeyboard: the whole order, from menu to order page, with the
// keyboard alone; the focused control is always visibly outlined.
func storefrontKeyboard(t *testing.T, s *stack.Stack, b *browser) {
	c := newCustomer("keys")
	p := b.page(t, "customer")
	p.register(t, s.URL(""), c, false)
	p.do(t, "open the menu", chromedp.Navigate(s.URL("/?keys#/")), chromedp.WaitVisible(chromedp.CSS(`#pz-margherita`)))
	// tabTo presses Tab until the element sel has the focus.
	tabTo := func(sel string) {
		t.Helper()
		for range 80 {
			if eval[bool](t, p, `document.activeElement && document.activeElement.matches(`+jsString(sel)+`)`) {
				outline := eval[string](t, p, `getComputedStyle(document.activeElement.matches('.size-choice input') ? document.activeElement.nextElementSibling : document.activeElement).outlineStyle`)
				if outline == "none" {
					t.Errorf("focused %s has no visible outline", sel)
				}
				return
			}
			p.do(t, "Tab", chromedp.KeyEvent(kb.Tab))
		}
		t.Fatalf("Tab never reached %s", sel)
	}
	tabTo(`input[name=pizza]`)
	p.do(t, "choose the second pizza", chromedp.KeyEvent(kb.ArrowDown))
	tabTo(`input[name=size]`)
	p.do(t, "choose a size", chromedp.KeyEvent(kb.ArrowRight))
	tabTo(`input[name=topping]`)
	for i := range 4 { // a fourth topping is refused from the keyboard too
		p.do(t, "toggle a topping", chromedp.KeyEvent(" "))
		if i < 3 {
			tabTo(`input[name=topping]:not(:checked)`)
		}
	}
	if n := eval[int](t, p, `document.querySelectorAll('input[name=topping]:checked').length`); n != 3 {
		t.Errorf("%d toppings chosen from the keyboard, want 3", n)
	}
	p.until(t, "the price", `!document.getElementById('to-checkout').disabled`, 15*time.Second)
	tabTo(`#to-checkout`)
	p.do(t, "checkout", chromedp.KeyEvent(kb.Enter))
	p.until(t, "the checkout form", `!document.getElementById('view-checkout').hidden`, 10*time.Second)
	tabTo(`input[name=fulfillment]`)
	p.do(t, "pickup", chromedp.KeyEvent(kb.ArrowRight))
	tabTo(`#place`)
	p.do(t, "place", chromedp.KeyEvent(kb.Enter))
	p.until(t, "the order page", `document.getElementById('order-status') !== null`, 20*time.Second)
	p.shots(t, "storefront-keyboard-order")
}

// storefrontHistoryPages: twelve orders page as ten and two, newest first.
func storefrontHistoryPages(t *testing.T, s *stack.Stack, b *browser) {
	c := newCustomer("pages")
	p := b.page(t, "customer")
	p.register(t, s.URL(""), c, false)
	token := tokenOf(t, p)
	var ids []string
	for i := range 12 {
		o := place(t, s, token, pickupBody("margherita", "SIZE_SMALL"), "Idempotency-Key", fmt.Sprintf("pages-%d", i))
		ids = append(ids, o.GetId())
	}
	p.do(t, "open my orders", chromedp.Navigate(s.URL("/?pages#/orders")))
	p.until(t, "the first page", `document.querySelectorAll('#orders-list li').length === 10`, 15*time.Second)
	first := eval[[]string](t, p, `Array.from(document.querySelectorAll('#orders-list li'), (li) => li.dataset.id)`)
	if first[0] != ids[11] || first[9] != ids[2] {
		t.Errorf("first page = %v, want the 10 newest, newest first (%s ... %s)", first, ids[11], ids[2])
	}
	p.shots(t, "storefront-history-page1")
	// A double click (or an impatient second one) turns one page.
	p.do(t, "older, twice", chromedp.Focus(chromedp.CSS(`#orders-more`)),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('orders-more').click(); document.getElementById('orders-more').click()`))
	p.until(t, "the second page", `document.querySelectorAll('#orders-list li').length === 2`, 15*time.Second)
	p.do(t, "let every answer arrive", chromedp.Sleep(time.Second))
	second := eval[[]string](t, p, `Array.from(document.querySelectorAll('#orders-list li'), (li) => li.dataset.id)`)
	if len(second) != 2 || second[0] != ids[1] || second[1] != ids[0] {
		t.Errorf("second page = %v, want [%s %s]", second, ids[1], ids[0])
	}
	if !eval[bool](t, p, `document.getElementById('orders-more').hidden`) {
		t.Errorf("Older orders still offered on the last page")
	}
	if focused := eval[string](t, p, `document.activeElement.id`); focused != "h-orders" {
		t.Errorf("focus after the last page is on %q, want the list's heading (its button is gone)", focused)
	}
	p.do(t, "newer", chromedp.Click(chromedp.CSS(`#orders-newer`)))
	p.until(t, "the first page again", `document.querySelectorAll('#orders-list li').length === 10`, 15*time.Second)
	if !eval[bool](t, p, `document.getElementById('orders-newer').hidden`) {
		t.Errorf("Newer orders offered on the first page")
	}
}

// storefrontReconnect: the gateway restarts while a customer follows an
// order; the page says it is reconnecting, comes back, and catches up with
// what happened meanwhile.
func storefrontReconnect(t *testing.T, s *stack.Stack, b *browser) {
	c := newCustomer("reconnect")
	p := b.page(t, "customer")
	p.register(t, s.URL(""), c, false)
	token := tokenOf(t, p)
	o := place(t, s, token, pickupBody("funghi", "SIZE_LARGE"), "Idempotency-Key", "reconnect-1")
	p.do(t, "follow the order", chromedp.Navigate(s.URL("/?follow#/orders/"+o.GetId())))
	p.stepDone(t, "ORDER_STATUS_ACCEPTED")
	p.until(t, "live", `document.getElementById('order-conn').textContent === 'Live'`, 10*time.Second)

	p.expect("net::ERR_CONNECTION_REFUSED")
	p.expect("ERR_INCOMPLETE_CHUNKED_ENCODING")
	s.Stop("gateway")
	p.until(t, "the reconnecting banner", `!document.getElementById('order-banner').hidden`, 15*time.Second)
	p.shots(t, "storefront-order-reconnecting")
	// Meanwhile the kitchen starts it, straight over gRPC.
	conn, err := grpc.NewClient(s.GRPCAddr("kitchen"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+s.Token("kitchen", "kim")), 10*time.Second)
	defer cancel()
	if _, err := kitchenv1.NewKitchenServiceClient(conn).StartTicket(ctx, &kitchenv1.StartTicketRequest{Id: o.GetId()}); err != nil {
		t.Fatalf("StartTicket over gRPC: %v", err)
	}
	s.StartService("gateway")
	p.stepDone(t, "ORDER_STATUS_BAKING")
	p.until(t, "live again", `document.getElementById('order-banner').hidden && document.getElementById('order-conn').textContent === 'Live'`, 15*time.Second)
}

// storefrontRejected: the kitchen's reason for a rejection reaches the
// customer's page live.
func storefrontRejected(t *testing.T, s *stack.Stack, b *browser) {
	c := newCustomer("rejected")
	p := b.page(t, "customer")
	p.register(t, s.URL(""), c, false)
	o := place(t, s, tokenOf(t, p), pickupBody("diavola", "SIZE_MEDIUM"), "Idempotency-Key", "rejected-1")
	p.do(t, "follow the order", chromedp.Navigate(s.URL("/?rejected#/orders/"+o.GetId())))
	p.stepDone(t, "ORDER_STATUS_ACCEPTED")
	code, raw, _ := s.Do(http.MethodPost, "/v1/kitchen/tickets/"+o.GetId()+":reject", s.Token("kitchen", "kim"), map[string]any{"reason": "Out of hot salami"})
	if code != http.StatusOK {
		t.Fatalf("reject = %d %s", code, raw)
	}
	p.stepDone(t, "ORDER_STATUS_REJECTED")
	if got := p.text(t, `#reject-reason`); !strings.Contains(got, "Out of hot salami") {
		t.Errorf("rejection shown as %q, want the kitchen's reason", got)
	}
	if !eval[bool](t, p, `document.getElementById('cancel').hidden`) {
		t.Errorf("cancel offered on a rejected order")
	}
	p.shots(t, "storefront-order-rejected")
}

// setHash moves the page to another view without reloading it, as a click
// on a link of the page does: what the page keeps in memory stays.
func (p *page) setHash(t *testing.T, hash string) {
	t.Helper()
	p.do(t, "go to "+hash, chromedp.Evaluate[chromedp.Void](`location.hash = `+jsString(hash)))
}

// storefrontTwoCustomers: one customer signs out and another signs in in
// the same tab, as on a shared computer. Nothing of the first one's shows
// to the second: not her delivery address or note on the checkout form,
// not her orders, not her name, even when her profile check answers late.
func storefrontTwoCustomers(t *testing.T, s *stack.Stack, b *browser) {
	first, second := newCustomer("first"), newCustomer("second")
	if code, raw, _ := s.Do(http.MethodPost, "/v1/customers", "", map[string]any{
		"name": second.name, "email": second.email, "phone": second.phone, "password": second.password}); code != http.StatusOK {
		t.Fatalf("register over REST = %d %s", code, raw)
	}
	p := b.page(t, "customer")
	p.register(t, s.URL(""), first, true)
	theirs := place(t, s, tokenOf(t, p), pickupBody("margherita", "SIZE_SMALL"), "Idempotency-Key", uniq("two"))

	// The page is reopened; its check of the stored token (GET
	// /v1/customers/me) is held back until the second customer is in.
	paused := p.hold(t, "*/v1/customers/me", fetch.RequestStageRequest)
	p.do(t, "reopen the storefront", chromedp.Navigate(s.URL("/?two#/")), chromedp.WaitVisible(chromedp.CSS(`#pz-margherita`)))
	var held fetch.RequestID
	select {
	case held = <-paused:
	case <-time.After(15 * time.Second):
		t.Fatal("the page never checked its stored token")
	}

	p.build(t, "funghi", "SIZE_SMALL")
	p.checkout(t)
	if line1 := eval[string](t, p, `document.getElementById('co-line1').value`); line1 != "12 Analytical Row" {
		t.Fatalf("first customer's address line 1 = %q, want it prefilled", line1)
	}
	p.do(t, "write a note", chromedp.SendKeys(chromedp.CSS(`#co-note`), "Ring twice"))
	p.setHash(t, "#/orders")
	p.until(t, "the first customer's order", `document.querySelector('#orders-list li[data-id="`+theirs.GetId()+`"]') !== null`, 15*time.Second)

	p.do(t, "sign out", chromedp.Click(chromedp.CSS(`#signout`)), chromedp.WaitVisible(chromedp.CSS(`#nav-signin`)))
	p.setHash(t, "#/signin")
	p.signIn(t, second)
	p.until(t, "the second customer signed in", `!document.getElementById('signout').hidden`, 20*time.Second)
	p.release(t, "let the first customer's profile check answer", held)
	p.until(t, "the profile check answered", `performance.getEntriesByType('resource').some((e) => e.name.endsWith('/v1/customers/me'))`, 15*time.Second)
	p.do(t, "let the page handle it", chromedp.Sleep(300*time.Millisecond))
	if who := p.text(t, `#who`); !strings.Contains(who, second.name) {
		t.Errorf("header says %q after the second customer signed in, want %q", who, second.name)
	}

	// Her order list: the first customer's orders are gone before the
	// second one's arrive.
	stale, err := chromedp.Run(p.ctx, chromedp.Evaluate[bool](`new Promise((resolve) => {
		addEventListener('hashchange', () => resolve(document.querySelector('#orders-list li[data-id="`+theirs.GetId()+`"]') !== null), {once: true});
		location.hash = '#/orders';
	})`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("open my orders: %v", err)
	}
	if stale {
		t.Errorf("the second customer's order list shows the first customer's order")
	}
	p.until(t, "no orders yet", `!document.getElementById('orders-empty').hidden`, 15*time.Second)

	// Her checkout: empty, or her own address; never the first customer's.
	p.setHash(t, "#/")
	p.build(t, "margherita", "SIZE_SMALL")
	p.checkout(t)
	for _, id := range []string{"co-line1", "co-postal", "co-city", "co-note"} {
		if v := eval[string](t, p, `document.getElementById('`+id+`').value`); v != "" {
			t.Errorf("the second customer's checkout shows #%s = %q, the first customer's", id, v)
		}
	}
}

// storefrontNotMine: a link to another customer's order (or to none) says
// that the order is not found, once, instead of trying to follow it for
// ever behind a reconnecting banner.
func storefrontNotMine(t *testing.T, s *stack.Stack, b *browser) {
	owner := newCustomer("owner")
	code, raw, _ := s.Do(http.MethodPost, "/v1/customers", "", map[string]any{
		"name": owner.name, "email": owner.email, "phone": owner.phone, "password": owner.password})
	var reg struct {
		Token string `json:"token"`
	}
	if code != http.StatusOK || json.Unmarshal(raw, &reg) != nil || reg.Token == "" {
		t.Fatalf("register over REST = %d %s", code, raw)
	}
	theirs := place(t, s, reg.Token, pickupBody("margherita", "SIZE_SMALL"), "Idempotency-Key", uniq("notmine"))

	p := b.page(t, "customer")
	p.register(t, s.URL(""), newCustomer("nosy"), false)
	p.setHash(t, "#/orders/"+theirs.GetId())
	p.until(t, "the order said not found", `/not found/i.test(document.getElementById('order-body').textContent)`, 10*time.Second)
	if !eval[bool](t, p, `document.getElementById('order-banner').hidden`) {
		t.Errorf("a reconnecting banner on an order that is not found: %q", p.text(t, `#order-banner`))
	}
	p.do(t, "wait past two backoffs", chromedp.Sleep(3500*time.Millisecond))
	if n := eval[int](t, p, `performance.getEntriesByType('resource').filter((e) => e.name.includes(':watch')).length`); n != 1 {
		t.Errorf("%d watch calls for an order that is not found, want 1", n)
	}
	if !eval[bool](t, p, `document.getElementById('cancel').hidden`) {
		t.Errorf("cancel offered on an order that is not found")
	}
}

// announced reports whether a live region of the page (one a screen reader
// reads out when it changes) says text.
func announced(text string) string {
	return `[...document.querySelectorAll('[aria-live]:not([aria-live=off]), [role=status], [role=alert]')].some((e) => e.textContent.includes(` + jsString(text) + `))`
}

// storefrontOrderAnnounced: a customer who cannot see the screen hears
// each step of her order as it happens, and keeps her place on the page
// after cancelling from the keyboard.
func storefrontOrderAnnounced(t *testing.T, s *stack.Stack, b *browser) {
	p := b.page(t, "customer")
	p.register(t, s.URL(""), newCustomer("heard"), false)
	token := tokenOf(t, p)

	o := place(t, s, token, pickupBody("funghi", "SIZE_SMALL"), "Idempotency-Key", uniq("heard"))
	p.setHash(t, "#/orders/"+o.GetId())
	p.stepDone(t, "ORDER_STATUS_ACCEPTED")
	post(t, s, "/v1/kitchen/tickets/"+o.GetId()+":start", s.Token("kitchen", "kim"), http.StatusOK)
	p.stepDone(t, "ORDER_STATUS_BAKING")
	p.until(t, "the new step read out", announced("In the oven"), 5*time.Second)

	o = place(t, s, token, pickupBody("funghi", "SIZE_SMALL"), "Idempotency-Key", uniq("heard"))
	p.setHash(t, "#/orders/"+o.GetId())
	p.stepDone(t, "ORDER_STATUS_ACCEPTED")
	p.do(t, "cancel from the keyboard", chromedp.WaitVisible(chromedp.CSS(`#cancel`)),
		chromedp.Focus(chromedp.CSS(`#cancel`)), chromedp.KeyEvent(kb.Enter))
	p.stepDone(t, "ORDER_STATUS_CANCELLED")
	p.until(t, "the cancellation read out", announced("Cancelled"), 5*time.Second)
	const onOrderPage = `document.activeElement !== document.body && document.activeElement.closest('#view-order') !== null`
	if !eval[bool](t, p, onOrderPage) {
		t.Errorf("focus after cancelling is on %q, want it kept on the order page", eval[string](t, p, `document.activeElement.outerHTML.slice(0, 80)`))
	}

	// The live stream can bring the cancellation before the cancel call's
	// answer: the answer is held back here until the page shows it.
	o = place(t, s, token, pickupBody("funghi", "SIZE_SMALL"), "Idempotency-Key", uniq("heard"))
	p.setHash(t, "#/orders/"+o.GetId())
	p.stepDone(t, "ORDER_STATUS_ACCEPTED")
	paused := p.hold(t, "*:cancel", fetch.RequestStageResponse)
	p.do(t, "cancel from the keyboard", chromedp.WaitVisible(chromedp.CSS(`#cancel`)),
		chromedp.Focus(chromedp.CSS(`#cancel`)), chromedp.KeyEvent(kb.Enter))
	var held fetch.RequestID
	select {
	case held = <-paused:
	case <-time.After(15 * time.Second):
		t.Fatal("the page never sent the cancel call")
	}
	p.stepDone(t, "ORDER_STATUS_CANCELLED")
	if !eval[bool](t, p, onOrderPage) {
		t.Errorf("focus once the stream shows the cancellation, its call unanswered, is on %q, want it kept on the order page",
			eval[string](t, p, `document.activeElement.outerHTML.slice(0, 80)`))
	}
	p.release(t, "let the cancel call answer", held)
	p.until(t, "the cancel call answered", `!document.getElementById('cancel').disabled`, 10*time.Second)
	if !eval[bool](t, p, onOrderPage) {
		t.Errorf("focus after the cancel call answered is on %q, want it kept on the order page",
			eval[string](t, p, `document.activeElement.outerHTML.slice(0, 80)`))
	}

	// A customer who moves on while the cancel call runs keeps her place:
	// neither the stream nor the answer takes it back to the heading.
	o = place(t, s, token, pickupBody("funghi", "SIZE_SMALL"), "Idempotency-Key", uniq("heard"))
	p.setHash(t, "#/orders/"+o.GetId())
	p.stepDone(t, "ORDER_STATUS_ACCEPTED")
	paused = p.hold(t, "*:cancel", fetch.RequestStageResponse)
	p.do(t, "cancel from the keyboard", chromedp.WaitVisible(chromedp.CSS(`#cancel`)),
		chromedp.Focus(chromedp.CSS(`#cancel`)), chromedp.KeyEvent(kb.Enter))
	select {
	case held = <-paused:
	case <-time.After(15 * time.Second):
		t.Fatal("the page never sent the cancel call")
	}
	const allOrders = `#view-order a[href="#/orders"]`
	p.do(t, "move on to All my orders", chromedp.Focus(chromedp.CSS(allOrders)))
	p.stepDone(t, "ORDER_STATUS_CANCELLED")
	p.release(t, "let the cancel call answer", held)
	p.until(t, "the cancel call answered", `!document.getElementById('cancel').disabled`, 10*time.Second)
	if !eval[bool](t, p, `document.activeElement === document.querySelector('`+allOrders+`')`) {
		t.Errorf("focus after moving on while the cancel call ran is on %q, want it left on All my orders",
			eval[string](t, p, `document.activeElement.outerHTML.slice(0, 80)`))
	}
}

// kitchenKeyboard: a cook working the display from a keyboard keeps her
// place while tickets arrive, and after pressing Start lands on the same
// ticket's Ready button.
func kitchenKeyboard(t *testing.T, s *stack.Stack, b *browser) {
	c := newCustomer("cook")
	code, raw, _ := s.Do(http.MethodPost, "/v1/customers", "", map[string]any{
		"name": c.name, "email": c.email, "phone": c.phone, "password": c.password})
	var reg struct {
		Token string `json:"token"`
	}
	if code != http.StatusOK || json.Unmarshal(raw, &reg) != nil || reg.Token == "" {
		t.Fatalf("register over REST = %d %s", code, raw)
	}
	kitchen := b.staff(t, s, "kitchen", s.Token("kitchen", "kim"), "/kitchen")
	first := place(t, s, reg.Token, pickupBody("margherita", "SIZE_SMALL"), "Idempotency-Key", uniq("cook"))
	start := `#col-queued li[data-id="` + first.GetId() + `"] button.start`
	kitchen.do(t, "focus Start", chromedp.WaitVisible(chromedp.CSS(start)), chromedp.Focus(chromedp.CSS(start)))

	next := place(t, s, reg.Token, pickupBody("funghi", "SIZE_SMALL"), "Idempotency-Key", uniq("cook"))
	kitchen.do(t, "the next ticket arrives", chromedp.WaitVisible(chromedp.CSS(`#col-queued li[data-id="`+next.GetId()+`"]`)))
	if !eval[bool](t, kitchen, `document.activeElement.matches(`+jsString(start)+`)`) {
		t.Errorf("a new ticket took the focus from Start to %q", eval[string](t, kitchen, `document.activeElement.outerHTML.slice(0, 80)`))
	}

	kitchen.do(t, "press Start", chromedp.Focus(chromedp.CSS(start)), chromedp.KeyEvent(kb.Enter))
	kitchen.do(t, "the ticket baking", chromedp.WaitVisible(chromedp.CSS(`#col-baking li[data-id="`+first.GetId()+`"] button.ready`)))
	kitchen.until(t, "focus on its Ready button", `document.activeElement.matches('#col-baking li[data-id="`+first.GetId()+`"] button.ready')`, 5*time.Second)
}

// boardMemory: a kitchen display or delivery board left open for days keeps
// a bounded record of the items it has seen, whatever the number of orders,
// and still ignores a late line about an item that is open.
func boardMemory(t *testing.T, s *stack.Stack, b *browser) {
	p := b.staff(t, s, "kitchen", s.Token("kitchen", "kim"), "/kitchen")
	p.until(t, "the display", `document.readyState === 'complete'`, 15*time.Second)
	got, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](`import('/web/board.js').then(({ LiveSet }) => {
		const set = new LiveSet({ isOpen: (it) => it.status === 'OPEN', onClosed: () => {} });
		set.apply({ id: 'kept', revision: 5, status: 'OPEN' });
		for (let i = 0; i < 20000; i++) {
			set.apply({ id: 'o' + i, revision: 1, status: 'OPEN' });
			set.apply({ id: 'o' + i, revision: 2, status: 'DONE' });
		}
		set.apply({ id: 'kept', revision: 4, status: 'DONE' }); // late: must not close it
		return JSON.stringify({ revisions: set.revisions.size, fresh: [...set.fresh].filter((id) => !set.items.has(id)).length, kept: set.items.has('kept') });
	})`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("LiveSet in the page: %v", err)
	}
	var r struct {
		Revisions, Fresh int
		Kept             bool
	}
	if err := json.Unmarshal([]byte(got), &r); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	if r.Revisions > 5000 || r.Fresh > 0 || !r.Kept {
		t.Errorf("after 20,000 items came and went: %d revisions and %d highlights of closed items kept, open item kept %v; want at most 5,000, none, and true", r.Revisions, r.Fresh, r.Kept)
	}
}

// storefrontSlowMenu: on a network where the menu takes 10 s to answer, the
// page's 4 s revalidation waits for the request in flight instead of piling
// more on top of it.
func storefrontSlowMenu(t *testing.T, s *stack.Stack, b *browser) {
	p := b.page(t, "customer")
	p.do(t, "open the storefront", chromedp.Navigate(s.URL("/")), chromedp.WaitVisible(chromedp.CSS(`#tp-anchovies`)))
	eval[bool](t, p, `(() => {
		window.menuCalls = 0;
		const plain = window.fetch;
		window.fetch = (url, opts) => {
			if (String(url).endsWith('/v1/menu')) {
				window.menuCalls++;
				return new Promise((resolve) => setTimeout(resolve, 10000)).then(() => plain(url, opts));
			}
			return plain(url, opts);
		};
		return true;
	})()`)
	p.do(t, "let the timer tick", chromedp.Sleep(11*time.Second))
	if n := eval[int](t, p, `window.menuCalls`); n != 1 {
		t.Errorf("%d menu requests in 11 s while each takes 10 s, want 1: revalidations pile up", n)
	}
}
