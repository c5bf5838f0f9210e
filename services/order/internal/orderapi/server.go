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
	"strconv"
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
	ErrKeyInFlight = errs.New(errs.KindConflict, "IDEMPOTENCY_KEY_IN_FLIGHT", "a request with this Idempotency-Key is still being processed; retry shortly")
	ErrMenuDown    = errs.New(errs.KindUnavailable, "MENU_UNAVAILABLE", "the menu service is unavailable; try again shortly")
	ErrKitchenDown = errs.New(errs.KindUnavailable, "KITCHEN_UNAVAILABLE", "the kitchen service is unavailable; try again shortly")
	ErrKitchenBusy = errs.New(errs.KindConflict, "KITCHEN_BUSY", "the kitchen is changing this order right now; try again")
)

// Options configure a Server.
type Options struct {
	// KeyTTL is how long idempotency keys are kept; at least 24 hours.
	KeyTTL time.Duration
	// InFlightTimeout is how long a request may hold its key before another
	// request with the same key may take it over (the first one crashed).
	InFlightTimeout time.Duration
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
	if opts.KeyTTL < 24*time.Hour {
		opts.KeyTTL = 24 * time.Hour
	}
	if opts.InFlightTimeout == 0 {
		opts.InFlightTimeout = 30 * time.Second
	}
	if opts.TokenTTL == 0 {
		opts.TokenTTL = 30 * 24 * time.Hour
	}
	if opts.CallTimeout == 0 {
		opts.CallTimeout = 3 * time.Second
	}
	return &Server{store: store, menu: menu, kitchen: kitchen, signer: signer, watch: watch, log: log, opts: opts, now: time.Now,
		signIn: newSignInGuard(opts.SignIn)}
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
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("idempotency-key")
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
		return errs.Invalid(field, "looks like a payment card number; card details are never accepted here: choose PAYMENT_METHOD_CARD and pay at handover")
	}
	return nil
}

// CreateOrder places an order.
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
	var scoped string
	if key != "" {
		var prior *order.Order
		prior, scoped, err = s.claimKey(ctx, c.Subject, key, requestHash(req))
		if err != nil || prior != nil {
			return respond(prior, err)
		}
	}
	o, err := s.place(ctx, c, r, scoped)
	if err != nil {
		if key != "" {
			if rerr := s.store.ReleaseKey(context.WithoutCancel(ctx), c.Subject, key); rerr != nil {
				s.log.WarnContext(ctx, "release idempotency key", "err", rerr)
			}
		}
		return nil, err
	}
	return respond(o, nil)
}

func respond(o *order.Order, err error) (*orderv1.CreateOrderResponse, error) {
	if err != nil {
		return nil, err
	}
	return &orderv1.CreateOrderResponse{Order: ToProto(o)}, nil
}

// claimKey reserves an idempotency key. It returns the original order when
// the same request already completed, an error when the key is busy or was
// used for another request, and otherwise the key scoped to this
// reservation, which the new order carries.
//
// Scoping the order's key to the reservation (key@millis) matters once a
// key expires: a later request reusing the key makes a new reservation and
// so a new order, instead of colliding with the old one.
func (s *Server) claimKey(ctx context.Context, customer, key, hash string) (*order.Order, string, error) {
	for range 3 {
		now := s.now().UTC().Truncate(time.Millisecond) // as the store keeps it
		prior, err := s.store.ReserveKey(ctx, customer, key, hash, now, s.opts.KeyTTL)
		if err != nil {
			return nil, "", err
		}
		if prior == nil {
			return nil, scopeKey(key, now), nil
		}
		if prior.Hash != hash {
			return nil, "", ErrKeyReused
		}
		if prior.Done {
			o, err := s.store.Get(ctx, prior.OrderID)
			return o, "", err
		}
		// In flight, or its request died before completing the key.
		if o, err := s.store.FindByKey(ctx, customer, scopeKey(key, prior.CreateTime)); err == nil {
			if err := s.store.CompleteKey(ctx, customer, key, o.ID); err != nil {
				return nil, "", err
			}
			return o, "", nil
		}
		if now.Sub(prior.CreateTime) < s.opts.InFlightTimeout {
			return nil, "", ErrKeyInFlight
		}
		if err := s.store.ReleaseKey(ctx, customer, key); err != nil {
			return nil, "", err
		}
	}
	return nil, "", ErrKeyInFlight
}

