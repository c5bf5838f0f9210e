package auth

import (
	"sync"
	"time"
)

// Attempts counts sign-in attempts per key (an email, a client address) in
// fixed windows, so that password guessing is slowed to Max tries per
// Window for each account and each client. It is kept in memory: each
// replica of a service counts on its own, which bounds guessing per replica.
type Attempts struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu   sync.Mutex
	keys map[string]*window
}

type window struct {
	start time.Time
	n     int
}

// maxKeys bounds the memory of an Attempts: beyond it, expired windows are
// dropped, and if none has expired the oldest-starting half goes.
const maxKeys = 100_000

// NewAttempts allows max attempts per key in each window.
func NewAttempts(max int, every time.Duration) *Attempts {
	return &Attempts{max: max, window: every, now: time.Now, keys: map[string]*window{}}
}

// Allow reports whether key may try now; when not, it says how long until
// it may. It does not count the attempt: Fail does.
func (a *Attempts) Allow(key string) (bool, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w, ok := a.keys[key]
	now := a.now()
	if !ok || now.Sub(w.start) >= a.window || w.n < a.max {
		return true, 0
	}
	return false, w.start.Add(a.window).Sub(now)
}

// Fail counts one attempt of key.
func (a *Attempts) Fail(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	w, ok := a.keys[key]
	if !ok || now.Sub(w.start) >= a.window {
		if !ok && len(a.keys) >= maxKeys {
			a.prune(now)
		}
		a.keys[key] = &window{start: now, n: 1}
		return
	}
	w.n++
}

// Reset forgets key's attempts, after it succeeded.
func (a *Attempts) Reset(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.keys, key)
}

func (a *Attempts) prune(now time.Time) {
	for k, w := range a.keys {
		if now.Sub(w.start) >= a.window {
			delete(a.keys, k)
		}
	}
	if len(a.keys) < maxKeys {
		return
	}
	cut := now.Add(-a.window / 2)
	for k, w := range a.keys {
		if w.start.Before(cut) {
			delete(a.keys, k)
		}
	}
}
