// Package menuapi serves the menu over gRPC and encodes menu events.
package menuapi

import (
	"context"
	"fmt"
	"time"

	"github.com/pizzashop/pizzashop/pkg/auth"
	"github.com/pizzashop/pizzashop/pkg/errs"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	"github.com/pizzashop/pizzashop/services/menu/internal/menu"
	"github.com/pizzashop/pizzashop/services/menu/internal/menudb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Policy says who may call each method: anyone reads and prices the menu,
// only managers change it.
var Policy = auth.Policy{
	menuv1.MenuService_GetMenu_FullMethodName:       auth.Anyone,
	menuv1.MenuService_PriceOrder_FullMethodName:    auth.Anyone,
	menuv1.MenuService_CreatePizza_FullMethodName:   auth.Only(auth.RoleAdmin),
	menuv1.MenuService_UpdatePizza_FullMethodName:   auth.Only(auth.RoleAdmin),
	menuv1.MenuService_CreateTopping_FullMethodName: auth.Only(auth.RoleAdmin),
	menuv1.MenuService_UpdateTopping_FullMethodName: auth.Only(auth.RoleAdmin),
}

// Server implements menuv1.MenuServiceServer.
type Server struct {
	menuv1.UnimplementedMenuServiceServer
	store *menudb.Store
	menu  *menuCache
	now   func() time.Time
}

// menuMaxAge bounds how long a cached menu is served without an event
// saying it changed: the net under a menu.changed event missed while NATS
// was away.
const menuMaxAge = time.Minute

// NewServer returns a server over store.
func NewServer(store *menudb.Store) *Server {
	return &Server{store: store, menu: newMenuCache(store.Menu, menuMaxAge), now: now}
}

// MenuChanged tells the server that the menu changed, here or in another
// replica: the next read goes to the store. Call it for every menu.changed
// event.
func (s *Server) MenuChanged() { s.menu.invalidate() }

// now is cut to the millisecond, the precision the store keeps, so that a
// response and its event show the same update time as later reads.
func now() time.Time { return time.Now().Truncate(time.Millisecond) }

// GetMenu returns the whole menu.
func (s *Server) GetMenu(ctx context.Context, _ *menuv1.GetMenuRequest) (*menuv1.GetMenuResponse, error) {
	m, err := s.menu.get(ctx)
	if err != nil {
		return nil, err
	}
	return &menuv1.GetMenuResponse{Menu: menuToProto(m)}, nil
}

// PriceOrder prices one pizza from the current menu.
func (s *Server) PriceOrder(ctx context.Context, req *menuv1.PriceOrderRequest) (*menuv1.PriceOrderResponse, error) {
	if err := checkPriceRequest(req); err != nil {
		return nil, err // before any work: anyone may call this
	}
	m, err := s.menu.get(ctx)
	if err != nil {
		return nil, err
	}
	b, err := m.Price(req.GetPizzaId(), menu.Size(req.GetSize()), req.GetToppingIds())
	if err != nil {
		return nil, err
	}
	return &menuv1.PriceOrderResponse{Price: breakdownToProto(b), MenuVersion: m.Version()}, nil
}

// checkPriceRequest bounds a pricing request's lists and ids, so that its
// cost and the size of its error do not grow with the input.
func checkPriceRequest(req *menuv1.PriceOrderRequest) error {
	if n := len(req.GetToppingIds()); n > menu.MaxToppings {
		return errs.Invalid("topping_ids", "at most %d toppings per pizza, got %d", menu.MaxToppings, n)
	}
	if len(req.GetPizzaId()) > menu.MaxIDLen {
		return errs.Invalid("pizza_id", "must be at most %d characters", menu.MaxIDLen)
	}
	for i, id := range req.GetToppingIds() {
		if len(id) > menu.MaxIDLen {
			return errs.Invalid(fmt.Sprintf("topping_ids[%d]", i), "must be at most %d characters", menu.MaxIDLen)
		}
	}
	return nil
}

// CreatePizza adds a pizza.
func (s *Server) CreatePizza(ctx context.Context, req *menuv1.CreatePizzaRequest) (*menuv1.CreatePizzaResponse, error) {
	p := req.GetPizza()
	if p == nil {
		return nil, errs.Invalid("pizza", "is required")
	}
	it, err := s.create(ctx, menu.KindPizza, menu.Draft{ID: p.GetId(), Name: p.GetName(), Description: p.GetDescription(),
		Prices: pricesFromProto(p.GetPrices()), Available: p.GetAvailable()})
	if err != nil {
		return nil, err
	}
	return &menuv1.CreatePizzaResponse{Pizza: pizzaToProto(it)}, nil
}

// CreateTopping adds a topping.
func (s *Server) CreateTopping(ctx context.Context, req *menuv1.CreateToppingRequest) (*menuv1.CreateToppingResponse, error) {
	t := req.GetTopping()
	if t == nil {
		return nil, errs.Invalid("topping", "is required")
	}
	it, err := s.create(ctx, menu.KindTopping, menu.Draft{ID: t.GetId(), Name: t.GetName(),
		Prices: pricesFromProto(t.GetPrices()), Available: t.GetAvailable()})
	if err != nil {
		return nil, err
	}
	return &menuv1.CreateToppingResponse{Topping: toppingToProto(it)}, nil
}

func (s *Server) create(ctx context.Context, k menu.Kind, d menu.Draft) (menu.Item, error) {
	it, err := menu.NewItem(k, string(k), d, s.now())
	if err != nil {
		return menu.Item{}, err
	}
	others, err := s.othersVersion(ctx, k, it.ID)
	if err != nil {
		return menu.Item{}, err
	}
	ev, err := changedEvent(ctx, k, true, it, others+it.Revision)
	if err != nil {
		return menu.Item{}, err
	}
	defer s.menu.invalidate()
	if err := s.store.Create(ctx, k, it, ev); err != nil {
		return menu.Item{}, err
	}
	return it, nil
}

// othersVersion is the part of the menu version that every item but the
// one of kind k and id holds, as far as this writer can see. A change of
// that item produces this plus the item's new revision: counted from the
// revision it actually writes, so changes of one item made at the same time
// each publish the version they produced.
func (s *Server) othersVersion(ctx context.Context, k menu.Kind, id string) (int64, error) {
	m, err := s.store.Menu(ctx)
	if err != nil {
		return 0, err
	}
	v := m.Version()
	items := m.Pizzas
	if k == menu.KindTopping {
		items = m.Toppings
	}
	for _, it := range items {
		if it.ID == id {
			v -= it.Revision
		}
	}
	return v, nil
}

// UpdatePizza changes the fields of a pizza named in the mask.
func (s *Server) UpdatePizza(ctx context.Context, req *menuv1.UpdatePizzaRequest) (*menuv1.UpdatePizzaResponse, error) {
	p := req.GetPizza()
	if p == nil {
		return nil, errs.Invalid("pizza", "is required")
	}
	patch, err := toPatch(menu.KindPizza, req.GetUpdateMask(), p.GetName(), p.GetDescription(), p.GetPrices(), p.GetAvailable(), p.GetUpdateTime())
	if err != nil {
		return nil, err
	}
	it, err := s.update(ctx, menu.KindPizza, p.GetId(), patch)
	if err != nil {
		return nil, err
	}
	return &menuv1.UpdatePizzaResponse{Pizza: pizzaToProto(it)}, nil
}

// UpdateTopping changes the fields of a topping named in the mask.
func (s *Server) UpdateTopping(ctx context.Context, req *menuv1.UpdateToppingRequest) (*menuv1.UpdateToppingResponse, error) {
	t := req.GetTopping()
	if t == nil {
		return nil, errs.Invalid("topping", "is required")
	}
	patch, err := toPatch(menu.KindTopping, req.GetUpdateMask(), t.GetName(), "", t.GetPrices(), t.GetAvailable(), t.GetUpdateTime())
	if err != nil {
		return nil, err
	}
	it, err := s.update(ctx, menu.KindTopping, t.GetId(), patch)
	if err != nil {
		return nil, err
	}
	return &menuv1.UpdateToppingResponse{Topping: toppingToProto(it)}, nil
}

func (s *Server) update(ctx context.Context, k menu.Kind, id string, patch menu.Patch) (menu.Item, error) {
	if id == "" {
		return menu.Item{}, errs.Invalid(string(k)+".id", "is required")
	}
	others, err := s.othersVersion(ctx, k, id)
	if err != nil {
		return menu.Item{}, err
	}
	defer s.menu.invalidate()
	return s.store.Update(ctx, k, id,
		func(old menu.Item) (menu.Item, error) { return old.Apply(k, string(k), patch, s.now()) },
		func(it menu.Item) (outbox.Entry, error) { return changedEvent(ctx, k, false, it, others+it.Revision) })
}

// toPatch turns an update mask into a patch. An empty mask means every
// updatable field. An update_time sent with the item is the one the caller
// read: the change applies only if the item still has it (409 otherwise).
func toPatch(k menu.Kind, mask *fieldmaskpb.FieldMask, name, desc string, prices []*menuv1.SizePrice, available bool, read *timestamppb.Timestamp) (menu.Patch, error) {
	paths := mask.GetPaths()
	if len(paths) == 0 {
		paths = []string{"name", "prices", "available"}
		if k == menu.KindPizza {
			paths = append(paths, "description")
		}
	}
	var p menu.Patch
	for _, path := range paths {
		switch {
		case path == "name":
			p.Name = &name
		case path == "description" && k == menu.KindPizza:
			p.Description = &desc
		case path == "prices":
			p.Prices, p.SetPrices = pricesFromProto(prices), true
		case path == "available":
			p.Available = &available
		case path == "id" || path == "update_time":
			// Present in a full body; not changeable, so ignored.
		default:
			return menu.Patch{}, errs.Invalid("update_mask", "%s has no field %q that can be changed", k, path)
		}
	}
	if p.Empty() {
		return menu.Patch{}, errs.Invalid("update_mask", "names no field that can be changed")
	}
	if read != nil {
		if err := read.CheckValid(); err != nil {
			return menu.Patch{}, errs.Invalid(string(k)+".update_time", "is not a valid time: %v", err)
		}
		t := read.AsTime()
		p.Read = &t
	}
	return p, nil
}
