package menuapi_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/auth"
	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/grpcx"
	"github.com/pizzashop/pizzashop/pkg/grpcx/grpcxtest"
	"github.com/pizzashop/pizzashop/pkg/logging"
	"github.com/pizzashop/pizzashop/pkg/natsx"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	"github.com/pizzashop/pizzashop/services/menu/internal/menuapi"
	"github.com/pizzashop/pizzashop/services/menu/internal/menudb"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

const secret = "test-secret-at-least-16"

// env is a menu service on loopback gRPC over a real store, with its outbox
// relay publishing to a real JetStream.
type env struct {
	client menuv1.MenuServiceClient
	signer *auth.Signer
	db     *mongo.Database
	stream jetstream.Stream
	start  uint64 // the stream's last sequence before the test
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	_, db := devstack.MongoDatabase(t)
	store := menudb.New(db, "EUR")
	if err := store.Init(ctx, time.Now()); err != nil {
		t.Fatalf("Init: %v", err)
	}

	bus, err := natsx.Connect(devstack.NATS(t), "menuapi-test", logging.Discard())
	if err != nil {
		t.Fatalf("natsx.Connect: %v", err)
	}
	t.Cleanup(bus.Close)
	if err := bus.EnsureStream(ctx, menuapi.Stream); err != nil {
		t.Fatalf("EnsureStream: %v", err)
	}
	stream, err := bus.JS.Stream(ctx, menuapi.Stream.Name)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	relay := outbox.NewRelay(bus, logging.Discard(), store.Collections())
	store.Tracker = relay
	wg.Go(func() { _ = relay.Run(ctx) })

	signer, err := auth.NewSigner(secret)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	srv := grpcx.NewServer(logging.Discard(), signer, menuapi.Policy)
	menuv1.RegisterMenuServiceServer(srv, menuapi.NewServer(store))
	conn := grpcxtest.Serve(t, ctx, &wg, srv)

	// Stop the relay and the server before the bus, NATS and the store go:
	// cleanups run last registered first.
	t.Cleanup(func() { cancel(); wg.Wait() })

	e := &env{client: menuv1.NewMenuServiceClient(conn), signer: signer, db: db, stream: stream}
	e.start = e.lastSeq(t)
	return e
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// as returns a context whose calls carry a token for role.
func (e *env) as(t *testing.T, role auth.Role) context.Context {
	t.Helper()
	tok, _, err := e.signer.Sign(auth.Claims{Subject: "user-" + string(role), Role: role}, time.Hour)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return withToken(testContext(t), tok)
}

func withToken(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

func (e *env) admin(t *testing.T) context.Context { return e.as(t, auth.RoleAdmin) }

func (e *env) menu(t *testing.T) *menuv1.Menu {
	t.Helper()
	resp, err := e.client.GetMenu(testContext(t), &menuv1.GetMenuRequest{})
	if err != nil {
		t.Fatalf("GetMenu: %v", err)
	}
	return resp.GetMenu()
}

func (e *env) lastSeq(t *testing.T) uint64 {
	t.Helper()
	info, err := e.stream.Info(testContext(t))
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return info.State.LastSeq
}

// events returns the MenuChanged events published since the test began.
func (e *env) events(t *testing.T) []*menuv1.MenuChanged {
	t.Helper()
	ctx := testContext(t)
	var out []*menuv1.MenuChanged
	for seq := e.start + 1; seq <= e.lastSeq(t); seq++ {
		m, err := e.stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("GetMsg(%d): %v", seq, err)
		}
		ev := &menuv1.MenuChanged{}
		if err := proto.Unmarshal(m.Data, ev); err != nil {
			t.Fatalf("message %d is not a MenuChanged: %v", seq, err)
		}
		if id := m.Header.Get(jetstream.MsgIDHeader); id != ev.GetEventId() {
			t.Errorf("message %d has Nats-Msg-Id %q, want its event id %q", seq, id, ev.GetEventId())
		}
		if m.Subject != menuapi.SubjectChanged {
			t.Errorf("message %d subject = %q, want %q", seq, m.Subject, menuapi.SubjectChanged)
		}
		out = append(out, ev)
	}
	return out
}

// waitEvents waits until n events have been published since the test began.
func (e *env) waitEvents(t *testing.T, n int) []*menuv1.MenuChanged {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs := e.events(t)
		if len(evs) >= n {
			return evs
		}
		if time.Now().After(deadline) {
			var got []string
			for _, ev := range evs {
				got = append(got, fmt.Sprintf("%v %s%s v%d", ev.GetChangeType(), ev.GetPizza().GetId(), ev.GetTopping().GetId(), ev.GetMenuVersion()))
			}
			t.Fatalf("%d MenuChanged events published within 10s, want %d: %q", len(evs), n, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func prices(s, m, l int64) []*menuv1.SizePrice {
	return []*menuv1.SizePrice{
		{Size: commonv1.Size_SIZE_SMALL, AmountMinor: s},
		{Size: commonv1.Size_SIZE_MEDIUM, AmountMinor: m},
		{Size: commonv1.Size_SIZE_LARGE, AmountMinor: l},
	}
}

func bianca() *menuv1.Pizza {
	return &menuv1.Pizza{Name: "Bianca", Description: "Mozzarella, rosemary, olive oil", Prices: prices(950, 1250, 1550), Available: true}
}

// checkCode fails t unless err is a status with code want.
func checkCode(t *testing.T, call string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s code = %v, want %v (err: %v)", call, got, want, err)
	}
}

// violations lists the fields of the google.rpc.BadRequest in err.
func violations(err error) []string {
	st, _ := status.FromError(err)
	var out []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				out = append(out, v.GetField())
			}
		}
	}
	return out
}

