// Package mongox holds the MongoDB helpers the services share: connecting
// with a bounded pool, declaring indexes, and translating driver errors into
// domain error kinds.
package mongox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pizzashop/pizzashop/pkg/errs"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
)

// DefaultTimeout bounds every store operation whose context has no earlier
// deadline: a store that hangs answers ErrUnavailable (503) after it,
// instead of holding the request, its goroutine and a pooled connection.
const DefaultTimeout = 3 * time.Second

// Option configures Connect.
type Option func(*options.ClientOptions)

// WithTimeout replaces DefaultTimeout.
func WithTimeout(d time.Duration) Option {
	return func(o *options.ClientOptions) { o.SetTimeout(d) }
}

// Connect returns a client for uri. The driver connects lazily and
// reconnects on its own, so a store that is down at start delays requests
// instead of failing the process. maxPool caps concurrent operations; the
// embedded store degrades badly with many concurrent writers. Every
// operation, waiting for a pooled connection included, ends after
// DefaultTimeout unless its context ends first.
func Connect(uri string, maxPool uint64, opts ...Option) (*mongo.Client, error) {
	o := options.Client().ApplyURI(uri).
		SetMaxPoolSize(maxPool).
		SetServerSelectionTimeout(5 * time.Second).
		SetConnectTimeout(5 * time.Second).
		SetTimeout(DefaultTimeout).
		SetAppName("pizzashop")
	for _, opt := range opts {
		opt(o)
	}
	c, err := mongo.Connect(o)
	if err != nil {
		return nil, fmt.Errorf("mongo connect: %w", err)
	}
	return c, nil
}

// Ping reports whether the primary answers.
func Ping(c *mongo.Client) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := c.Ping(ctx, readpref.Primary()); err != nil {
			return fmt.Errorf("mongo: %w", err)
		}
		return nil
	}
}

// EnsureIndexes creates the indexes of coll, retrying until the store
// answers or ctx ends. Indexes are created one at a time: FerretDB 1.x drops
// the connection on a createIndexes naming several indexes that exist
// already, which is every restart.
func EnsureIndexes(ctx context.Context, coll *mongo.Collection, models ...mongo.IndexModel) error {
	wait := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		var err error
		for _, m := range models {
			if _, err = coll.Indexes().CreateOne(ctx, m); err != nil {
				break
			}
		}
		if err == nil {
			return nil
		}
		if attempt == 5 {
			slog.Warn("still creating indexes; is the store up?", "collection", coll.Name(), "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create indexes on %s: %w", coll.Name(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// ErrUnavailable is returned when the store cannot be reached.
var ErrUnavailable = errs.New(errs.KindUnavailable, "STORE_UNAVAILABLE", "the store is unavailable, try again shortly")

// Translate turns a driver error into a domain error: no document becomes
// notFound, a duplicate key becomes exists, network trouble and timeouts
// become ErrUnavailable; anything else is wrapped as is. notFound and exists
// may be nil to leave those cases wrapped.
func Translate(err error, notFound, exists error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, mongo.ErrNoDocuments) && notFound != nil:
		return notFound
	case mongo.IsDuplicateKeyError(err) && exists != nil:
		return exists
	case mongo.IsNetworkError(err) || mongo.IsTimeout(err) || errors.Is(err, mongo.ErrClientDisconnected):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// IsDuplicate reports whether err is a unique-index violation.
func IsDuplicate(err error) bool { return mongo.IsDuplicateKeyError(err) }

// Project returns the options of a FindOne that reads only the fields
// projection selects, or the whole document when it is nil.
func Project(projection bson.D) *options.FindOneOptionsBuilder {
	o := options.FindOne()
	if projection != nil {
		o.SetProjection(projection)
	}
	return o
}

// Int64Field finds the int64 value of key in d, as a write's $set gives a
// revision.
func Int64Field(d bson.D, key string) (int64, bool) {
	for _, e := range d {
		if e.Key == key {
			n, ok := e.Value.(int64)
			return n, ok
		}
	}
	return 0, false
}
