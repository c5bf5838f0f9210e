package orderdb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pizzashop/pizzashop/pkg/mongox"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Key is a customer's idempotency key as stored: the hash of the request
// that first used it, and the order it produced once done.
type Key struct {
	Hash       string    `bson:"hash"`
	OrderID    string    `bson:"order_id,omitempty"`
	Done       bool      `bson:"done"`
	CreateTime time.Time `bson:"create_time"`
	ExpireTime time.Time `bson:"expire_time"`
}

type keyDoc struct {
	ID  string `bson:"_id"`
	Key `bson:",inline"`
}

// ReserveKey claims key for a request with the given hash. It returns nil
// when the claim is new; otherwise it returns the key as already stored, for
// the caller to compare hashes and states. Expired keys are replaced.
func (s *Store) ReserveKey(ctx context.Context, customerID, key, hash string, now time.Time, ttl time.Duration) (*Key, error) {
	id := keyID(customerID, key)
	for range 3 {
		k := Key{Hash: hash, CreateTime: now.UTC(), ExpireTime: now.Add(ttl).UTC()}
		_, err := s.keys.InsertOne(ctx, keyDoc{ID: id, Key: k})
		if err == nil {
			return nil, nil
		}
		if !mongox.IsDuplicate(err) {
			return nil, fmt.Errorf("reserve idempotency key: %w", mongox.Translate(err, nil, nil))
		}
		var old keyDoc
		err = s.keys.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&old)
		if errors.Is(err, mongo.ErrNoDocuments) {
			continue // released meanwhile: claim again
		}
		if err != nil {
			return nil, fmt.Errorf("read idempotency key: %w", mongox.Translate(err, nil, nil))
		}
		if old.ExpireTime.After(now) {
			return &old.Key, nil
		}
		if _, err := s.keys.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "expire_time", Value: old.ExpireTime}}); err != nil {
			return nil, fmt.Errorf("expire idempotency key: %w", mongox.Translate(err, nil, nil))
		}
	}
	return nil, fmt.Errorf("reserve idempotency key: %w", ErrConflict)
}

// CompleteKey records the order a key produced.
func (s *Store) CompleteKey(ctx context.Context, customerID, key, orderID string) error {
	_, err := s.keys.UpdateOne(ctx, bson.D{{Key: "_id", Value: keyID(customerID, key)}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "done", Value: true}, {Key: "order_id", Value: orderID}}}})
	if err != nil {
		return fmt.Errorf("complete idempotency key: %w", mongox.Translate(err, nil, nil))
	}
	return nil
}

// ReleaseKey forgets a key whose request failed, so it can be retried.
func (s *Store) ReleaseKey(ctx context.Context, customerID, key string) error {
	_, err := s.keys.DeleteOne(ctx, bson.D{{Key: "_id", Value: keyID(customerID, key)}, {Key: "done", Value: false}})
	if err != nil {
		return fmt.Errorf("release idempotency key: %w", mongox.Translate(err, nil, nil))
	}
	return nil
}

// PurgeKeys deletes keys that expired before now. The store has no TTL
// indexes, so a worker calls this periodically.
func (s *Store) PurgeKeys(ctx context.Context, now time.Time) (int64, error) {
	res, err := s.keys.DeleteMany(ctx, bson.D{{Key: "expire_time", Value: bson.D{{Key: "$lt", Value: now.UTC()}}}})
	if err != nil {
		return 0, fmt.Errorf("purge idempotency keys: %w", mongox.Translate(err, nil, nil))
	}
	return res.DeletedCount, nil
}