func TestGetMenuAnonymous(t *testing.T) {
	e := newEnv(t)
	m := e.menu(t)
	if m.GetVersion() <= 0 {
		t.Errorf("GetMenu version = %d, want > 0", m.GetVersion())
	}
	if len(m.GetPizzas()) < 6 || len(m.GetToppings()) < 10 {
		t.Errorf("GetMenu has %d pizzas and %d toppings, want at least 6 and 10", len(m.GetPizzas()), len(m.GetToppings()))
	}
	if want := int64(len(m.GetPizzas()) + len(m.GetToppings())); m.GetVersion() != want {
		t.Errorf("GetMenu version of a fresh menu = %d, want one per item: %d", m.GetVersion(), want)
	}
	if m.GetCurrencyCode() != "EUR" {
		t.Errorf("GetMenu currency = %q, want EUR", m.GetCurrencyCode())
	}
	for _, p := range m.GetPizzas() {
		if len(p.GetPrices()) != 3 || !p.GetAvailable() || p.GetUpdateTime() == nil {
			t.Errorf("GetMenu pizza %s = %v, want three prices, available, an update time", p.GetId(), p)
		}
	}
	if !slices.IsSortedFunc(m.GetPizzas(), func(a, b *menuv1.Pizza) int { return strings.Compare(a.GetName(), b.GetName()) }) {
		t.Errorf("GetMenu pizzas are not sorted by name")
	}
	// A customer token is fine too.
	if _, err := e.client.GetMenu(e.as(t, auth.RoleCustomer), &menuv1.GetMenuRequest{}); err != nil {
		t.Errorf("GetMenu as customer: %v", err)
	}
}

func TestCreatePizza(t *testing.T) {
	e := newEnv(t)
	before := e.menu(t)

	resp, err := e.client.CreatePizza(e.admin(t), &menuv1.CreatePizzaRequest{Pizza: bianca()})
	if err != nil {
		t.Fatalf("CreatePizza as admin: %v", err)
	}
	want := bianca()
	want.Id = "bianca"
	if diff := cmp.Diff(want, resp.GetPizza(), protocmp.Transform(), protocmp.IgnoreFields(&menuv1.Pizza{}, "update_time")); diff != "" {
		t.Errorf("CreatePizza (-want +got):\n%s", diff)
	}

	after := e.menu(t)
	if after.GetVersion() <= before.GetVersion() {
		t.Errorf("menu version after CreatePizza = %d, want more than %d", after.GetVersion(), before.GetVersion())
	}
	i := slices.IndexFunc(after.GetPizzas(), func(p *menuv1.Pizza) bool { return p.GetId() == "bianca" })
	if i < 0 {
		t.Fatalf("GetMenu after CreatePizza has no bianca")
	}
	if diff := cmp.Diff(resp.GetPizza(), after.GetPizzas()[i], protocmp.Transform()); diff != "" {
		t.Errorf("GetMenu's bianca differs from CreatePizza's (-create +get):\n%s", diff)
	}

	evs := e.waitEvents(t, 1)
	if len(evs) != 1 {
		t.Fatalf("events after one CreatePizza = %d, want 1", len(evs))
	}
	ev := evs[0]
	if ev.GetChangeType() != menuv1.MenuChangeType_MENU_CHANGE_TYPE_PIZZA_CREATED {
		t.Errorf("event change type = %v, want PIZZA_CREATED", ev.GetChangeType())
	}
	if diff := cmp.Diff(resp.GetPizza(), ev.GetPizza(), protocmp.Transform()); diff != "" {
		t.Errorf("event pizza (-want +got):\n%s", diff)
	}
	if ev.GetMenuVersion() != after.GetVersion() {
		t.Errorf("event menu version = %d, want %d", ev.GetMenuVersion(), after.GetVersion())
	}
	if ev.GetEventId() == "" || ev.GetOccurTime() == nil {
		t.Errorf("event = %v, want an id and an occur time", ev)
	}

	_, err = e.client.CreatePizza(e.admin(t), &menuv1.CreatePizzaRequest{Pizza: bianca()})
	checkCode(t, "CreatePizza twice", err, codes.AlreadyExists)
	if r := grpcx.Reason(err); r != "MENU_ITEM_EXISTS" {
		t.Errorf("CreatePizza twice reason = %q, want MENU_ITEM_EXISTS", r)
	}
}

