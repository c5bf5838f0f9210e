// Package kitchendb keeps tickets in MongoDB, each change written with its
// event in the ticket's outbox and guarded by the ticket's revision, so that
// of two racing moves (a cancel and a start) exactly one wins.
package kitchendb

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/pizzashop/pizzashop/pkg/mongox"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	"github.com/pizzashop/pizzashop/services/kitchen/internal/kitchen"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Store reads and writes tickets.
type Store struct {
	tickets *mongo.Collection
	// Tracker is told of every write that adds outbox entries: the
	// relay, which publishes them.
	Tracker outbox.Tracker
	inserts *mongox.Inserter
	updates *mongox.Updater
	recent  *outbox.Recent[kitchen.Ticket]
}

// recentTickets is how many tickets a store keeps as it last wrote them, so
// that the next move of one starts without a read (see outbox.Recent).
const recentTickets = 4096

// New returns a store over db.
func New(db *mongo.Database) *Store {
	tickets := db.Collection("tickets")
	return &Store{tickets: tickets, Tracker: outbox.OnWritten(nil), inserts: mongox.NewInserter(tickets, mongox.InsertGroup),
		updates: mongox.NewUpdater(tickets, mongox.UpdateGroup, outbox.FieldRevision),
		recent: outbox.NewRecent(recentTickets, func(t kitchen.Ticket) kitchen.Ticket {
			t.ToppingNames = slices.Clone(t.ToppingNames)
			return t
		})}
}

// Collections lists the collections whose outboxes the relay must drain.
func (s *Store) Collections() []*mongo.Collection { return []*mongo.Collection{s.tickets} }

// Init creates the indexes.
func (s *Store) Init(ctx context.Context) error {
	return mongox.EnsureIndexes(ctx, s.tickets,
		mongo.IndexModel{Keys: bson.D{{Key: "status", Value: 1}, {Key: "order_time", Value: 1}, {Key: "_id", Value: 1}}},
		mongo.IndexModel{Keys: bson.D{{Key: outbox.FieldAt, Value: 1}}})
}

type ticketDoc struct {
	ID             string         `bson:"_id"`
	Status         int            `bson:"status"`
	PizzaName      string         `bson:"pizza_name"`
	Size           int            `bson:"size"`
	ToppingNames   []string       `bson:"topping_names"`
	Fulfillment    int            `bson:"fulfillment"`
	Note           string         `bson:"note,omitempty"`
	CustomerName   string         `bson:"customer_name"`
	OrderTime      time.Time      `bson:"order_time"`
	CreateTime     time.Time      `bson:"create_time"`
	UpdateTime     time.Time      `bson:"update_time"`
	EstimatedReady time.Time      `bson:"estimated_ready_time"`
	Reason         string         `bson:"reason,omitempty"`
	Revision       int64          `bson:"revision"`
	Outbox         []outbox.Entry `bson:"outbox"`
	OutboxAt       time.Time      `bson:"outbox_at,omitempty"`
}

func toDoc(t kitchen.Ticket) ticketDoc {
	names := t.ToppingNames
	if names == nil {
		names = []string{}
	}
	return ticketDoc{ID: t.ID, Status: int(t.Status), PizzaName: t.PizzaName, Size: t.Size, ToppingNames: names,
		Fulfillment: t.Fulfillment, Note: t.Note, CustomerName: t.CustomerName, OrderTime: t.OrderTime,
		CreateTime: t.CreateTime, UpdateTime: t.UpdateTime, EstimatedReady: t.EstimatedReadyTime, Reason: t.Reason,
		Revision: t.Revision, Outbox: []outbox.Entry{}}
}

func (d ticketDoc) ticket() kitchen.Ticket {
	return kitchen.Ticket{ID: d.ID, Status: kitchen.Status(d.Status), PizzaName: d.PizzaName, Size: d.Size,
		ToppingNames: d.ToppingNames, Fulfillment: d.Fulfillment, Note: d.Note, CustomerName: d.CustomerName,
		OrderTime: d.OrderTime.UTC(), CreateTime: d.CreateTime.UTC(), UpdateTime: d.UpdateTime.UTC(),
		EstimatedReadyTime: d.EstimatedReady.UTC(), Reason: d.Reason, Revision: d.Revision}
}

var withoutOutbox = bson.D{{Key: outbox.FieldEntries, Value: 0}}

// Insert stores a new ticket with its events. It reports false, with no
// error, when the ticket already exists: the event that creates it was
// delivered again, or the order was cancelled before it arrived.
func (s *Store) Insert(ctx context.Context, t kitchen.Ticket, events ...outbox.Entry) (bool, error) {
	d := toDoc(t)
	err := outbox.InsertWith(ctx, s.inserts, s.Tracker, t.ID, d.Revision, events, func(at time.Time) any {
		if len(events) > 0 {
			d.Outbox, d.OutboxAt = events, at
		}
		return d
	})
	if mongox.IsDuplicate(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("insert ticket %s: %w", t.ID, mongox.Translate(err, nil, nil))
	}
	s.recent.Put(t.ID, t, outbox.State{Revision: d.Revision, Outbox: d.Outbox, At: d.OutboxAt})
	return true, nil
}

