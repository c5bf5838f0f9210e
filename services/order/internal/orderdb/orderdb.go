// Package orderdb keeps orders and customers in MongoDB. Every order change
// is written with its event in the order document's outbox, guarded by the
// order's revision, so no write spans two documents. An order placed with an
// Idempotency-Key has an id derived from the customer and the key, so the
// store's unique _id is what refuses a second order for one key.
package orderdb

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pizzashop/pizzashop/pkg/errs"
	"github.com/pizzashop/pizzashop/pkg/mongox"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	"github.com/pizzashop/pizzashop/services/order/internal/order"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Store reads and writes orders.
type Store struct {
	orders    *mongo.Collection
	customers *mongo.Collection
	// Tracker is told of every write that adds outbox entries: the
	// relay, which publishes them.
	Tracker outbox.Tracker
	inserts *mongox.Inserter
	updates *mongox.Updater
	recent  *outbox.Recent[*order.Order]
}

// recentOrders is how many orders a store keeps as it last wrote them, so
// that the next step of one starts without a read (see outbox.Recent).
const recentOrders = 4096

// New returns a store over db.
func New(db *mongo.Database) *Store {
	orders := db.Collection("orders")
	return &Store{orders: orders, customers: db.Collection("customers"),
		Tracker: outbox.OnWritten(nil), inserts: mongox.NewInserter(orders, mongox.InsertGroup),
		updates: mongox.NewUpdater(orders, mongox.UpdateGroup, outbox.FieldRevision),
		recent:  outbox.NewRecent(recentOrders, func(o *order.Order) *order.Order { return toDoc(o).order() })}
}

// Collections lists the collections whose outboxes the relay must drain.
func (s *Store) Collections() []*mongo.Collection { return []*mongo.Collection{s.orders} }

// Init creates the indexes.
func (s *Store) Init(ctx context.Context) error {
	if err := mongox.EnsureIndexes(ctx, s.orders,
		mongo.IndexModel{Keys: bson.D{{Key: "customer_id", Value: 1}, {Key: "create_time", Value: -1}, {Key: "_id", Value: -1}}},
		mongo.IndexModel{Keys: bson.D{{Key: "create_time", Value: -1}, {Key: "_id", Value: -1}}},
		mongo.IndexModel{Keys: bson.D{{Key: outbox.FieldAt, Value: 1}}},
	); err != nil {
		return err
	}
	// Stores made before keys were folded into order ids had a unique index
	// on a field new orders no longer carry.
	if err := s.orders.Indexes().DropOne(ctx, "idem_1"); err != nil && !indexNotFound(err) {
		return fmt.Errorf("drop index idem_1: %w", mongox.Translate(err, nil, nil))
	}
	return mongox.EnsureIndexes(ctx, s.customers,
		mongo.IndexModel{Keys: bson.D{{Key: "email", Value: 1}}, Options: options.Index().SetUnique(true)})
}

func indexNotFound(err error) bool {
	var ce mongo.CommandError
	return errors.As(err, &ce) && (ce.Code == 27 || strings.Contains(ce.Message, "index not found"))
}

type lineDoc struct {
	ID     string `bson:"id"`
	Name   string `bson:"name"`
	Amount int64  `bson:"amount"`
}

type changeDoc struct {
	Status int       `bson:"status"`
	Time   time.Time `bson:"time"`
	Reason string    `bson:"reason,omitempty"`
}

type addressDoc struct {
	Line1        string `bson:"line1"`
	Line2        string `bson:"line2,omitempty"`
	City         string `bson:"city"`
	PostalCode   string `bson:"postal_code"`
	Instructions string `bson:"instructions,omitempty"`
}

type orderDoc struct {
	ID             string         `bson:"_id"`
	CustomerID     string         `bson:"customer_id"`
	CustomerName   string         `bson:"customer_name"`
	CustomerPhone  string         `bson:"customer_phone"`
	PizzaID        string         `bson:"pizza_id"`
	Size           int            `bson:"size"`
	ToppingIDs     []string       `bson:"topping_ids"`
	Fulfillment    int            `bson:"fulfillment"`
	Address        *addressDoc    `bson:"address,omitempty"`
	Payment        int            `bson:"payment"`
	Note           string         `bson:"note,omitempty"`
	PricePizza     lineDoc        `bson:"price_pizza"`
	PriceToppings  []lineDoc      `bson:"price_toppings"`
	PriceTotal     int64          `bson:"price_total"`
	Currency       string         `bson:"currency"`
	Status         int            `bson:"status"`
	History        []changeDoc    `bson:"history"`
	CreateTime     time.Time      `bson:"create_time"`
	UpdateTime     time.Time      `bson:"update_time"`
	EstimatedReady time.Time      `bson:"estimated_ready_time,omitempty"`
	Rejection      string         `bson:"rejection_reason,omitempty"`
	Revision       int64          `bson:"revision"`
	RequestHash    string         `bson:"request_hash,omitempty"`
	Outbox         []outbox.Entry `bson:"outbox"`
	OutboxAt       time.Time      `bson:"outbox_at,omitempty"`
}