// scopeKey ties an idempotency key to one reservation of it.
func scopeKey(key string, reserved time.Time) string {
	return key + "@" + strconv.FormatInt(reserved.UnixMilli(), 10)
}

// unscope returns the key a customer sent, from a scoped one.
func unscope(scoped string) string {
	if i := strings.LastIndexByte(scoped, '@'); i >= 0 {
		return scoped[:i]
	}
	return scoped
}

// place prices and stores a new order. scoped is its idempotency key
// scoped to its reservation (see claimKey), or "".
func (s *Server) place(ctx context.Context, c auth.Claims, r order.Request, scoped string) (*order.Order, error) {
	price, err := s.price(ctx, r.Item)
	if err != nil {
		return nil, err
	}
	cust := order.Customer{ID: c.Subject, Name: c.Name}
	if p, err := s.store.GetCustomer(ctx, c.Subject); err == nil {
		cust.Name, cust.Phone = p.Name, p.Phone
	} else if !errors.Is(err, order.ErrCustomerNotFound) {
		return nil, err
	}
	o, err := order.New(ids.New(), cust, r, price, scoped, s.now())
	if err != nil {
		return nil, err
	}
	ev, err := statusEvent(ctx, o)
	if err != nil {
		return nil, err
	}
	err = s.store.Insert(ctx, o, ev)
	if errors.Is(err, orderdb.ErrKeyTaken) {
		// A twin request with the same reservation got there first.
		return s.store.FindByKey(ctx, c.Subject, scoped)
	}
	if err != nil {
		return nil, err
	}
	if scoped != "" {
		if err := s.store.CompleteKey(ctx, c.Subject, unscope(scoped), o.ID); err != nil {
			// The order exists and FindByKey finds it on a retry.
			s.log.WarnContext(ctx, "complete idempotency key", "err", err)
		}
	}
	return o, nil
}

// price asks the menu for the price and translates its answer, prefixing
// field names with "item." as they appear in CreateOrderRequest.
func (s *Server) price(ctx context.Context, it order.Item) (order.Price, error) {
	cctx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
	defer cancel()
	toppings := it.ToppingIDs
	resp, err := s.menu.PriceOrder(cctx, &menuv1.PriceOrderRequest{PizzaId: it.PizzaID, Size: commonv1.Size(it.Size), ToppingIds: toppings})
	if err != nil {
		return order.Price{}, menuError(ctx, err)
	}
	return priceFromProto(resp.GetPrice()), nil
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

// WatchOrder streams the order now and after every change.
func (s *Server) WatchOrder(req *orderv1.WatchOrderRequest, stream orderv1.OrderService_WatchOrderServer) error {
	ctx := stream.Context()
	if _, err := s.visibleOrder(ctx, req.GetId()); err != nil {
		return err
	}
	events := make(chan *orderv1.OrderStatusChanged, 64)
	stop, err := s.watch.Watch(req.GetId(), func(ev *orderv1.OrderStatusChanged) {
		select {
		case events <- ev:
		default: // a slow client: the periodic re-read catches it up
		}
	})
	if err != nil {
		return err
	}
	defer stop()
	// Read after subscribing, so no change falls between the two.
	o, err := s.store.Get(ctx, req.GetId())
	if err != nil {
		return err
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
			if o, err := s.store.Get(ctx, req.GetId()); err == nil && o.Revision > last {
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
