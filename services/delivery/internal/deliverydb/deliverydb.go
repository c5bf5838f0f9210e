// Package deliverydb keeps deliveries in MongoDB, one document per delivery.
// Each change is written with its event in the document's outbox and guarded
// by the delivery's revision, so that of two couriers dispatching the same
// order at once exactly one wins.
package deliverydb

import (
	"context"
	"fmt"
	"time"

	"github.com/pizzashop/pizzashop/pkg/mongox"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	"github.com/pizzashop/pizzashop/services/delivery/internal/delivery"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Store reads and writes deliveries.
type Store struct {
	deliveries *mongo.Collection
	// Tracker is told of every write that adds outbox entries: the
	// relay, which publishes them.
	Tracker outbox.Tracker
	inserts *mongox.Inserter
	updates *mongox.Updater
	recent  *outbox.Recent[delivery.Delivery]
}

// recentDeliveries is how many deliveries a store keeps as it last wrote
// them, so that the next move of one starts without a read (see
// outbox.Recent).
const recentDeliveries = 4096

// New returns a store over db.
func New(db *mongo.Database) *Store {
	deliveries := db.Collection("deliveries")
	return &Store{deliveries: deliveries, Tracker: outbox.OnWritten(nil), inserts: mongox.NewInserter(deliveries, mongox.InsertGroup),
		updates: mongox.NewUpdater(deliveries, mongox.UpdateGroup, outbox.FieldRevision),
		recent:  outbox.NewRecent(recentDeliveries, func(d delivery.Delivery) delivery.Delivery { return toDoc(d).delivery() })}
}

// Collections lists the collections whose outboxes the relay must drain.
func (s *Store) Collections() []*mongo.Collection { return []*mongo.Collection{s.deliveries} }

// Init creates the indexes: one for the board (open deliveries in ready
// order) and one for the relay.
func (s *Store) Init(ctx context.Context) error {
	return mongox.EnsureIndexes(ctx, s.deliveries,
		mongo.IndexModel{Keys: bson.D{{Key: "status", Value: 1}, {Key: "ready_time", Value: 1}, {Key: "_id", Value: 1}}},
		mongo.IndexModel{Keys: bson.D{{Key: outbox.FieldAt, Value: 1}}})
}

type addressDoc struct {
	Line1        string `bson:"line1"`
	Line2        string `bson:"line2,omitempty"`
	City         string `bson:"city"`
	PostalCode   string `bson:"postal_code"`
	Instructions string `bson:"instructions,omitempty"`
}

type deliveryDoc struct {
	ID            string      `bson:"_id"`
	Status        int         `bson:"status"`
	Fulfillment   int         `bson:"fulfillment"`
	CustomerName  string      `bson:"customer_name"`
	CustomerPhone string      `bson:"customer_phone,omitempty"`
	Address       *addressDoc `bson:"address,omitempty"`
	Summary       string      `bson:"summary"`
	AmountMinor   int64       `bson:"amount_due_minor"`
	Currency      string      `bson:"currency"`
	Payment       int         `bson:"payment_method"`
	ReadyTime     time.Time   `bson:"ready_time"`
	// Times of moves not made yet are absent rather than year one.
	DispatchTime *time.Time     `bson:"dispatch_time,omitempty"`
	CompleteTime *time.Time     `bson:"complete_time,omitempty"`
	UpdateTime   time.Time      `bson:"update_time"`
	CourierID    string         `bson:"courier_id,omitempty"`
	Revision     int64          `bson:"revision"`
	Outbox       []outbox.Entry `bson:"outbox"`
	OutboxAt     time.Time      `bson:"outbox_at,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func timeOf(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

func toDoc(d delivery.Delivery) deliveryDoc {
	r := d.Record()
	h := r.Handover
	doc := deliveryDoc{
		ID: r.ID, Status: int(r.Status), Fulfillment: int(h.Fulfillment),
		CustomerName: h.CustomerName, CustomerPhone: h.CustomerPhone, Summary: h.Summary,
		AmountMinor: h.AmountDue.AmountMinor, Currency: h.AmountDue.Currency, Payment: int(h.Payment),
		ReadyTime: r.ReadyTime, DispatchTime: timePtr(r.DispatchTime), CompleteTime: timePtr(r.CompleteTime),
		UpdateTime: r.UpdateTime, CourierID: r.CourierID, Revision: r.Revision, Outbox: []outbox.Entry{},
	}
	if a := h.Address; a != nil {
		doc.Address = &addressDoc{Line1: a.Line1, Line2: a.Line2, City: a.City, PostalCode: a.PostalCode, Instructions: a.Instructions}
	}
	return doc
}

func (doc deliveryDoc) delivery() delivery.Delivery {
	r := delivery.Record{
		ID: doc.ID, Status: delivery.Status(doc.Status),
		Handover: delivery.Handover{
			Fulfillment: delivery.Fulfillment(doc.Fulfillment), CustomerName: doc.CustomerName,
			CustomerPhone: doc.CustomerPhone, Summary: doc.Summary,
			AmountDue: delivery.Money{AmountMinor: doc.AmountMinor, Currency: doc.Currency},
			Payment:   delivery.Payment(doc.Payment),
		},
		ReadyTime: doc.ReadyTime.UTC(), DispatchTime: timeOf(doc.DispatchTime), CompleteTime: timeOf(doc.CompleteTime),
		UpdateTime: doc.UpdateTime.UTC(), CourierID: doc.CourierID, Revision: doc.Revision,
	}
	if a := doc.Address; a != nil {
		r.Handover.Address = &delivery.Address{Line1: a.Line1, Line2: a.Line2, City: a.City, PostalCode: a.PostalCode, Instructions: a.Instructions}
	}
	return delivery.Restore(r)
}

var withoutOutbox = bson.D{{Key: outbox.FieldEntries, Value: 0}}

// Insert stores a new delivery with its events. It reports false, with no
// error, when the delivery already exists: the ready event that creates it
// was delivered again.
func (s *Store) Insert(ctx context.Context, d delivery.Delivery, events ...outbox.Entry) (bool, error) {
	doc := toDoc(d)
	err := outbox.InsertWith(ctx, s.inserts, s.Tracker, d.ID(), doc.Revision, events, func(at time.Time) any {
		if len(events) > 0 {
			doc.Outbox, doc.OutboxAt = events, at
		}
		return doc
	})
	if mongox.IsDuplicate(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("insert delivery %s: %w", d.ID(), mongox.Translate(err, nil, nil))
	}
	s.recent.Put(d.ID(), d, outbox.State{Revision: doc.Revision, Outbox: doc.Outbox, At: doc.OutboxAt})
	return true, nil
}

// Get reads one delivery.
func (s *Store) Get(ctx context.Context, id string) (delivery.Delivery, error) {
	d, _, err := s.get(ctx, id, withoutOutbox)
	return d, err
}

// get reads one delivery with the fields of projection.
func (s *Store) get(ctx context.Context, id string, projection bson.D) (delivery.Delivery, outbox.State, error) {
	var doc deliveryDoc
	err := s.deliveries.FindOne(ctx, bson.D{{Key: "_id", Value: id}}, mongox.Project(projection)).Decode(&doc)
	if err != nil {
		return delivery.Delivery{}, outbox.State{}, fmt.Errorf("get delivery %s: %w", id, mongox.Translate(err, delivery.ErrNotFound, nil))
	}
	return doc.delivery(), outbox.State{Revision: doc.Revision, Outbox: doc.Outbox, At: doc.OutboxAt}, nil
}

// Filter selects deliveries. Zero values select everything.
type Filter struct {
	// Statuses the deliveries are in; empty means any.
	Statuses []delivery.Status
	// Fulfillment of the deliveries; zero means both.
	Fulfillment delivery.Fulfillment
}

// List returns up to limit deliveries matching f in the order they became
// ready, starting after the delivery after (nil for the start). Only after's
// ready time and id matter, so it may have changed status since.
func (s *Store) List(ctx context.Context, f Filter, limit int, after *delivery.Delivery) ([]delivery.Delivery, error) {
	filter := bson.D{}
	if len(f.Statuses) > 0 {
		in := bson.A{}
		for _, st := range f.Statuses {
			in = append(in, int(st))
		}
		filter = append(filter, bson.E{Key: "status", Value: bson.D{{Key: "$in", Value: in}}})
	}
	if f.Fulfillment != 0 {
		filter = append(filter, bson.E{Key: "fulfillment", Value: int(f.Fulfillment)})
	}
	if after != nil {
		filter = append(filter, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "ready_time", Value: bson.D{{Key: "$gt", Value: after.ReadyTime()}}}},
			bson.D{{Key: "ready_time", Value: after.ReadyTime()}, {Key: "_id", Value: bson.D{{Key: "$gt", Value: after.ID()}}}},
		}})
	}
	opts := options.Find().SetSort(bson.D{{Key: "ready_time", Value: 1}, {Key: "_id", Value: 1}}).
		SetLimit(int64(limit)).SetProjection(withoutOutbox)
	cur, err := s.deliveries.Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", mongox.Translate(err, nil, nil))
	}
	var docs []deliveryDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("list deliveries: %w", mongox.Translate(err, nil, nil))
	}
	out := make([]delivery.Delivery, len(docs))
	for i, doc := range docs {
		out[i] = doc.delivery()
	}
	return out, nil
}

// ErrConflict: the delivery kept changing under an update.
var ErrConflict = outbox.ErrConflict

// Update reads delivery id, lets apply change it, and writes it back with
// the events apply returns, guarded by the revision it read (see
// outbox.Update): apply may run more than once and must depend only on the
// delivery it is given.
func (s *Store) Update(ctx context.Context, id string, apply func(*delivery.Delivery) (bool, []outbox.Entry, error)) (delivery.Delivery, bool, error) {
	read := func(ctx context.Context) (delivery.Delivery, outbox.State, error) { return s.get(ctx, id, nil) }
	d, changed, err := outbox.UpdateRecent(ctx, s.updates, id, s.recent, read, apply, deliveryFields, s.Tracker)
	if err != nil {
		return delivery.Delivery{}, false, fmt.Errorf("update delivery %s: %w", id, err)
	}
	return d, changed, nil
}

// deliveryFields are what a move changes. Moves only ever set the times and
// the courier, never clear them.
func deliveryFields(d delivery.Delivery) bson.D {
	doc := toDoc(d)
	set := bson.D{
		{Key: "status", Value: doc.Status}, {Key: "update_time", Value: doc.UpdateTime},
		{Key: outbox.FieldRevision, Value: doc.Revision},
	}
	if doc.DispatchTime != nil {
		set = append(set, bson.E{Key: "dispatch_time", Value: *doc.DispatchTime})
	}
	if doc.CompleteTime != nil {
		set = append(set, bson.E{Key: "complete_time", Value: *doc.CompleteTime})
	}
	if doc.CourierID != "" {
		set = append(set, bson.E{Key: "courier_id", Value: doc.CourierID})
	}
	return set
}