func toDoc(o *order.Order) orderDoc {
	d := orderDoc{
		ID: o.ID, CustomerID: o.Customer.ID, CustomerName: o.Customer.Name, CustomerPhone: o.Customer.Phone,
		PizzaID: o.Item.PizzaID, Size: int(o.Item.Size), ToppingIDs: append([]string{}, o.Item.ToppingIDs...),
		Fulfillment: int(o.Fulfillment), Payment: int(o.Payment), Note: o.Note,
		PricePizza: lineDoc(o.Price.Pizza), PriceTotal: o.Price.Total, Currency: o.Price.Currency,
		Status: int(o.Status), CreateTime: o.CreateTime, UpdateTime: o.UpdateTime, EstimatedReady: o.EstimatedReadyTime,
		Rejection: o.RejectionReason, Revision: o.Revision, RequestHash: o.RequestHash,
		Outbox: []outbox.Entry{}, PriceToppings: []lineDoc{},
	}
	if o.Address != nil {
		a := addressDoc(*o.Address)
		d.Address = &a
	}
	for _, l := range o.Price.Toppings {
		d.PriceToppings = append(d.PriceToppings, lineDoc(l))
	}
	for _, c := range o.History {
		d.History = append(d.History, changeDoc{Status: int(c.Status), Time: c.Time, Reason: c.Reason})
	}
	return d
}

func (d orderDoc) order() *order.Order {
	o := &order.Order{
		ID: d.ID, Customer: order.Customer{ID: d.CustomerID, Name: d.CustomerName, Phone: d.CustomerPhone},
		Item:        order.Item{PizzaID: d.PizzaID, Size: order.Size(d.Size), ToppingIDs: d.ToppingIDs},
		Fulfillment: order.Fulfillment(d.Fulfillment), Payment: order.Payment(d.Payment), Note: d.Note,
		Price:  order.Price{Pizza: order.Line(d.PricePizza), Total: d.PriceTotal, Currency: d.Currency},
		Status: order.Status(d.Status), CreateTime: d.CreateTime.UTC(), UpdateTime: d.UpdateTime.UTC(),
		RejectionReason: d.Rejection, Revision: d.Revision, RequestHash: d.RequestHash,
	}
	if !d.EstimatedReady.IsZero() {
		o.EstimatedReadyTime = d.EstimatedReady.UTC()
	}
	if d.Address != nil {
		a := order.Address(*d.Address)
		o.Address = &a
	}
	for _, l := range d.PriceToppings {
		o.Price.Toppings = append(o.Price.Toppings, order.Line(l))
	}
	for _, c := range d.History {
		o.History = append(o.History, order.Change{Status: order.Status(c.Status), Time: c.Time.UTC(), Reason: c.Reason})
	}
	return o
}

var withoutOutbox = bson.D{{Key: outbox.FieldEntries, Value: 0}}

// ErrExists is returned by Insert when an order with the same id exists:
// for an id derived from an Idempotency-Key, the order that key placed.
var ErrExists = errors.New("an order with this id already exists")

// Insert stores a new order with its event.
func (s *Store) Insert(ctx context.Context, o *order.Order, ev outbox.Entry) error {
	d := toDoc(o)
	events := []outbox.Entry{ev}
	err := outbox.InsertWith(ctx, s.inserts, s.Tracker, o.ID, d.Revision, events, func(at time.Time) any {
		d.Outbox, d.OutboxAt = events, at
		return d
	})
	if err != nil {
		return fmt.Errorf("insert order %s: %w", o.ID, mongox.Translate(err, nil, ErrExists))
	}
	s.recent.Put(o.ID, o, outbox.State{Revision: d.Revision, Outbox: d.Outbox, At: d.OutboxAt})
	return nil
}