func TestCreateTopping(t *testing.T) {
	e := newEnv(t)
	resp, err := e.client.CreateTopping(e.admin(t), &menuv1.CreateToppingRequest{
		Topping: &menuv1.Topping{Id: "nduja", Name: "'Nduja", Prices: prices(200, 250, 300), Available: true}})
	if err != nil {
		t.Fatalf("CreateTopping: %v", err)
	}
	if resp.GetTopping().GetId() != "nduja" {
		t.Errorf("CreateTopping id = %q, want nduja", resp.GetTopping().GetId())
	}
	price, err := e.client.PriceOrder(testContext(t), &menuv1.PriceOrderRequest{PizzaId: "margherita", Size: commonv1.Size_SIZE_SMALL, ToppingIds: []string{"nduja"}})
	if err != nil {
		t.Fatalf("PriceOrder with the new topping: %v", err)
	}
	if got := price.GetPrice().GetTotal().GetAmountMinor(); got != 900+200 {
		t.Errorf("PriceOrder(margherita, SMALL, [nduja]) total = %d, want %d", got, 900+200)
	}
	evs := e.waitEvents(t, 1)
	if evs[0].GetChangeType() != menuv1.MenuChangeType_MENU_CHANGE_TYPE_TOPPING_CREATED || evs[0].GetTopping().GetId() != "nduja" {
		t.Errorf("event = %v %q, want TOPPING_CREATED nduja", evs[0].GetChangeType(), evs[0].GetTopping().GetId())
	}
}

func TestChangesNeedAdmin(t *testing.T) {
	e := newEnv(t)
	before := e.menu(t)
	calls := map[string]func(context.Context) error{
		"CreatePizza": func(ctx context.Context) error {
			_, err := e.client.CreatePizza(ctx, &menuv1.CreatePizzaRequest{Pizza: bianca()})
			return err
		},
		"UpdatePizza": func(ctx context.Context) error {
			_, err := e.client.UpdatePizza(ctx, &menuv1.UpdatePizzaRequest{Pizza: &menuv1.Pizza{Id: "margherita"},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"available"}}})
			return err
		},
		"CreateTopping": func(ctx context.Context) error {
			_, err := e.client.CreateTopping(ctx, &menuv1.CreateToppingRequest{Topping: &menuv1.Topping{Name: "Capers", Prices: prices(1, 2, 3)}})
			return err
		},
		"UpdateTopping": func(ctx context.Context) error {
			_, err := e.client.UpdateTopping(ctx, &menuv1.UpdateToppingRequest{Topping: &menuv1.Topping{Id: "ham"},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"available"}}})
			return err
		},
	}
	callers := []struct {
		name string
		ctx  func() context.Context
		want codes.Code
	}{
		{"no credential", func() context.Context { return testContext(t) }, codes.Unauthenticated},
		{"customer", func() context.Context { return e.as(t, auth.RoleCustomer) }, codes.PermissionDenied},
		{"kitchen", func() context.Context { return e.as(t, auth.RoleKitchen) }, codes.PermissionDenied},
		{"courier", func() context.Context { return e.as(t, auth.RoleCourier) }, codes.PermissionDenied},
		{"service", func() context.Context { return e.as(t, auth.RoleService) }, codes.PermissionDenied},
	}
	for method, call := range calls {
		for _, c := range callers {
			t.Run(method+"/"+c.name, func(t *testing.T) {
				checkCode(t, method, call(c.ctx()), c.want)
			})
		}
	}
	if after := e.menu(t); !proto.Equal(before, after) {
		t.Errorf("refused calls changed the menu: version %d -> %d", before.GetVersion(), after.GetVersion())
	}
	for method, call := range calls {
		if err := call(e.admin(t)); err != nil {
			t.Errorf("%s as admin: %v", method, err)
		}
	}
	if after := e.menu(t); after.GetVersion() != before.GetVersion()+int64(len(calls)) {
		t.Errorf("menu version after %d admin changes = %d, want %d", len(calls), after.GetVersion(), before.GetVersion()+int64(len(calls)))
	}
	e.waitEvents(t, len(calls))
	if n := len(e.events(t)); n != len(calls) {
		t.Errorf("events after %d admin changes = %d, want %d: refused calls publish nothing", len(calls), n, len(calls))
	}
}

