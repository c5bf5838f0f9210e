// Package menudb keeps the menu in MongoDB: one collection of pizzas and one
// of toppings. Every change is written together with its event in the
// document's outbox, and the menu version is derived from item revisions, so
// no write ever spans two documents.
package menudb

import (
	"context"
	"fmt"
	"time"

	"github.com/pizzashop/pizzashop/pkg/mongox"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	"github.com/pizzashop/pizzashop/services/menu/internal/menu"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Store reads and writes the menu.
type Store struct {
	pizzas   *mongo.Collection
	toppings *mongo.Collection
	currency string
	// Tracker is told of every write that adds outbox entries: the
	// relay, which publishes them.
	Tracker outbox.Tracker
}

// New returns a store over db. currency is the ISO code of every price.
func New(db *mongo.Database, currency string) *Store {
	return &Store{pizzas: db.Collection("pizzas"), toppings: db.Collection("toppings"), currency: currency, Tracker: outbox.OnWritten(nil)}
}

// Collections lists the collections whose outboxes the relay must drain.
func (s *Store) Collections() []*mongo.Collection { return []*mongo.Collection{s.pizzas, s.toppings} }

type itemDoc struct {
	ID          string         `bson:"_id"`
	Name        string         `bson:"name"`
	Description string         `bson:"description,omitempty"`
	Prices      []int64        `bson:"prices"`
	Available   bool           `bson:"available"`
	UpdateTime  time.Time      `bson:"update_time"`
	Revision    int64          `bson:"revision"`
	Outbox      []outbox.Entry `bson:"outbox"`
	OutboxAt    time.Time      `bson:"outbox_at,omitempty"`
}

func toDoc(it menu.Item) itemDoc {
	return itemDoc{ID: it.ID, Name: it.Name, Description: it.Description, Prices: it.Prices[:],
		Available: it.Available, UpdateTime: it.UpdateTime, Revision: it.Revision, Outbox: []outbox.Entry{}}
}

func (d itemDoc) item() menu.Item {
	it := menu.Item{ID: d.ID, Name: d.Name, Description: d.Description, Available: d.Available,
		UpdateTime: d.UpdateTime.UTC(), Revision: d.Revision}
	copy(it.Prices[:], d.Prices)
	return it
}

func (s *Store) coll(k menu.Kind) *mongo.Collection {
	if k == menu.KindTopping {
		return s.toppings
	}
	return s.pizzas
}

// Init creates indexes and seeds an empty store with the default menu. It is
// safe to run from several replicas at once.
func (s *Store) Init(ctx context.Context, now time.Time) error {
	idx := mongo.IndexModel{Keys: bson.D{{Key: outbox.FieldAt, Value: 1}}}
	for _, c := range s.Collections() {
		if err := mongox.EnsureIndexes(ctx, c, idx); err != nil {
			return err
		}
	}
	pizzas, toppings := menu.Seed(now)
	for k, items := range map[menu.Kind][]menu.Item{menu.KindPizza: pizzas, menu.KindTopping: toppings} {
		// Each collection on its own: a replica stopped between the two
		// inserts leaves the other one for the next start.
		n, err := s.coll(k).CountDocuments(ctx, bson.D{})
		if err != nil {
			return fmt.Errorf("count %ss: %w", k, err)
		}
		if n > 0 {
			continue
		}
		docs := make([]any, len(items))
		for i, it := range items {
			docs[i] = toDoc(it)
		}
		_, err = s.coll(k).InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
		if err != nil && !mongox.IsDuplicate(err) {
			return fmt.Errorf("seed %ss: %w", k, err)
		}
	}
	return nil
}

var noOutbox = options.Find().SetSort(bson.D{{Key: "name", Value: 1}}).
	SetProjection(bson.D{{Key: outbox.FieldEntries, Value: 0}})

// Menu reads the whole menu.
func (s *Store) Menu(ctx context.Context) (menu.Menu, error) {
	m := menu.Menu{Currency: s.currency}
	for _, k := range []menu.Kind{menu.KindPizza, menu.KindTopping} {
		cur, err := s.coll(k).Find(ctx, bson.D{}, noOutbox)
		if err != nil {
			return menu.Menu{}, fmt.Errorf("read %ss: %w", k, mongox.Translate(err, nil, nil))
		}
		var docs []itemDoc
		if err := cur.All(ctx, &docs); err != nil {
			return menu.Menu{}, fmt.Errorf("read %ss: %w", k, mongox.Translate(err, nil, nil))
		}
		items := make([]menu.Item, len(docs))
		for i, d := range docs {
			items[i] = d.item()
		}
		if k == menu.KindPizza {
			m.Pizzas = items
		} else {
			m.Toppings = items
		}
	}
	return m, nil
}

// Get reads one item.
func (s *Store) Get(ctx context.Context, k menu.Kind, id string) (menu.Item, error) {
	it, _, err := s.get(ctx, k, id)
	return it, err
}

// get reads one item and its outbox.
func (s *Store) get(ctx context.Context, k menu.Kind, id string) (menu.Item, outbox.State, error) {
	var d itemDoc
	err := s.coll(k).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
	if err != nil {
		return menu.Item{}, outbox.State{}, fmt.Errorf("get %s %q: %w", k, id, mongox.Translate(err, menu.ErrNotFound, nil))
	}
	return d.item(), outbox.State{Revision: d.Revision, Outbox: d.Outbox, At: d.OutboxAt}, nil
}

// Create stores a new item with its event.
func (s *Store) Create(ctx context.Context, k menu.Kind, it menu.Item, ev outbox.Entry) error {
	d := toDoc(it)
	events := []outbox.Entry{ev}
	err := outbox.Insert(ctx, s.coll(k), s.Tracker, it.ID, d.Revision, events, func(at time.Time) any {
		d.Outbox, d.OutboxAt = events, at
		return d
	})
	if err != nil {
		return fmt.Errorf("create %s %q: %w", k, it.ID, mongox.Translate(err, nil, menu.ErrExists))
	}
	return nil
}

// ErrConflict is returned when an item kept changing under an update. Its
// kind makes it Aborted (retry), not an internal error.
var ErrConflict = outbox.ErrConflict

// Update reads item id, applies change to it and stores the result with the
// event that event builds for it, in one document write guarded by the
// item's revision (see outbox.Update).
func (s *Store) Update(ctx context.Context, k menu.Kind, id string,
	change func(menu.Item) (menu.Item, error), event func(menu.Item) (outbox.Entry, error),
) (menu.Item, error) {
	read := func(ctx context.Context) (menu.Item, outbox.State, error) { return s.get(ctx, k, id) }
	apply := func(it *menu.Item) (bool, []outbox.Entry, error) {
		changed, err := change(*it)
		if err != nil {
			return false, nil, err
		}
		ev, err := event(changed)
		if err != nil {
			return false, nil, err
		}
		*it = changed
		return true, []outbox.Entry{ev}, nil
	}
	it, _, err := outbox.Update(ctx, s.coll(k), id, read, apply, itemFields, s.Tracker)
	if err != nil {
		return menu.Item{}, fmt.Errorf("update %s %q: %w", k, id, err)
	}
	return it, nil
}

// itemFields are what an update of an item changes.
func itemFields(it menu.Item) bson.D {
	d := toDoc(it)
	return bson.D{
		{Key: "name", Value: d.Name}, {Key: "description", Value: d.Description},
		{Key: "prices", Value: d.Prices}, {Key: "available", Value: d.Available},
		{Key: "update_time", Value: d.UpdateTime}, {Key: outbox.FieldRevision, Value: d.Revision},
	}
}
