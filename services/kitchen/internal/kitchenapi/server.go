package kitchenapi

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/errs"
	"github.com/pizzashop/pizzashop/pkg/ids"
	"github.com/pizzashop/pizzashop/pkg/natsx"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"github.com/pizzashop/pizzashop/services/kitchen/internal/kitchen"
	"github.com/pizzashop/pizzashop/services/kitchen/internal/kitchendb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Options configure the kitchen.
type Options struct {
	// BakeTime is how long one pizza takes in the oven.
	BakeTime time.Duration
	// Ovens is how many pizzas bake at once.
	Ovens int
	// KeepAlive is the longest silence on the display stream.
	KeepAlive time.Duration
}

// Server implements KitchenService and consumes placed orders.
type Server struct {
	kitchenv1.UnimplementedKitchenServiceServer
	store *kitchendb.Store
	log   *slog.Logger
	opts  Options
	now   func() time.Time

	// queue is the kitchen's open tickets, kept in memory (queue.go).
	queue queue
}

// NewServer returns the kitchen server. Feed it every ticket event, this
// replica's and the others' (TicketChanged), and say when some may have
// been missed (QueueStale): its queue and display streams follow them.
func NewServer(store *kitchendb.Store, log *slog.Logger, opts Options) *Server {
	if opts.BakeTime <= 0 {
		opts.BakeTime = 8 * time.Minute
	}
	if opts.Ovens <= 0 {
		opts.Ovens = 2
	}
	return &Server{store: store, log: log, opts: opts, now: time.Now}
}

// Subject is where a ticket's change to status s is published.
func Subject(s kitchen.Status, id string) string {
	return "kitchen." + strings.ToLower(s.String()) + "." + id
}

// OrdersConsumer is the durable consumer that turns placed orders into
// tickets.
var OrdersConsumer = natsx.ConsumerConfig{Stream: "ORDER", Durable: "kitchen-placed-orders", FilterSubjects: []string{"order.placed.*"}}

func toProto(t kitchen.Ticket) *kitchenv1.Ticket {
	return &kitchenv1.Ticket{
		Id: t.ID, Status: kitchenv1.TicketStatus(t.Status), PizzaName: t.PizzaName, Size: commonv1.Size(t.Size),
		ToppingNames: t.ToppingNames, Fulfillment: orderv1.Fulfillment(t.Fulfillment), Note: t.Note,
		CustomerName: t.CustomerName, OrderTime: timestamppb.New(t.OrderTime), CreateTime: timestamppb.New(t.CreateTime),
		UpdateTime: timestamppb.New(t.UpdateTime), EstimatedReadyTime: timestamppb.New(t.EstimatedReadyTime),
		Reason: t.Reason, Revision: t.Revision,
	}
}

func ticketEvent(ctx context.Context, t kitchen.Ticket) (outbox.Entry, error) {
	ev := &kitchenv1.TicketStatusChanged{EventId: outbox.NewID(), OccurTime: timestamppb.New(t.UpdateTime),
		Status: kitchenv1.TicketStatus(t.Status), Ticket: toProto(t)}
	return outbox.NewEntry(ctx, Subject(t.Status, t.ID), ev.EventId, ev)
}