func TestBadCredential(t *testing.T) {
	e := newEnv(t)
	other, err := auth.NewSigner("another-secret-of-16-bytes")
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	forged, _, err := other.Sign(auth.Claims{Subject: "mallory", Role: auth.RoleAdmin}, time.Hour)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	expired, _, err := e.signer.Sign(auth.Claims{Subject: "late", Role: auth.RoleAdmin}, -time.Minute)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	tests := []struct {
		name string
		ctx  context.Context
	}{
		{"garbage token", withToken(testContext(t), "not-a-token")},
		{"other key", withToken(testContext(t), forged)},
		{"expired", withToken(testContext(t), expired)},
		{"not bearer", metadata.AppendToOutgoingContext(testContext(t), "authorization", "Basic YWRtaW46YWRtaW4=")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.client.CreatePizza(tt.ctx, &menuv1.CreatePizzaRequest{Pizza: bianca()})
			checkCode(t, "CreatePizza", err, codes.Unauthenticated)
			// A public method ignores a bad credential: a stale token in a
			// browser must not lock its owner out of the menu.
			_, err = e.client.GetMenu(tt.ctx, &menuv1.GetMenuRequest{})
			checkCode(t, "GetMenu", err, codes.OK)
		})
	}
	for _, p := range e.menu(t).GetPizzas() {
		if p.GetId() == "bianca" {
			t.Errorf("a refused CreatePizza stored bianca")
		}
	}
}

func TestCreatePizzaInvalid(t *testing.T) {
	e := newEnv(t)
	before := e.menu(t)
	tests := []struct {
		name  string
		edit  func(p *menuv1.Pizza) *menuv1.Pizza
		field string
	}{
		{"no pizza", func(*menuv1.Pizza) *menuv1.Pizza { return nil }, "pizza"},
		{"empty name", func(p *menuv1.Pizza) *menuv1.Pizza { p.Name = " "; return p }, "pizza.name"},
		{"long name", func(p *menuv1.Pizza) *menuv1.Pizza { p.Name = fmt.Sprintf("%061d", 0); return p }, "pizza.name"},
		{"bad id", func(p *menuv1.Pizza) *menuv1.Pizza { p.Id = "Bianca!"; return p }, "pizza.id"},
		{"negative price", func(p *menuv1.Pizza) *menuv1.Pizza { p.Prices[0].AmountMinor = -100; return p }, "pizza.prices[0].amount_minor"},
		{"zero price", func(p *menuv1.Pizza) *menuv1.Pizza { p.Prices[1].AmountMinor = 0; return p }, "pizza.prices[1].amount_minor"},
		{"price too high", func(p *menuv1.Pizza) *menuv1.Pizza { p.Prices[2].AmountMinor = 100_001; return p }, "pizza.prices[2].amount_minor"},
		{"missing price", func(p *menuv1.Pizza) *menuv1.Pizza { p.Prices = p.Prices[:2]; return p }, "pizza.prices"},
		{"no prices", func(p *menuv1.Pizza) *menuv1.Pizza { p.Prices = nil; return p }, "pizza.prices"},
		{"unknown size", func(p *menuv1.Pizza) *menuv1.Pizza { p.Prices[2].Size = commonv1.Size(7); return p }, "pizza.prices[2].size"},
		{"unspecified size", func(p *menuv1.Pizza) *menuv1.Pizza { p.Prices[0].Size = commonv1.Size_SIZE_UNSPECIFIED; return p }, "pizza.prices[0].size"},
		{"size twice", func(p *menuv1.Pizza) *menuv1.Pizza {
			p.Prices = append(p.Prices, &menuv1.SizePrice{Size: commonv1.Size_SIZE_SMALL, AmountMinor: 1})
			return p
		}, "pizza.prices[3].size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.client.CreatePizza(e.admin(t), &menuv1.CreatePizzaRequest{Pizza: tt.edit(bianca())})
			checkCode(t, "CreatePizza", err, codes.InvalidArgument)
			if got := violations(err); !slices.Contains(got, tt.field) {
				t.Errorf("CreatePizza field violations = %q, want %q among them (err: %v)", got, tt.field, err)
			}
			if r := grpcx.Reason(err); r != "INVALID_ARGUMENT" {
				t.Errorf("CreatePizza reason = %q, want INVALID_ARGUMENT", r)
			}
		})
	}
	t.Run("every problem reported", func(t *testing.T) {
		p := bianca()
		p.Name = ""
		p.Prices = []*menuv1.SizePrice{{Size: commonv1.Size_SIZE_SMALL, AmountMinor: -1}}
		_, err := e.client.CreatePizza(e.admin(t), &menuv1.CreatePizzaRequest{Pizza: p})
		want := []string{"pizza.name", "pizza.prices[0].amount_minor", "pizza.prices", "pizza.prices"}
		if diff := cmp.Diff(want, violations(err)); diff != "" {
			t.Errorf("CreatePizza field violations (-want +got):\n%s", diff)
		}
	})
	if after := e.menu(t); !proto.Equal(before, after) {
		t.Errorf("invalid CreatePizza calls changed the menu: version %d -> %d", before.GetVersion(), after.GetVersion())
	}
	if evs := e.events(t); len(evs) != 0 {
		t.Errorf("invalid CreatePizza calls published %d events, want 0", len(evs))
	}
}

