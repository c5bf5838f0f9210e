package grpcx

import "time"

// DefaultKeepAlive is how long a live stream may stay silent before it
// sends a keep-alive message. Displays treat a longer silence as a dead
// connection and reconnect.
const DefaultKeepAlive = 15 * time.Second

// Idle tells a live stream when it has been quiet for a whole period, so
// that it sends a keep-alive: an empty message, which clients ignore but
// which proves the connection works end to end.
type Idle struct {
	// C ticks every period; on a tick, send a keep-alive if Due.
	C      <-chan time.Time
	t      *time.Ticker
	period time.Duration
	last   time.Time
}

// NewIdle returns an Idle for period (DefaultKeepAlive when zero).
func NewIdle(period time.Duration) *Idle {
	if period <= 0 {
		period = DefaultKeepAlive
	}
	t := time.NewTicker(period)
	return &Idle{C: t.C, t: t, period: period, last: time.Now()}
}

// Sent records that the stream just sent something.
func (i *Idle) Sent() { i.last = time.Now() }

// Due reports whether nothing was sent for a whole period, and if so
// counts the keep-alive the caller is about to send.
func (i *Idle) Due() bool {
	if time.Since(i.last) < i.period {
		return false
	}
	i.last = time.Now()
	return true
}

// Stop releases the ticker.
func (i *Idle) Stop() { i.t.Stop() }