// HandlePlaced turns a placed order into a queued ticket. A repeated event,
// or one for an order cancelled before it arrived, changes nothing.
func (s *Server) HandlePlaced(ctx context.Context, m jetstream.Msg) error {
	var ev orderv1.OrderStatusChanged
	if err := proto.Unmarshal(m.Data(), &ev); err != nil {
		return natsx.Permanent(fmt.Errorf("decode order event: %w", err))
	}
	o := ev.GetOrder()
	if ev.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_PLACED {
		return natsx.Permanent(fmt.Errorf("order %q: event status is %s, want ORDER_STATUS_PLACED", o.GetId(), ev.GetStatus()))
	}
	// A ticket of an id the API refuses could never be worked, and would
	// sit in the queue for good.
	if !ids.Valid(o.GetId()) {
		return natsx.Permanent(fmt.Errorf("placed order id %q: must be 1 to %d lower-case letters and digits", o.GetId(), ids.MaxLen))
	}
	ahead, err := s.QueueLength(ctx)
	if err != nil {
		return err
	}
	now := s.now()
	var toppings []string
	for _, l := range o.GetPrice().GetToppings() {
		toppings = append(toppings, l.GetName())
	}
	t := kitchen.New(kitchen.Ticket{
		ID: o.GetId(), PizzaName: o.GetPrice().GetPizza().GetName(), Size: int(o.GetItem().GetSize()),
		ToppingNames: toppings, Fulfillment: int(o.GetFulfillment()), Note: o.GetNote(),
		CustomerName: o.GetCustomerName(), OrderTime: o.GetCreateTime().AsTime(),
	}, now, kitchen.Estimate(now, ahead, s.opts.BakeTime, s.opts.Ovens))
	entry, err := ticketEvent(ctx, t)
	if err != nil {
		return err
	}
	// A ticket already there (the event came again, or a cancel left a
	// tombstone) is kept: Insert refuses the twin.
	inserted, err := s.store.Insert(ctx, t, entry)
	if inserted {
		// At once for the next estimate here; the event tells the others.
		s.ticketSeen(toProto(t))
	}
	return err
}

// Page sizes of ListTickets.
const (
	defaultPageSize = 50
	maxPageSize     = 200
)