func TestSoldOut(t *testing.T) {
	e := newEnv(t)
	price := func(pizza string, toppings ...string) error {
		_, err := e.client.PriceOrder(testContext(t), &menuv1.PriceOrderRequest{PizzaId: pizza, Size: commonv1.Size_SIZE_MEDIUM, ToppingIds: toppings})
		return err
	}
	setPizza := func(available bool) {
		resp, err := e.client.UpdatePizza(e.admin(t), &menuv1.UpdatePizzaRequest{
			Pizza:      &menuv1.Pizza{Id: "diavola", Available: available},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"available"}},
		})
		if err != nil {
			t.Fatalf("UpdatePizza(available=%v): %v", available, err)
		}
		if p := resp.GetPizza(); p.GetAvailable() != available || p.GetName() != "Diavola" || len(p.GetPrices()) != 3 {
			t.Errorf("UpdatePizza(available=%v) = %v, want only available changed", available, p)
		}
	}
	checkSoldOut := func(err error, field string) {
		t.Helper()
		checkCode(t, "PriceOrder", err, codes.FailedPrecondition)
		if r := grpcx.Reason(err); r != "SOLD_OUT" {
			t.Errorf("PriceOrder reason = %q, want SOLD_OUT", r)
		}
		if got := violations(err); !slices.Contains(got, field) {
			t.Errorf("PriceOrder field violations = %q, want %q among them", got, field)
		}
	}

	if err := price("diavola"); err != nil {
		t.Fatalf("PriceOrder(diavola) before sold out: %v", err)
	}
	setPizza(false)
	checkSoldOut(price("diavola"), "pizza_id")
	if m := e.menu(t); slices.ContainsFunc(m.GetPizzas(), func(p *menuv1.Pizza) bool { return p.GetId() == "diavola" && p.GetAvailable() }) {
		t.Errorf("GetMenu still shows diavola available")
	}
	setPizza(true)
	if err := price("diavola"); err != nil {
		t.Errorf("PriceOrder(diavola) back on the menu: %v", err)
	}

	if _, err := e.client.UpdateTopping(e.admin(t), &menuv1.UpdateToppingRequest{
		Topping:    &menuv1.Topping{Id: "burrata", Available: false},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"available"}},
	}); err != nil {
		t.Fatalf("UpdateTopping(burrata, available=false): %v", err)
	}
	checkSoldOut(price("margherita", "ham", "burrata"), "topping_ids[1]")

	evs := e.waitEvents(t, 3)
	var types []menuv1.MenuChangeType
	for _, ev := range evs {
		types = append(types, ev.GetChangeType())
	}
	wantTypes := []menuv1.MenuChangeType{
		menuv1.MenuChangeType_MENU_CHANGE_TYPE_PIZZA_UPDATED,
		menuv1.MenuChangeType_MENU_CHANGE_TYPE_PIZZA_UPDATED,
		menuv1.MenuChangeType_MENU_CHANGE_TYPE_TOPPING_UPDATED,
	}
	if diff := cmp.Diff(wantTypes, types); diff != "" {
		t.Errorf("event types (-want +got):\n%s", diff)
	}
	if evs[0].GetPizza().GetAvailable() || !evs[1].GetPizza().GetAvailable() {
		t.Errorf("pizza events carry available %v, %v; want false, true", evs[0].GetPizza().GetAvailable(), evs[1].GetPizza().GetAvailable())
	}
}

