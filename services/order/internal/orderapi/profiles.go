package orderapi

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/pizzashop/pizzashop/services/order/internal/order"
)

// Profiles change far less often than customers order, so the name and
// phone an order carries come from memory: a bounded cache of profiles, and
// of customers known to have none, each entry kept for maxAge. A
// registration here forgets the entry at once; one on another replica is
// seen within maxAge.
const (
	profileCacheSize = 50_000
	profileMaxAge    = time.Minute
)

type profileCache struct {
	load   func(context.Context, string) (order.Profile, error)
	size   int
	maxAge time.Duration
	now    func() time.Time

	mu      sync.Mutex
	entries map[string]profileEntry
	loads   int64
}

type profileEntry struct {
	p       order.Profile
	missing bool // the store has no profile for this customer
	at      time.Time
}

func newProfileCache(load func(context.Context, string) (order.Profile, error), size int, maxAge time.Duration) *profileCache {
	return &profileCache{load: load, size: size, maxAge: maxAge, now: time.Now, entries: map[string]profileEntry{}}
}

// get returns customer id's profile, or order.ErrCustomerNotFound.
func (c *profileCache) get(ctx context.Context, id string) (order.Profile, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[id]
	if ok && now.Sub(e.at) < c.maxAge {
		c.mu.Unlock()
		if e.missing {
			return order.Profile{}, order.ErrCustomerNotFound
		}
		return e.p, nil
	}
	c.loads++
	c.mu.Unlock()
	p, err := c.load(ctx, id)
	missing := errors.Is(err, order.ErrCustomerNotFound)
	if err != nil && !missing {
		return order.Profile{}, err
	}
	c.mu.Lock()
	if len(c.entries) >= c.size {
		// Full: drop the lot rather than track ages; it refills from the
		// customers who are ordering now.
		clear(c.entries)
	}
	c.entries[id] = profileEntry{p: p, missing: missing, at: now}
	c.mu.Unlock()
	return p, err
}

// forget drops customer id, whose profile just changed.
func (c *profileCache) forget(id string) {
	c.mu.Lock()
	delete(c.entries, id)
	c.mu.Unlock()
}

// storeReads is how many times the cache read the store.
func (c *profileCache) storeReads() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loads
}
