// Package orderapi serves orders and customers over gRPC, encodes order
// events, and talks to the menu (prices) and the kitchen (cancellation).
package orderapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/pizzashop/pizzashop/pkg/auth"
	"github.com/pizzashop/pizzashop/pkg/cardscan"
	"github.com/pizzashop/pizzashop/pkg/errs"
	"github.com/pizzashop/pizzashop/pkg/grpcx"
	"github.com/pizzashop/pizzashop/pkg/ids"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"github.com/pizzashop/pizzashop/services/order/internal/order"
	"github.com/pizzashop/pizzashop/services/order/internal/orderdb"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Policy says who may call each method. Customers are limited to their own
// orders inside the handlers; staff may read any order.
var Policy = auth.Policy{
	orderv1.OrderService_CreateOrder_FullMethodName:           auth.Only(auth.RoleCustomer),
	orderv1.OrderService_GetOrder_FullMethodName:              auth.Authenticated,
	orderv1.OrderService_ListOrders_FullMethodName:            auth.Authenticated,
	orderv1.OrderService_CancelOrder_FullMethodName:           auth.Only(auth.RoleCustomer, auth.RoleAdmin),
	orderv1.OrderService_WatchOrder_FullMethodName:            auth.Authenticated,
	orderv1.CustomerService_RegisterCustomer_FullMethodName:   auth.Anyone,
	orderv1.CustomerService_SignIn_FullMethodName:             auth.Anyone,
	orderv1.CustomerService_GetCurrentCustomer_FullMethodName: auth.Only(auth.RoleCustomer),
}

// Errors the API adds to the domain's.
var (
	ErrKeyReused   = errs.New(errs.KindIdempotencyMismatch, "IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was already used with a different request")
	ErrMenuDown    = errs.New(errs.KindUnavailable, "MENU_UNAVAILABLE", "the menu service is unavailable; try again shortly")
	ErrKitchenDown = errs.New(errs.KindUnavailable, "KITCHEN_UNAVAILABLE", "the kitchen service is unavailable; try again shortly")
	ErrKitchenBusy = errs.New(errs.KindConflict, "KITCHEN_BUSY", "the kitchen is changing this order right now; try again")
)

// Options configure a Server.
type Options struct {
	// TokenTTL is how long customer tokens from RegisterCustomer last.
	TokenTTL time.Duration
	// CallTimeout bounds calls to the menu and the kitchen.
	CallTimeout time.Duration
	// KeepAlive is the longest silence on an order's live stream.
	KeepAlive time.Duration
	// SignIn bounds password guessing (customers.go).
	SignIn SignInOptions
}

// Server implements OrderService and CustomerService.
type Server struct {
	orderv1.UnimplementedOrderServiceServer
	orderv1.UnimplementedCustomerServiceServer

	store   *orderdb.Store
	menu    menuv1.MenuServiceClient
	kitchen kitchenv1.KitchenServiceClient
	signer  *auth.Signer
	watch   Watcher
	log     *slog.Logger
	opts    Options
	now     func() time.Time
	signIn  *signInGuard
	// prices keeps the menu's prices between menu changes.
	prices *priceCache
	// profiles keeps the names and phones orders carry.
	profiles *profileCache
	// watches shares the order streams' reads (watch.go).
	watches watchReads
}

// Watcher delivers the changes of one order as they are published.
type Watcher interface {
	// Watch calls fn with every event for order id until the returned stop
	// is called.
	Watch(id string, fn func(*orderv1.OrderStatusChanged)) (stop func(), err error)
}

// NewServer returns a server.
func NewServer(store *orderdb.Store, menu menuv1.MenuServiceClient, kitchen kitchenv1.KitchenServiceClient,
	signer *auth.Signer, watch Watcher, log *slog.Logger, opts Options) *Server {
	if opts.TokenTTL == 0 {
		opts.TokenTTL = 30 * 24 * time.Hour
	}
	if opts.CallTimeout == 0 {
		opts.CallTimeout = 3 * time.Second
	}
	return &Server{store: store, menu: menu, kitchen: kitchen, signer: signer, watch: watch, log: log, opts: opts, now: time.Now,
		signIn: newSignInGuard(opts.SignIn), profiles: newProfileCache(store.GetCustomer, profileCacheSize, profileMaxAge), prices: newPriceCache()}
}

func caller(ctx context.Context) (auth.Claims, error) {
	c, ok := auth.FromContext(ctx)
	if !ok {
		return auth.Claims{}, status.Error(codes.Unauthenticated, "missing credential")
	}
	return c, nil
}

const maxKeyLen = 200