func TestUpdateToppingPrice(t *testing.T) {
	e := newEnv(t)
	req := &menuv1.PriceOrderRequest{PizzaId: "margherita", Size: commonv1.Size_SIZE_LARGE, ToppingIds: []string{"ham", "basil"}}
	before, err := e.client.PriceOrder(testContext(t), req)
	if err != nil {
		t.Fatalf("PriceOrder: %v", err)
	}
	if got := before.GetPrice().GetTotal().GetAmountMinor(); got != 1500+275+100 {
		t.Fatalf("PriceOrder(margherita, LARGE, [ham basil]) total = %d, want %d", got, 1500+275+100)
	}

	resp, err := e.client.UpdateTopping(e.admin(t), &menuv1.UpdateToppingRequest{
		Topping:    &menuv1.Topping{Id: "ham", Name: "ignored: not in the mask", Prices: prices(200, 300, 400)},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"prices"}},
	})
	if err != nil {
		t.Fatalf("UpdateTopping: %v", err)
	}
	if got := resp.GetTopping(); got.GetName() != "Ham" || !got.GetAvailable() {
		t.Errorf("UpdateTopping(prices) = %v, want name and availability unchanged", got)
	}

	after, err := e.client.PriceOrder(testContext(t), req)
	if err != nil {
		t.Fatalf("PriceOrder: %v", err)
	}
	money := func(n int64) *commonv1.Money { return &commonv1.Money{AmountMinor: n, CurrencyCode: "EUR"} }
	want := &menuv1.PriceBreakdown{
		Size:  commonv1.Size_SIZE_LARGE,
		Pizza: &menuv1.PriceLine{ItemId: "margherita", Name: "Margherita", Price: money(1500)},
		Toppings: []*menuv1.PriceLine{
			{ItemId: "ham", Name: "Ham", Price: money(400)},
			{ItemId: "basil", Name: "Fresh basil", Price: money(100)},
		},
		Total: money(2000),
	}
	if diff := cmp.Diff(want, after.GetPrice(), protocmp.Transform()); diff != "" {
		t.Errorf("PriceOrder after the price change (-want +got):\n%s", diff)
	}
	if after.GetMenuVersion() != before.GetMenuVersion()+1 {
		t.Errorf("PriceOrder menu version = %d, want %d", after.GetMenuVersion(), before.GetMenuVersion()+1)
	}

	_, err = e.client.UpdateTopping(e.admin(t), &menuv1.UpdateToppingRequest{
		Topping:    &menuv1.Topping{Id: "ham", Prices: prices(200, -1, 400)},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"prices"}},
	})
	checkCode(t, "UpdateTopping(negative price)", err, codes.InvalidArgument)
	if got := violations(err); !slices.Contains(got, "topping.prices[1].amount_minor") {
		t.Errorf("UpdateTopping(negative price) violations = %q, want topping.prices[1].amount_minor", got)
	}
}

