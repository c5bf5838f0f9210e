package edge_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	deliveryv1 "github.com/pizzashop/pizzashop/proto/pizzashop/delivery/v1"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
)

// The browser tests drive the real pages in headless Chromium against the
// gateway and doubles of the kitchen and delivery services. They need the
// Debian package chromium and skip without it.

const chromiumPath = "/usr/bin/chromium"

// browserPage is one tab of a headless Chromium for one test.
type browserPage struct {
	ctx context.Context

	mu       sync.Mutex
	console  []string // everything the page logged
	problems []string // exceptions and Content-Security-Policy violations
}

func newBrowserPage(t *testing.T) *browserPage {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test: skipped with -short")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("browser test: no Chromium at %s; install it with apt-get install -y chromium to run this test", chromiumPath)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800), // a landscape kitchen tablet
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	tab, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(cancelTab)
	ctx, cancel := context.WithTimeout(tab, 60*time.Second)
	t.Cleanup(cancel)

	p := &browserPage{ctx: ctx}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			p.mu.Lock()
			p.console = append(p.console, m.String())
			if m.IsException() || m.Source == "security" || strings.Contains(m.Text, "Content Security Policy") {
				p.problems = append(p.problems, m.String())
			}
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, line := range p.console {
			t.Logf("page console: %s", line)
		}
		for _, line := range p.problems {
			t.Errorf("page error: %s", line)
		}
	})
	return p
}

