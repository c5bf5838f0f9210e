package menuapi

import (
	"context"
	"sync"
	"time"

	"github.com/pizzashop/pizzashop/services/menu/internal/menu"
)

// menuCache keeps the menu in memory for reads and pricing: the menu
// changes a few times a day and is read on every order. It is emptied by
// every change, this replica's own (Server.update, Server.create) or
// another's (MenuChanged, from the menu.changed event), and, in case an
// event was missed while NATS was away, after maxAge.
type menuCache struct {
	load   func(context.Context) (menu.Menu, error)
	maxAge time.Duration
	now    func() time.Time

	mu     sync.Mutex
	menu   *menu.Menu
	loaded time.Time
	gen    uint64 // moves with every invalidation
	loads  int64  // store reads, for tests
}

func newMenuCache(load func(context.Context) (menu.Menu, error), maxAge time.Duration) *menuCache {
	return &menuCache{load: load, maxAge: maxAge, now: time.Now}
}

// get returns the menu, read from the store only when the cache is empty or
// old. Callers must not change what it returns.
func (c *menuCache) get(ctx context.Context) (menu.Menu, error) {
	c.mu.Lock()
	if c.menu != nil && c.now().Sub(c.loaded) < c.maxAge {
		m := *c.menu
		c.mu.Unlock()
		return m, nil
	}
	gen := c.gen
	c.loads++
	c.mu.Unlock()
	m, err := c.load(ctx)
	if err != nil {
		return menu.Menu{}, err
	}
	c.mu.Lock()
	// A change that came in during the read may not be in it: keep it only
	// if none did.
	if c.gen == gen {
		c.menu, c.loaded = &m, c.now()
	}
	c.mu.Unlock()
	return m, nil
}

// invalidate empties the cache: the next get reads the store.
func (c *menuCache) invalidate() {
	c.mu.Lock()
	c.menu = nil
	c.gen++
	c.mu.Unlock()
}

// storeReads is how many times the cache read the store.
func (c *menuCache) storeReads() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loads
}