func idempotencyKey(ctx context.Context) (string, error) {
	vals := metadata.ValueFromIncomingContext(ctx, "idempotency-key")
	if len(vals) == 0 {
		return "", nil
	}
	k := strings.TrimSpace(vals[0])
	if k == "" || len(k) > maxKeyLen {
		return "", errs.Invalid("Idempotency-Key", "must be 1 to %d characters", maxKeyLen)
	}
	for _, r := range k {
		if r < 0x21 || r > 0x7e {
			return "", errs.Invalid("Idempotency-Key", "must be printable ASCII without spaces")
		}
	}
	return k, nil
}

func requestHash(req proto.Message) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func rejectCards(m proto.Message) error {
	if field, found := cardscan.Find(m); found {
		return errs.Invalid(field, cardscan.Refusal)
	}
	return nil
}

// CreateOrder places an order.
//
// With an Idempotency-Key, the order's id is derived from the customer and
// the key, so the store's unique _id lets exactly one order exist per key,
// whatever the client does: retry, race, or come back after abandoning a
// request still queued in the store. A repeat of the same request gets
// that order; another request with the same key gets 422. A key stays
// bound to its order for as long as the order is kept.
func (s *Server) CreateOrder(ctx context.Context, req *orderv1.CreateOrderRequest) (*orderv1.CreateOrderResponse, error) {
	c, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := rejectCards(req); err != nil {
		return nil, err
	}
	r := requestFromProto(req)
	if err := r.Validate(); err != nil {
		return nil, err
	}
	key, err := idempotencyKey(ctx)
	if err != nil {
		return nil, err
	}
	id, hash := ids.New(), ""
	if key != "" {
		id, hash = ids.Derive("order", c.Subject, key), requestHash(req)
	}
	o, err := s.place(ctx, c, r, id, hash)
	if key != "" && err != nil {
		// Placed before: the same request gets its order back even if it
		// could no longer be placed now (a topping sold out since).
		prior, perr := s.store.Get(ctx, id)
		if perr == nil {
			return respond(sameRequest(prior, c.Subject, hash))
		}
		err = keyedFailure(err, perr)
	}
	return respond(o, err)
}

// keyedFailure is the answer to a request with an Idempotency-Key whose
// order could not be placed (err) nor read back (perr). When the key's
// order exists but reading it failed (the store timed out, say), the read's
// failure is the answer: the caller should retry and will get its order,
// where the insert's duplicate key alone would answer an internal error.
func keyedFailure(err, perr error) error {
	if errors.Is(err, orderdb.ErrExists) && !errors.Is(perr, order.ErrNotFound) {
		return perr
	}
	return err
}

// sameRequest returns prior, the order a key placed, if the request with
// hash is the one that placed it.
func sameRequest(prior *order.Order, customer, hash string) (*order.Order, error) {
	if prior.Customer.ID != customer || prior.RequestHash != hash {
		return nil, ErrKeyReused
	}
	return prior, nil
}

func respond(o *order.Order, err error) (*orderv1.CreateOrderResponse, error) {
	if err != nil {
		return nil, err
	}
	return &orderv1.CreateOrderResponse{Order: ToProto(o)}, nil
}

// place prices and stores a new order with id. hash identifies the request
// when it came with an Idempotency-Key.
func (s *Server) place(ctx context.Context, c auth.Claims, r order.Request, id, hash string) (*order.Order, error) {
	price, err := s.price(ctx, r.Item)
	if err != nil {
		return nil, err
	}
	cust := order.Customer{ID: c.Subject, Name: c.Name}
	if p, err := s.profiles.get(ctx, c.Subject); err == nil {
		cust.Name, cust.Phone = p.Name, p.Phone
	} else if !errors.Is(err, order.ErrCustomerNotFound) {
		return nil, err
	}
	o, err := order.New(id, cust, r, price, hash, s.now())
	if err != nil {
		return nil, err
	}
	ev, err := statusEvent(ctx, o)
	if err != nil {
		return nil, err
	}
	if err := s.store.Insert(ctx, o, ev); err != nil {
		return nil, err
	}
	return o, nil
}

// price asks the menu for the price and translates its answer, prefixing
// field names with "item." as they appear in CreateOrderRequest.
func (s *Server) price(ctx context.Context, it order.Item) (order.Price, error) {
	if p, _, ok := s.prices.get(it); ok {
		return p, nil
	}
	return s.askPrice(ctx, it)
}