// Get reads one order.
func (s *Store) Get(ctx context.Context, id string) (*order.Order, error) {
	o, _, err := s.get(ctx, id, withoutOutbox)
	return o, err
}

// get reads one order with the fields of projection.
func (s *Store) get(ctx context.Context, id string, projection bson.D) (*order.Order, outbox.State, error) {
	var d orderDoc
	err := s.orders.FindOne(ctx, bson.D{{Key: "_id", Value: id}}, mongox.Project(projection)).Decode(&d)
	if err != nil {
		return nil, outbox.State{}, fmt.Errorf("get order %s: %w", id, mongox.Translate(err, order.ErrNotFound, nil))
	}
	return d.order(), outbox.State{Revision: d.Revision, Outbox: d.Outbox, At: d.OutboxAt}, nil
}

// Cursor marks a position in a newest-first listing.
type Cursor struct {
	CreateTime time.Time
	ID         string
}

// ErrBadPageToken: the page token was not one we issued.
var ErrBadPageToken = errs.Invalid("page_token", "is not a token from a previous page")

// Encode turns the cursor into an opaque page token.
func (c Cursor) Encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.CreateTime.UnixNano(), 10) + "|" + c.ID))
}

// DecodeCursor parses a page token.
func DecodeCursor(tok string) (*Cursor, error) {
	if tok == "" {
		return nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) > 200 {
		return nil, ErrBadPageToken
	}
	ts, id, ok := strings.Cut(string(raw), "|")
	n, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || id == "" {
		return nil, ErrBadPageToken
	}
	return &Cursor{CreateTime: time.Unix(0, n).UTC(), ID: id}, nil
}

// List returns up to limit orders newest first, of one customer or, with an
// empty customerID, of everyone, starting after the cursor. next is nil on
// the last page.
func (s *Store) List(ctx context.Context, customerID string, limit int, after *Cursor) (orders []*order.Order, next *Cursor, err error) {
	filter := bson.D{}
	if customerID != "" {
		filter = append(filter, bson.E{Key: "customer_id", Value: customerID})
	}
	if after != nil {
		filter = append(filter, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "create_time", Value: bson.D{{Key: "$lt", Value: after.CreateTime}}}},
			bson.D{{Key: "create_time", Value: after.CreateTime}, {Key: "_id", Value: bson.D{{Key: "$lt", Value: after.ID}}}},
		}})
	}
	opts := options.Find().SetSort(bson.D{{Key: "create_time", Value: -1}, {Key: "_id", Value: -1}}).
		SetLimit(int64(limit + 1)).SetProjection(withoutOutbox)
	cur, err := s.orders.Find(ctx, filter, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("list orders: %w", mongox.Translate(err, nil, nil))
	}
	var docs []orderDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, nil, fmt.Errorf("list orders: %w", mongox.Translate(err, nil, nil))
	}
	for _, d := range docs {
		orders = append(orders, d.order())
	}
	if len(orders) > limit {
		orders = orders[:limit]
		last := orders[limit-1]
		next = &Cursor{CreateTime: last.CreateTime, ID: last.ID}
	}
	return orders, next, nil
}

// ErrConflict: the order kept changing under an update.
var ErrConflict = outbox.ErrConflict

// Update reads order id, lets apply change it, and writes it back with the
// events apply returns, in one write guarded by the revision it read (see
// outbox.Update). When apply reports no change, nothing is written.
func (s *Store) Update(ctx context.Context, id string, apply func(*order.Order) (changed bool, events []outbox.Entry, err error)) (*order.Order, bool, error) {
	read := func(ctx context.Context) (*order.Order, outbox.State, error) { return s.get(ctx, id, nil) }
	o, changed, err := outbox.UpdateRecent(ctx, s.updates, id, s.recent, read,
		func(o **order.Order) (bool, []outbox.Entry, error) { return apply(*o) }, orderFields, s.Tracker)
	if err != nil {
		return nil, false, fmt.Errorf("update order %s: %w", id, err)
	}
	return o, changed, nil
}

// orderFields are what a lifecycle step changes.
func orderFields(o *order.Order) bson.D {
	d := toDoc(o)
	return bson.D{
		{Key: "status", Value: d.Status}, {Key: "history", Value: d.History},
		{Key: "update_time", Value: d.UpdateTime}, {Key: "estimated_ready_time", Value: d.EstimatedReady},
		{Key: "rejection_reason", Value: d.Rejection}, {Key: outbox.FieldRevision, Value: d.Revision},
	}
}
