package orderapi

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pizzashop/pizzashop/services/order/internal/order"
)

// priceCache keeps the menu's answers to PriceOrder: the price of one pizza,
// size and toppings changes only when the menu does, and every order asks.
// It is emptied by every menu.changed event (PricesChanged) and, as a net
// under an event missed while NATS was away, every maxPriceAge. Only prices
// are kept, never refusals, so a pizza back in stock is seen at once.
//
// With several menu replicas, the event of a change can reach this service
// before the replica it asks next has heard of the change. That replica's
// answer carries an older menu version than the event announced: it prices
// the order in hand, but is not kept, or it would be served for a minute.
type priceCache struct {
	mu     sync.Mutex
	prices map[string]order.Price
	gen    uint64
	newest int64     // highest menu version a menu.changed event announced
	since  time.Time // of the oldest price kept
	misses int64
}

// maxPriceAge is the longest a price is kept without a menu event.
const maxPriceAge = time.Minute

// maxPrices bounds the cache; the menu has a few thousand combinations.
const maxPrices = 10_000

func newPriceCache() *priceCache {
	return &priceCache{prices: map[string]order.Price{}, since: time.Now()}
}

// priceKey names an item; the order of toppings does not change its price.
// Every id is length-prefixed: ids are only bounded in length, so with
// plain separators a topping "a,b" would share the key of toppings a and b
// and be placed at their price without the menu ever seeing it.
func priceKey(it order.Item) string {
	ts := slices.Clone(it.ToppingIDs)
	slices.Sort(ts)
	var b strings.Builder
	b.WriteString(strconv.Itoa(int(it.Size)))
	for _, id := range append([]string{it.PizzaID}, ts...) {
		b.WriteByte('|')
		b.WriteString(strconv.Itoa(len(id)))
		b.WriteByte(':')
		b.WriteString(id)
	}
	return b.String()
}

// get returns the cached price of it, and the generation to put a price
// read now under.
func (c *priceCache) get(it order.Item) (order.Price, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.since) > maxPriceAge {
		c.clearLocked()
	}
	p, ok := c.prices[priceKey(it)]
	if !ok {
		c.misses++
	}
	return p, c.gen, ok
}

// put keeps p, read from the menu at version, for it, unless the menu
// changed since gen or version is older than a change already announced.
func (c *priceCache) put(it order.Item, p order.Price, gen uint64, version int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen || version < c.newest {
		return
	}
	if len(c.prices) >= maxPrices {
		clear(c.prices)
	}
	c.prices[priceKey(it)] = p
}

// invalidate empties the cache after a change that made the menu version
// (0 when unknown).
func (c *priceCache) invalidate(version int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.newest = max(c.newest, version)
	c.clearLocked()
}

func (c *priceCache) clearLocked() {
	clear(c.prices)
	c.gen++
	c.since = time.Now()
}

// menuCalls is how many prices had to be asked of the menu.
func (c *priceCache) menuCalls() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.misses
}