// Get reads one ticket.
func (s *Store) Get(ctx context.Context, id string) (kitchen.Ticket, error) {
	t, _, err := s.get(ctx, id, withoutOutbox)
	return t, err
}

// get reads one ticket with the fields of projection.
func (s *Store) get(ctx context.Context, id string, projection bson.D) (kitchen.Ticket, outbox.State, error) {
	var d ticketDoc
	err := s.tickets.FindOne(ctx, bson.D{{Key: "_id", Value: id}}, mongox.Project(projection)).Decode(&d)
	if err != nil {
		return kitchen.Ticket{}, outbox.State{}, fmt.Errorf("get ticket %s: %w", id, mongox.Translate(err, kitchen.ErrNotFound, nil))
	}
	return d.ticket(), outbox.State{Revision: d.Revision, Outbox: d.Outbox, At: d.OutboxAt}, nil
}

func statusFilter(statuses []kitchen.Status) bson.E {
	in := bson.A{}
	for _, st := range statuses {
		in = append(in, int(st))
	}
	return bson.E{Key: "status", Value: bson.D{{Key: "$in", Value: in}}}
}

// List returns up to limit tickets of the given statuses in arrival order,
// after the ticket with order time and id of after (nil for the start).
func (s *Store) List(ctx context.Context, statuses []kitchen.Status, limit int, after *kitchen.Ticket) ([]kitchen.Ticket, error) {
	filter := bson.D{statusFilter(statuses)}
	if after != nil {
		filter = append(filter, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "order_time", Value: bson.D{{Key: "$gt", Value: after.OrderTime}}}},
			bson.D{{Key: "order_time", Value: after.OrderTime}, {Key: "_id", Value: bson.D{{Key: "$gt", Value: after.ID}}}},
		}})
	}
	opts := options.Find().SetSort(bson.D{{Key: "order_time", Value: 1}, {Key: "_id", Value: 1}}).
		SetLimit(int64(limit)).SetProjection(withoutOutbox)
	cur, err := s.tickets.Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("list tickets: %w", mongox.Translate(err, nil, nil))
	}
	var docs []ticketDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("list tickets: %w", mongox.Translate(err, nil, nil))
	}
	out := make([]kitchen.Ticket, len(docs))
	for i, d := range docs {
		out[i] = d.ticket()
	}
	return out, nil
}

// Open returns every ticket in statuses, in no order, in one pass: the
// kitchen's queue, not a page of it. MongoDB finds them by the
// {status, order_time, _id} index; the embedded store reads every ticket,
// and streams them, so no single call runs long.
func (s *Store) Open(ctx context.Context, statuses []kitchen.Status) ([]kitchen.Ticket, error) {
	cur, err := s.tickets.Find(ctx, bson.D{statusFilter(statuses)}, options.Find().SetProjection(withoutOutbox))
	if err != nil {
		return nil, fmt.Errorf("read the open tickets: %w", mongox.Translate(err, nil, nil))
	}
	defer cur.Close(ctx)
	var out []kitchen.Ticket
	for cur.Next(ctx) {
		var d ticketDoc
		if err := cur.Decode(&d); err != nil {
			return nil, fmt.Errorf("read the open tickets: %w", err)
		}
		out = append(out, d.ticket())
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("read the open tickets: %w", mongox.Translate(err, nil, nil))
	}
	return out, nil
}

// ErrConflict: the ticket kept changing under an update.
var ErrConflict = outbox.ErrConflict

// Update reads ticket id, lets apply change it, and writes it back with the
// events apply returns, guarded by the revision it read (see
// outbox.UpdateRecent: a ticket this store wrote lately needs no read).
func (s *Store) Update(ctx context.Context, id string, apply func(*kitchen.Ticket) (bool, []outbox.Entry, error)) (kitchen.Ticket, bool, error) {
	read := func(ctx context.Context) (kitchen.Ticket, outbox.State, error) { return s.get(ctx, id, nil) }
	t, changed, err := outbox.UpdateRecent(ctx, s.updates, id, s.recent, read, apply, ticketFields, s.Tracker)
	if err != nil {
		return kitchen.Ticket{}, false, fmt.Errorf("update ticket %s: %w", id, err)
	}
	return t, changed, nil
}

// ticketFields are what a move changes.
func ticketFields(t kitchen.Ticket) bson.D {
	d := toDoc(t)
	return bson.D{
		{Key: "status", Value: d.Status}, {Key: "update_time", Value: d.UpdateTime},
		{Key: "estimated_ready_time", Value: d.EstimatedReady}, {Key: "reason", Value: d.Reason},
		{Key: outbox.FieldRevision, Value: d.Revision},
	}
}