// askPrice asks the menu, and keeps its answer for the next order of the
// same item.
func (s *Server) askPrice(ctx context.Context, it order.Item) (order.Price, error) {
	_, gen, _ := s.prices.get(it)
	cctx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
	defer cancel()
	toppings := it.ToppingIDs
	resp, err := s.menu.PriceOrder(cctx, &menuv1.PriceOrderRequest{PizzaId: it.PizzaID, Size: commonv1.Size(it.Size), ToppingIds: toppings})
	if err != nil {
		return order.Price{}, menuError(ctx, err)
	}
	p := priceFromProto(resp.GetPrice())
	s.prices.put(it, p, gen, resp.GetMenuVersion())
	return p, nil
}

// MenuChangedSubject is where the menu service publishes every change of
// the menu (pizzashop.menu.v1.MenuChanged).
const MenuChangedSubject = "menu.changed"

// PricesChanged empties the price cache. Call it with every menu.changed
// event (pizzashop.menu.v1.MenuChanged), from any menu replica; prices a
// replica answers from an older menu than the event's are then not kept.
func (s *Server) PricesChanged(event []byte) {
	var ev menuv1.MenuChanged
	if err := proto.Unmarshal(event, &ev); err != nil {
		s.log.Warn("menu.changed event that does not parse; prices forgotten all the same", "err", err)
	}
	s.prices.invalidate(ev.GetMenuVersion())
}

func menuError(ctx context.Context, err error) error {
	st := status.Convert(err)
	var fields []*errdetails.BadRequest_FieldViolation
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			fields = append(fields, br.GetFieldViolations()...)
		}
	}
	switch st.Code() {
	case codes.InvalidArgument:
		var problems []error
		for _, f := range fields {
			problems = append(problems, errs.Invalid("item."+f.GetField(), "%s", f.GetDescription()))
		}
		if len(problems) == 0 {
			return errs.Invalid("item", "%s", st.Message())
		}
		return errors.Join(problems...)
	case codes.FailedPrecondition:
		e := &errs.Error{Kind: errs.KindFailedPrecondition, Reason: grpcx.Reason(err), Msg: st.Message()}
		if len(fields) > 0 {
			e.Field, e.Msg = "item."+fields[0].GetField(), fields[0].GetDescription()
		}
		return e
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return fmt.Errorf("%w: %s", ErrMenuDown, st.Message())
	case codes.Canceled:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %s", ErrMenuDown, st.Message())
	}
	return fmt.Errorf("price order: %w", err)
}

// GetOrder returns one of the caller's orders.
func (s *Server) GetOrder(ctx context.Context, req *orderv1.GetOrderRequest) (*orderv1.GetOrderResponse, error) {
	o, err := s.visibleOrder(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &orderv1.GetOrderResponse{Order: ToProto(o)}, nil
}

// visibleOrder reads an order the caller may see. Other customers' orders
// answer exactly like missing ones.
func (s *Server) visibleOrder(ctx context.Context, id string) (*order.Order, error) {
	c, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if !ids.Valid(id) {
		return nil, order.ErrNotFound
	}
	o, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if !o.VisibleTo(c.Subject, c.Role.IsStaff()) {
		return nil, order.ErrNotFound
	}
	return o, nil
}

// Page sizes of ListOrders.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
)

// ListOrders lists the caller's orders, newest first; staff see everyone's.
func (s *Server) ListOrders(ctx context.Context, req *orderv1.ListOrdersRequest) (*orderv1.ListOrdersResponse, error) {
	c, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, errs.Invalid("page_size", "must not be negative")
	case size == 0:
		size = DefaultPageSize
	case size > MaxPageSize:
		size = MaxPageSize
	}
	after, err := orderdb.DecodeCursor(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	customer := c.Subject
	if c.Role.IsStaff() {
		customer = ""
	}
	orders, next, err := s.store.List(ctx, customer, size, after)
	if err != nil {
		return nil, err
	}
	resp := &orderv1.ListOrdersResponse{}
	for _, o := range orders {
		resp.Orders = append(resp.Orders, ToProto(o))
	}
	if next != nil {
		resp.NextPageToken = next.Encode()
	}
	return resp, nil
}