func TestUpdateInvalid(t *testing.T) {
	e := newEnv(t)
	mask := func(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }
	tests := []struct {
		name  string
		req   *menuv1.UpdatePizzaRequest
		code  codes.Code
		field string
	}{
		{"no pizza", &menuv1.UpdatePizzaRequest{}, codes.InvalidArgument, "pizza"},
		{"no id", &menuv1.UpdatePizzaRequest{Pizza: &menuv1.Pizza{Available: true}, UpdateMask: mask("available")}, codes.InvalidArgument, "pizza.id"},
		{"unknown field", &menuv1.UpdatePizzaRequest{Pizza: &menuv1.Pizza{Id: "funghi"}, UpdateMask: mask("colour")}, codes.InvalidArgument, "update_mask"},
		{"only id", &menuv1.UpdatePizzaRequest{Pizza: &menuv1.Pizza{Id: "funghi"}, UpdateMask: mask("id")}, codes.InvalidArgument, "update_mask"},
		{"empty name", &menuv1.UpdatePizzaRequest{Pizza: &menuv1.Pizza{Id: "funghi"}, UpdateMask: mask("name")}, codes.InvalidArgument, "pizza.name"},
		{"empty mask is every field", &menuv1.UpdatePizzaRequest{Pizza: &menuv1.Pizza{Id: "funghi", Name: "Funghi"}}, codes.InvalidArgument, "pizza.prices"},
		{"unknown pizza", &menuv1.UpdatePizzaRequest{Pizza: &menuv1.Pizza{Id: "hawaii"}, UpdateMask: mask("available")}, codes.NotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.client.UpdatePizza(e.admin(t), tt.req)
			checkCode(t, "UpdatePizza", err, tt.code)
			if tt.field != "" && !slices.Contains(violations(err), tt.field) {
				t.Errorf("UpdatePizza violations = %q, want %q among them (err: %v)", violations(err), tt.field, err)
			}
		})
	}
	if evs := e.events(t); len(evs) != 0 {
		t.Errorf("invalid updates published %d events, want 0", len(evs))
	}
}

func TestPriceOrder(t *testing.T) {
	e := newEnv(t)
	version := e.menu(t).GetVersion()
	resp, err := e.client.PriceOrder(testContext(t), &menuv1.PriceOrderRequest{
		PizzaId: "quattro-formaggi", Size: commonv1.Size_SIZE_SMALL, ToppingIds: []string{"mushrooms", "olives", "rocket"}})
	if err != nil {
		t.Fatalf("PriceOrder: %v", err)
	}
	if got, want := resp.GetPrice().GetTotal().GetAmountMinor(), int64(1150+100+100+75); got != want {
		t.Errorf("PriceOrder(quattro-formaggi, SMALL, 3 toppings) total = %d, want %d", got, want)
	}
	if got := resp.GetPrice().GetTotal().GetCurrencyCode(); got != "EUR" {
		t.Errorf("PriceOrder currency = %q, want EUR", got)
	}
	if n := len(resp.GetPrice().GetToppings()); n != 3 {
		t.Errorf("PriceOrder has %d topping lines, want 3", n)
	}
	if resp.GetMenuVersion() != version {
		t.Errorf("PriceOrder menu version = %d, want %d", resp.GetMenuVersion(), version)
	}
}

func TestPriceOrderInvalid(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name     string
		pizza    string
		size     commonv1.Size
		toppings []string
		field    string
	}{
		{"four toppings", "margherita", commonv1.Size_SIZE_SMALL, []string{"ham", "olives", "basil", "rocket"}, "topping_ids"},
		{"duplicate topping", "margherita", commonv1.Size_SIZE_SMALL, []string{"ham", "ham"}, "topping_ids[1]"},
		{"unknown topping", "margherita", commonv1.Size_SIZE_SMALL, []string{"pineapple"}, "topping_ids[0]"},
		{"unknown pizza", "hawaii", commonv1.Size_SIZE_SMALL, nil, "pizza_id"},
		{"no pizza", "", commonv1.Size_SIZE_SMALL, nil, "pizza_id"},
		{"no size", "margherita", commonv1.Size_SIZE_UNSPECIFIED, nil, "size"},
		{"fourth size", "margherita", commonv1.Size(4), nil, "size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.client.PriceOrder(testContext(t), &menuv1.PriceOrderRequest{PizzaId: tt.pizza, Size: tt.size, ToppingIds: tt.toppings})
			checkCode(t, "PriceOrder", err, codes.InvalidArgument)
			if got := violations(err); !slices.Contains(got, tt.field) {
				t.Errorf("PriceOrder(%q, %v, %q) violations = %q, want %q among them (err: %v)", tt.pizza, tt.size, tt.toppings, got, tt.field, err)
			}
			if resp != nil {
				t.Errorf("PriceOrder returned %v with its error", resp)
			}
		})
	}
}