// do runs steps, failing the test with what as context.
func (p *browserPage) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(p.ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// text returns the text of the element sel selects.
func (p *browserPage) text(t *testing.T, sel string) string {
	t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// ids returns the data-id of every element sel selects, in page order.
func (p *browserPage) ids(t *testing.T, sel string) []string {
	t.Helper()
	ids, err := chromedp.Run(p.ctx, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll(`+jsString(sel)+`), (e) => e.dataset.id)`))
	if err != nil {
		t.Fatalf("ids of %s: %v", sel, err)
	}
	return ids
}

// screenshot saves the whole page as <temp>/pizzashop-screenshots/name.png
// and logs where, so that a person can look at it. Each run overwrites the
// last one's, so they do not pile up.
func (p *browserPage) screenshot(t *testing.T, name string) {
	t.Helper()
	p.save(t, name, chromedp.FullScreenshot(100))
}

// screenshotTop is screenshot of the first screen only, for a page too
// long to capture whole: the whole /docs page is about 38,000 pixels high,
// a 6MB PNG that took Chromium more than 40s on a loaded machine.
func (p *browserPage) screenshotTop(t *testing.T, name string) {
	t.Helper()
	p.save(t, name, chromedp.CaptureScreenshot())
}

func (p *browserPage) save(t *testing.T, name string, shot chromedp.Action[[]byte]) {
	t.Helper()
	png, err := chromedp.Run(p.ctx, shot)
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join(os.TempDir(), "pizzashop-screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s: %s", name, path)
}

// signIn opens page with token already in the tab's sessionStorage.
func (p *browserPage) signIn(t *testing.T, base, role, token, page string) {
	t.Helper()
	p.do(t, "sign in",
		chromedp.Navigate(base+"/"),
		chromedp.Evaluate[chromedp.Void](`sessionStorage.setItem("pizzashop.`+role+`.token", `+jsString(token)+`)`),
		chromedp.Navigate(base+page),
	)
}

func jsString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func ticket(id, pizza string, size commonv1.Size, toppings []string, customer string, f orderv1.Fulfillment, ordered time.Duration) *kitchenv1.Ticket {
	now := time.Now()
	return &kitchenv1.Ticket{
		Id: id, Status: kitchenv1.TicketStatus_TICKET_STATUS_QUEUED, PizzaName: pizza, Size: size,
		ToppingNames: toppings, Fulfillment: f, CustomerName: customer,
		OrderTime:          timestamppb.New(now.Add(-ordered)),
		CreateTime:         timestamppb.New(now.Add(-ordered)),
		UpdateTime:         timestamppb.New(now.Add(-ordered)),
		EstimatedReadyTime: timestamppb.New(now.Add(15*time.Minute - ordered)),
		Revision:           1,
	}
}

func TestKitchenDisplayInBrowser(t *testing.T) {
	k1 := ticket("ord-k1", "Margherita", commonv1.Size_SIZE_LARGE, []string{"Basil", "Olives"}, "Ada",
		orderv1.Fulfillment_FULFILLMENT_DELIVERY, 9*time.Minute)
	k2 := ticket("ord-k2", "Diavola", commonv1.Size_SIZE_MEDIUM, nil, "Bob <b>the builder</b>",
		orderv1.Fulfillment_FULFILLMENT_PICKUP, 4*time.Minute)
	k2.Note = `Well done, please — <img src=x onerror="window.pwned=1">not burnt`
	k3 := ticket("ord-k3", "Funghi", commonv1.Size_SIZE_SMALL, []string{"Mushrooms"}, "Cleo",
		orderv1.Fulfillment_FULFILLMENT_PICKUP, 2*time.Minute)
	k4 := ticket("ord-k4", "Quattro Formaggi", commonv1.Size_SIZE_LARGE, []string{"Ham", "Peppers", "Onions"}, "Dev",
		orderv1.Fulfillment_FULFILLMENT_DELIVERY, 6*time.Minute)
	k4.Status = kitchenv1.TicketStatus_TICKET_STATUS_BAKING
	k4.EstimatedReadyTime = timestamppb.New(time.Now().Add(-time.Minute)) // late

	// The first watch sends k2 before k1: the page orders by order time.
	// The second, after a reconnect, no longer has k2 (cancelled meanwhile).
	d := newKitchenDouble([]*kitchenv1.Ticket{k2, k1}, []*kitchenv1.Ticket{k3, k4})
	s := newStack(t, withKitchen(t, d))
	p := newBrowserPage(t) // after the stack: its cleanup closes the page first

	// The home page links the display.
	p.do(t, "open the home page", chromedp.Navigate(s.url+"/"), chromedp.WaitVisible(chromedp.CSS(`a[href="/kitchen"]`)))
	p.screenshot(t, "index")
	p.do(t, "follow the link to the kitchen display",
		chromedp.Click(chromedp.CSS(`a[href="/kitchen"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#signin-form`)))

	p.signIn(t, s.url, "kitchen", "kitchen-token", "/kitchen")

	// The snapshot: both tickets queued, in arrival order.
	p.do(t, "wait for the snapshot",
		chromedp.WaitVisible(chromedp.CSS(`#col-queued li[data-id="ord-k1"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#col-queued li[data-id="ord-k2"]`)))
	if got, want := p.ids(t, "#col-queued li"), []string{"ord-k1", "ord-k2"}; !slices.Equal(got, want) {
		t.Errorf("QUEUED column = %v, want %v (arrival order)", got, want)
	}
	card := p.text(t, `#col-queued li[data-id="ord-k1"]`)
	for _, want := range []string{"Margherita", "Large", "Basil, Olives", "Ada", "Delivery", "ordered 9 min ago", "Start", "Reject"} {
		if !strings.Contains(card, want) {
			t.Errorf("ticket ord-k1 card %q does not show %q", card, want)
		}
	}
	// Data is text, never markup.
	card = p.text(t, `#col-queued li[data-id="ord-k2"]`)
	for _, want := range []string{"Bob <b>the builder</b>", `<img src=x onerror="window.pwned=1">not burnt`, "Pickup", "No extra toppings"} {
		if !strings.Contains(card, want) {
			t.Errorf("ticket ord-k2 card %q does not show %q as text", card, want)
		}
	}
	injected, err := chromedp.Run(p.ctx, chromedp.Evaluate[bool](
		`document.querySelector('#board b, #board img[src="x"]') !== null || window.pwned !== undefined`))
	if err != nil || injected {
		t.Errorf("ticket data was inserted as markup (%v)", err)
	}
	if conn := p.text(t, "#conn"); conn != "Live" {
		t.Errorf("connection indicator = %q, want Live", conn)
	}
	p.screenshot(t, "kitchen-snapshot")

	// One change: ord-k1 goes into the oven.
	baking := ticket("ord-k1", "Margherita", commonv1.Size_SIZE_LARGE, []string{"Basil", "Olives"}, "Ada",
		orderv1.Fulfillment_FULFILLMENT_DELIVERY, 9*time.Minute)
	baking.Status, baking.Revision = kitchenv1.TicketStatus_TICKET_STATUS_BAKING, 2
	d.changes <- baking
	p.do(t, "wait for ord-k1 to move to BAKING",
		chromedp.WaitVisible(chromedp.CSS(`#col-baking li[data-id="ord-k1"] button.ready`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#col-queued li[data-id="ord-k1"]`)))
	if got := p.ids(t, "#col-queued li"); !slices.Equal(got, []string{"ord-k2"}) {
		t.Errorf("QUEUED column after the change = %v, want [ord-k2]", got)
	}
	p.screenshot(t, "kitchen-live")
	// A tablet held upright keeps both columns.
	p.do(t, "turn the tablet", chromedp.EmulateViewport(800, 1280))
	p.screenshot(t, "kitchen-portrait")
	p.do(t, "turn the tablet back", chromedp.EmulateViewport(1280, 800))

	// Ready: the ticket leaves the board for the recently-done strip.
	p.do(t, "mark ord-k1 ready",
		chromedp.Click(chromedp.CSS(`#col-baking li[data-id="ord-k1"] button.ready`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#col-baking li[data-id="ord-k1"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#recent li[data-id="ord-k1"]`)))

	// A refused action shows the API's message.
	d.mu.Lock()
	d.errs["start ord-k2"] = statusErr(codes.FailedPrecondition, "ticket ord-k2 was cancelled by the customer", reason("INVALID_TRANSITION"))
	d.mu.Unlock()
	p.do(t, "start ord-k2",
		chromedp.Click(chromedp.CSS(`#col-queued li[data-id="ord-k2"] button.start`)),
		chromedp.WaitVisible(chromedp.CSS(`.toast.error`)))
	if msg := p.text(t, ".toast.error"); !strings.Contains(msg, "ticket ord-k2 was cancelled by the customer") {
		t.Errorf("error toast = %q, want the API's message", msg)
	}
	p.screenshot(t, "kitchen-error")
	p.do(t, "dismiss the toast",
		chromedp.Click(chromedp.CSS(`.toast.error`)),
		chromedp.WaitNotPresent(chromedp.CSS(`.toast`)))

	// The stream fails: the page says so, reconnects, and catches up from the
	// new snapshot, dropping ord-k2, which it did not re-send.
	d.end <- status.Error(codes.Unavailable, "kitchen restarting")
	p.do(t, "wait for the stream to fail", chromedp.WaitVisible(chromedp.CSS(`#banner`)))
	p.screenshot(t, "kitchen-reconnecting")
	p.do(t, "wait for the reconnect",
		chromedp.WaitVisible(chromedp.CSS(`#col-queued li[data-id="ord-k3"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#col-baking li[data-id="ord-k4"]`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#col-queued li[data-id="ord-k2"]`)),
		chromedp.WaitNotVisible(chromedp.CSS(`#banner`)))
	if eta := p.text(t, `#col-baking li[data-id="ord-k4"] .eta.late`); !strings.HasPrefix(eta, "due ") {
		t.Errorf("late ticket ord-k4 shows %q, want it due", eta)
	}
	if n, md := d.watchCount(); n != 2 || first(md.Get("authorization")) != "Bearer kitchen-token" {
		t.Errorf("watches = %d, last with authorization %q; want 2 with Bearer kitchen-token", n, md.Get("authorization"))
	}

	// Reject asks for the reason the customer sees.
	p.do(t, "reject ord-k3",
		chromedp.Click(chromedp.CSS(`#col-queued li[data-id="ord-k3"] button.reject`)),
		chromedp.WaitVisible(chromedp.CSS(`#reject-reason`)),
		chromedp.SendKeys(chromedp.CSS(`#reject-reason`), "Out of mushrooms"))
	p.screenshot(t, "kitchen-reject")
	p.do(t, "confirm the rejection",
		chromedp.Click(chromedp.CSS(`#reject-form button[type=submit]`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#col-queued li[data-id="ord-k3"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#recent li[data-id="ord-k3"]`)))
	if got := p.text(t, `#recent li[data-id="ord-k3"]`); !strings.Contains(got, "Rejected (Out of mushrooms)") {
		t.Errorf("recently done ord-k3 = %q, want it rejected with the reason", got)
	}

	want := []staffCall{
		{"ready", "ord-k1", "", "Bearer kitchen-token"},
		{"start", "ord-k2", "", "Bearer kitchen-token"},
		{"reject", "ord-k3", "Out of mushrooms", "Bearer kitchen-token"},
	}
	if got := d.seenCalls(); !slices.Equal(got, want) {
		t.Errorf("kitchen calls = %+v, want %+v", got, want)
	}
	p.screenshot(t, "kitchen-after")
}

func TestDeliveryBoardInBrowser(t *testing.T) {
	ready := func(ago time.Duration) *timestamppb.Timestamp { return timestamppb.New(time.Now().Add(-ago)) }
	usd := func(minor int64) *commonv1.Money { return &commonv1.Money{CurrencyCode: "USD", AmountMinor: minor} }
	d1 := &deliveryv1.Delivery{
		Id: "ord-d1", Status: deliveryv1.DeliveryStatus_DELIVERY_STATUS_WAITING, Fulfillment: orderv1.Fulfillment_FULFILLMENT_DELIVERY,
		CustomerName: "Ada Lovelace", CustomerPhone: "+1 555 0100", Summary: "Large Margherita + basil, olives",
		Address:   &commonv1.Address{Line1: "12 Analytical Row", Line2: "Flat 3", City: "Springfield", PostalCode: "12345", Instructions: "Ring twice"},
		AmountDue: usd(2350), PaymentMethod: orderv1.PaymentMethod_PAYMENT_METHOD_CASH, ReadyTime: ready(3 * time.Minute), Revision: 1,
	}
	d2 := &deliveryv1.Delivery{
		Id: "ord-d2", Status: deliveryv1.DeliveryStatus_DELIVERY_STATUS_OUT_FOR_DELIVERY, Fulfillment: orderv1.Fulfillment_FULFILLMENT_DELIVERY,
		CustomerName: "Bob", CustomerPhone: "+1 555 0101", Summary: "Medium Diavola",
		Address:   &commonv1.Address{Line1: "7 Elm Street", City: "Springfield", PostalCode: "12346"},
		AmountDue: usd(1450), PaymentMethod: orderv1.PaymentMethod_PAYMENT_METHOD_CARD, ReadyTime: ready(14 * time.Minute),
		DispatchTime: ready(8 * time.Minute), CourierId: "dan", Revision: 2,
	}
	d3 := &deliveryv1.Delivery{
		Id: "ord-d3", Status: deliveryv1.DeliveryStatus_DELIVERY_STATUS_WAITING, Fulfillment: orderv1.Fulfillment_FULFILLMENT_PICKUP,
		CustomerName: "Cleo", CustomerPhone: "+1 555 0102", Summary: "Small Funghi + mushrooms",
		AmountDue: usd(1050), PaymentMethod: orderv1.PaymentMethod_PAYMENT_METHOD_CARD, ReadyTime: ready(time.Minute), Revision: 1,
	}
	d := newDeliveryDouble(d1, d2, d3)
	d.token = "courier-token"
	s := newStack(t, withDelivery(t, d))
	p := newBrowserPage(t) // after the stack: its cleanup closes the page first

	// Sign in through the form: a refused token brings the form back with
	// the API's message; a good one opens the board.
	p.do(t, "sign in with a bad token",
		chromedp.Navigate(s.url+"/delivery"),
		chromedp.WaitVisible(chromedp.CSS(`#signin-form`)),
		chromedp.SendKeys(chromedp.CSS(`#token`), "not-a-courier"),
		chromedp.Click(chromedp.CSS(`#signin-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#signin-error`)))
	if msg := p.text(t, "#signin-error"); !strings.Contains(msg, "invalid or expired token") {
		t.Errorf("sign-in error = %q, want the API's message", msg)
	}
	p.screenshot(t, "delivery-signin")
	p.do(t, "sign in",
		chromedp.SendKeys(chromedp.CSS(`#token`), "courier-token"),
		chromedp.Click(chromedp.CSS(`#signin-form button[type=submit]`)))

	p.do(t, "wait for the snapshot",
		chromedp.WaitVisible(chromedp.CSS(`#group-waiting li[data-id="ord-d1"] button.dispatch`)),
		chromedp.WaitVisible(chromedp.CSS(`#group-out li[data-id="ord-d2"] button.done`)),
		chromedp.WaitVisible(chromedp.CSS(`#col-pickup li[data-id="ord-d3"] button.done`)))
	card := p.text(t, `#group-waiting li[data-id="ord-d1"]`)
	for _, want := range []string{"Large Margherita + basil, olives", "Ada Lovelace", "+1 555 0100", "12 Analytical Row", "12345 Springfield", "Ring twice", "$23.50", "Cash", "Dispatch"} {
		if !strings.Contains(card, want) {
			t.Errorf("delivery ord-d1 card %q does not show %q", card, want)
		}
	}
	if card := p.text(t, `#group-out li[data-id="ord-d2"]`); !strings.Contains(card, "with dan") || !strings.Contains(card, "Card") {
		t.Errorf("delivery ord-d2 card %q does not show its courier and payment", card)
	}
	p.screenshot(t, "delivery-snapshot")

	p.do(t, "dispatch ord-d1 and hand over ord-d3",
		chromedp.Click(chromedp.CSS(`#group-waiting li[data-id="ord-d1"] button.dispatch`)),
		chromedp.WaitVisible(chromedp.CSS(`#group-out li[data-id="ord-d1"] button.done`)),
		chromedp.Click(chromedp.CSS(`#col-pickup li[data-id="ord-d3"] button.done`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#col-pickup li[data-id="ord-d3"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#recent li[data-id="ord-d3"]`)))

	// A change from the stream: another courier delivered ord-d2.
	delivered := &deliveryv1.Delivery{
		Id: "ord-d2", Status: deliveryv1.DeliveryStatus_DELIVERY_STATUS_DELIVERED, Fulfillment: orderv1.Fulfillment_FULFILLMENT_DELIVERY,
		CustomerName: "Bob", Summary: "Medium Diavola", CompleteTime: timestamppb.Now(), Revision: 3,
	}
	d.changes <- delivered
	p.do(t, "wait for ord-d2 to be delivered",
		chromedp.WaitNotPresent(chromedp.CSS(`#group-out li[data-id="ord-d2"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#recent li[data-id="ord-d2"]`)))

	want := []staffCall{
		{verb: "dispatch", id: "ord-d1", authorization: "Bearer courier-token"},
		{verb: "pickup", id: "ord-d3", authorization: "Bearer courier-token"},
	}
	if got := d.seenCalls(); !slices.Equal(got, want) {
		t.Errorf("delivery calls = %+v, want %+v", got, want)
	}
	d.mu.Lock()
	filters := slices.Clone(d.filters)
	d.mu.Unlock()
	if !slices.Equal(filters, []string{"FULFILLMENT_UNSPECIFIED"}) {
		t.Errorf("watch fulfillment filters = %v, want one watch of both kinds", filters)
	}
	p.screenshot(t, "delivery-after")
}