// CancelOrder cancels an order the kitchen has not started. The kitchen
// decides, so that no order ends both cancelled and baked.
func (s *Server) CancelOrder(ctx context.Context, req *orderv1.CancelOrderRequest) (*orderv1.CancelOrderResponse, error) {
	if err := rejectCards(req); err != nil {
		return nil, err
	}
	reason := strings.TrimSpace(req.GetReason())
	if len([]rune(reason)) > order.MaxCancelReason {
		return nil, errs.Invalid("reason", "must be at most %d characters", order.MaxCancelReason)
	}
	o, err := s.visibleOrder(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	if o.Status == order.StatusCancelled {
		return &orderv1.CancelOrderResponse{Order: ToProto(o)}, nil
	}
	if err := o.CanCancel(); err != nil {
		return nil, err
	}
	if err := s.cancelTicket(ctx, o.ID, reason); err != nil {
		return nil, err
	}
	if reason == "" {
		reason = "cancelled by the customer"
		if c, _ := caller(ctx); c.Role.IsStaff() {
			reason = "cancelled by the shop" // an admin's cancel
		}
	}
	// The kitchen has said yes: record it even if the caller goes away now.
	// (Should this fail, the kitchen's CANCELLED event brings the order
	// there through the consumer.)
	wctx := context.WithoutCancel(ctx)
	o, _, err = s.store.Update(wctx, o.ID, func(o *order.Order) (bool, []outbox.Entry, error) {
		if o.Status == order.StatusCancelled {
			return false, nil, nil
		}
		if !o.Advance(order.StatusCancelled, s.now(), reason) {
			return false, nil, errs.Wrap(order.ErrNotCancellable, "", "order %s is %s and can no longer be cancelled", o.ID, o.Status)
		}
		ev, err := statusEvent(wctx, o)
		return true, []outbox.Entry{ev}, err
	})
	if err != nil {
		return nil, err
	}
	return &orderv1.CancelOrderResponse{Order: ToProto(o)}, nil
}

func (s *Server) cancelTicket(ctx context.Context, id, reason string) error {
	cctx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
	defer cancel()
	_, err := s.kitchen.CancelTicket(cctx, &kitchenv1.CancelTicketRequest{Id: id, Reason: reason})
	if err == nil {
		return nil
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.FailedPrecondition:
		return errs.Wrap(order.ErrNotCancellable, "", "%s", st.Message())
	case codes.Aborted:
		return errs.Wrap(ErrKitchenBusy, "", "")
	case codes.Canceled:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %s", ErrKitchenDown, st.Message())
	case codes.Unavailable, codes.DeadlineExceeded, codes.Unimplemented, codes.ResourceExhausted:
		return fmt.Errorf("%w: %s", ErrKitchenDown, st.Message())
	}
	// Anything else (a refused service credential, say) is our fault.
	return fmt.Errorf("cancel ticket %s: kitchen answered %s: %s", id, st.Code(), st.Message())
}

// WatchOrder streams the order now and after every change. Its reads of
// the order are shared with the other streams of the order (watchReads), so
// many streams opening at once cost one store read, not one each.
func (s *Server) WatchOrder(req *orderv1.WatchOrderRequest, stream orderv1.OrderService_WatchOrderServer) error {
	ctx := stream.Context()
	c, err := caller(ctx)
	if err != nil {
		return err
	}
	id := req.GetId()
	if !ids.Valid(id) {
		return order.ErrNotFound
	}
	events := make(chan *orderv1.OrderStatusChanged, 64)
	stop, err := s.watch.Watch(id, func(ev *orderv1.OrderStatusChanged) {
		select {
		case events <- ev:
		default: // a slow client: the periodic re-read catches it up
		}
	})
	if err != nil {
		return err
	}
	defer stop()
	// Read after subscribing, so no change falls between the two. Nothing
	// is sent before the caller is known to see the order.
	o, err := s.watches.get(ctx, s.store, id)
	if err != nil {
		return err
	}
	if !o.VisibleTo(c.Subject, c.Role.IsStaff()) {
		return order.ErrNotFound
	}
	if err := stream.Send(&orderv1.WatchOrderResponse{Order: ToProto(o)}); err != nil {
		return err
	}
	last := o.Revision
	send := func(p *orderv1.Order) (done bool, err error) {
		if p.GetRevision() <= last {
			return false, nil
		}
		last = p.GetRevision()
		if err := stream.Send(&orderv1.WatchOrderResponse{Order: p}); err != nil {
			return true, err
		}
		return order.Status(p.GetStatus()).Final(), nil
	}
	if o.Status.Final() {
		return nil
	}
	// While quiet, re-read the order now and then, in case a change was
	// missed (a NATS reconnect), and prove the stream alive with an empty
	// keep-alive message.
	idle := grpcx.NewIdle(s.opts.KeepAlive)
	defer idle.Stop()
	for {
		var p *orderv1.Order
		select {
		case <-ctx.Done():
			return nil
		case ev := <-events:
			p = ev.GetOrder()
		case <-idle.C:
			if o, err := s.watches.get(ctx, s.store, id); err == nil && o.Revision > last {
				p = ToProto(o)
			} else if idle.Due() {
				if err := stream.Send(&orderv1.WatchOrderResponse{}); err != nil {
					return err
				}
				continue
			} else {
				continue
			}
		}
		if p.GetRevision() <= last {
			continue // old news
		}
		if done, err := send(p); done || err != nil {
			return err
		}
		idle.Sent()
	}
}