// TestUpdateBasedOnStaleRead: a manager's change that carries the
// update_time it was based on is refused once someone else changed the
// item since, instead of silently writing back the other manager's fields
// as they were.
func TestUpdateBasedOnStaleRead(t *testing.T) {
	e := newEnv(t)
	find := func() *menuv1.Pizza {
		t.Helper()
		for _, p := range e.menu(t).GetPizzas() {
			if p.GetId() == "funghi" {
				return p
			}
		}
		t.Fatalf("GetMenu has no funghi")
		return nil
	}
	read := find() // manager A opens the form

	// Manager B changes the prices.
	if _, err := e.client.UpdatePizza(e.admin(t), &menuv1.UpdatePizzaRequest{
		Pizza:      &menuv1.Pizza{Id: "funghi", Prices: prices(1100, 1400, 1750), UpdateTime: read.GetUpdateTime()},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"prices"}},
	}); err != nil {
		t.Fatalf("UpdatePizza from a fresh read: %v", err)
	}

	// Manager A saves the whole form as read, with a new name.
	stale := proto.Clone(read).(*menuv1.Pizza)
	stale.Name = "Funghi Porcini"
	_, err := e.client.UpdatePizza(e.admin(t), &menuv1.UpdatePizzaRequest{
		Pizza: stale, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name", "description", "prices", "available"}}})
	checkCode(t, "UpdatePizza from a stale read", err, codes.Aborted)
	if r := grpcx.Reason(err); r != "MENU_ITEM_CHANGED" {
		t.Errorf("UpdatePizza from a stale read reason = %q, want MENU_ITEM_CHANGED", r)
	}
	now := find()
	if now.GetName() != "Funghi" || now.GetPrices()[0].GetAmountMinor() != 1100 {
		t.Errorf("after a refused stale update funghi = %v, want B's prices and the old name", now)
	}

	// From a fresh read it goes through.
	fresh := proto.Clone(now).(*menuv1.Pizza)
	fresh.Name = "Funghi Porcini"
	resp, err := e.client.UpdatePizza(e.admin(t), &menuv1.UpdatePizzaRequest{
		Pizza: fresh, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}}})
	if err != nil {
		t.Fatalf("UpdatePizza from a fresh read: %v", err)
	}
	if got := resp.GetPizza(); got.GetName() != "Funghi Porcini" || got.GetPrices()[0].GetAmountMinor() != 1100 {
		t.Errorf("UpdatePizza from a fresh read = %v, want the new name and B's prices", got)
	}
	// Back-to-back changes still tell themselves apart.
	next, err := e.client.UpdatePizza(e.admin(t), &menuv1.UpdatePizzaRequest{
		Pizza:      &menuv1.Pizza{Id: "funghi", Available: false, UpdateTime: resp.GetPizza().GetUpdateTime()},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"available"}}})
	if err != nil {
		t.Fatalf("UpdatePizza right after: %v", err)
	}
	if !next.GetPizza().GetUpdateTime().AsTime().After(resp.GetPizza().GetUpdateTime().AsTime()) {
		t.Errorf("update times of two changes = %v then %v, want increasing", resp.GetPizza().GetUpdateTime().AsTime(), next.GetPizza().GetUpdateTime().AsTime())
	}
	_, err = e.client.UpdateTopping(e.admin(t), &menuv1.UpdateToppingRequest{
		Topping:    &menuv1.Topping{Id: "ham", Available: false, UpdateTime: read.GetUpdateTime()},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"available"}}})
	if err != nil {
		t.Errorf("UpdateTopping(ham) with the seed's update time: %v", err)
	}

	if n := len(e.waitEvents(t, 4)); n != 4 {
		t.Errorf("events = %d, want 4: the refused update publishes nothing", n)
	}
}

// TestConcurrentUpdatesEventVersions: changes of one item made at the same
// time each publish the menu version they produced, not the one they all
// saw before the first of them was written.
func TestConcurrentUpdatesEventVersions(t *testing.T) {
	e := newEnv(t)
	before := e.menu(t).GetVersion()
	const n = 6
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := e.client.UpdatePizza(e.admin(t), &menuv1.UpdatePizzaRequest{
				Pizza:      &menuv1.Pizza{Id: "margherita", Prices: prices(900+int64(i), 1200, 1500)},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"prices"}},
			})
			if err != nil {
				t.Errorf("UpdatePizza %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	after := e.menu(t).GetVersion()
	if after != before+n {
		t.Fatalf("menu version after %d changes = %d, want %d", n, after, before+n)
	}
	var got []int64
	for _, ev := range e.waitEvents(t, n) {
		got = append(got, ev.GetMenuVersion())
	}
	slices.Sort(got)
	var want []int64
	for v := before + 1; v <= after; v++ {
		want = append(want, v)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("menu versions of the events (-want +got):\n%s", diff)
	}
}