// ListTickets lists tickets in arrival order.
func (s *Server) ListTickets(ctx context.Context, req *kitchenv1.ListTicketsRequest) (*kitchenv1.ListTicketsResponse, error) {
	statuses := []kitchen.Status{kitchen.StatusQueued, kitchen.StatusBaking}
	if st := req.GetStatus(); st != kitchenv1.TicketStatus_TICKET_STATUS_UNSPECIFIED {
		if _, ok := kitchenv1.TicketStatus_name[int32(st)]; !ok {
			return nil, errs.Invalid("status", "unknown ticket status %d", st)
		}
		statuses = []kitchen.Status{kitchen.Status(st)}
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, errs.Invalid("page_size", "must not be negative")
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	var after *kitchen.Ticket
	if tok := req.GetPageToken(); tok != "" {
		if !ids.Valid(tok) {
			return nil, errs.Invalid("page_token", "is not a token from a previous page")
		}
		t, err := s.store.Get(ctx, tok)
		if err != nil {
			if errs.KindOf(err) == errs.KindNotFound {
				return nil, errs.Invalid("page_token", "is not a token from a previous page")
			}
			return nil, err
		}
		after = &t
	}
	tickets, err := s.store.List(ctx, statuses, size+1, after)
	if err != nil {
		return nil, err
	}
	resp := &kitchenv1.ListTicketsResponse{}
	if len(tickets) > size {
		tickets = tickets[:size]
		resp.NextPageToken = tickets[size-1].ID
	}
	for _, t := range tickets {
		resp.Tickets = append(resp.Tickets, toProto(t))
	}
	return resp, nil
}

func (s *Server) get(ctx context.Context, id string) (kitchen.Ticket, error) {
	if !ids.Valid(id) {
		return kitchen.Ticket{}, kitchen.ErrNotFound
	}
	return s.store.Get(ctx, id)
}

// GetTicket returns one ticket.
func (s *Server) GetTicket(ctx context.Context, req *kitchenv1.GetTicketRequest) (*kitchenv1.GetTicketResponse, error) {
	t, err := s.get(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &kitchenv1.GetTicketResponse{Ticket: toProto(t)}, nil
}

// change applies a move to a ticket and stores it with its event.
func (s *Server) change(ctx context.Context, id string, move func(*kitchen.Ticket) (bool, error)) (kitchen.Ticket, error) {
	if !ids.Valid(id) {
		return kitchen.Ticket{}, kitchen.ErrNotFound
	}
	t, changed, err := s.store.Update(ctx, id, func(t *kitchen.Ticket) (bool, []outbox.Entry, error) {
		changed, err := move(t)
		if err != nil || !changed {
			return false, nil, err
		}
		e, err := ticketEvent(ctx, *t)
		return true, []outbox.Entry{e}, err
	})
	if err == nil && changed {
		s.ticketSeen(toProto(t))
	}
	return t, err
}

func always(f func(*kitchen.Ticket) error) func(*kitchen.Ticket) (bool, error) {
	return func(t *kitchen.Ticket) (bool, error) { return true, f(t) }
}

// StartTicket puts a ticket in the oven.
func (s *Server) StartTicket(ctx context.Context, req *kitchenv1.StartTicketRequest) (*kitchenv1.StartTicketResponse, error) {
	t, err := s.change(ctx, req.GetId(), always(func(t *kitchen.Ticket) error { return t.Start(s.now(), s.opts.BakeTime) }))
	if err != nil {
		return nil, err
	}
	return &kitchenv1.StartTicketResponse{Ticket: toProto(t)}, nil
}

// ReadyTicket marks a ticket ready.
func (s *Server) ReadyTicket(ctx context.Context, req *kitchenv1.ReadyTicketRequest) (*kitchenv1.ReadyTicketResponse, error) {
	t, err := s.change(ctx, req.GetId(), always(func(t *kitchen.Ticket) error { return t.Ready(s.now()) }))
	if err != nil {
		return nil, err
	}
	return &kitchenv1.ReadyTicketResponse{Ticket: toProto(t)}, nil
}

// RejectTicket refuses a ticket.
func (s *Server) RejectTicket(ctx context.Context, req *kitchenv1.RejectTicketRequest) (*kitchenv1.RejectTicketResponse, error) {
	t, err := s.change(ctx, req.GetId(), always(func(t *kitchen.Ticket) error { return t.Reject(req.GetReason(), s.now()) }))
	if err != nil {
		return nil, err
	}
	return &kitchenv1.RejectTicketResponse{Ticket: toProto(t)}, nil
}

// CancelTicket cancels a ticket that has not started baking. For an order
// whose ticket has not arrived yet, it leaves a cancelled tombstone so that
// the late arrival is ignored.
func (s *Server) CancelTicket(ctx context.Context, req *kitchenv1.CancelTicketRequest) (*kitchenv1.CancelTicketResponse, error) {
	id := req.GetId()
	if !ids.Valid(id) {
		return nil, kitchen.ErrNotFound
	}
	reason := strings.TrimSpace(req.GetReason())
	if len([]rune(reason)) > kitchen.MaxReason {
		return nil, errs.Invalid("reason", "must be at most %d characters", kitchen.MaxReason)
	}
	for range 3 {
		if _, err := s.store.Get(ctx, id); err == nil {
			break
		}
		// The tombstone carries its CANCELLED event, so the order follows
		// even if the caller never gets to record the cancel itself.
		tomb := kitchen.Tombstone(id, reason, s.now())
		ev, err := ticketEvent(ctx, tomb)
		if err != nil {
			return nil, err
		}
		inserted, err := s.store.Insert(ctx, tomb, ev)
		if err != nil {
			return nil, err
		}
		if inserted {
			t, err := s.store.Get(ctx, id)
			if err != nil {
				return nil, err
			}
			return &kitchenv1.CancelTicketResponse{Ticket: toProto(t)}, nil
		}
	}
	t, err := s.change(ctx, id, func(t *kitchen.Ticket) (bool, error) { return t.Cancel(reason, s.now()) })
	if err != nil {
		return nil, err
	}
	return &kitchenv1.CancelTicketResponse{Ticket: toProto(t)}, nil
}
