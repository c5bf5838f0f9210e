package auth

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
)

// Attempts counts sign-in attempts per key (an email, a client address) in
// fixed windows, so that password guessing is slowed to Max tries per
// Window for each account and each client. It is kept in memory: each
// replica of a service counts on its own, which bounds guessing per replica.
//
// An attempt is reserved before the password is checked and counts against
// the limit while it is in flight: concurrent guesses cannot all pass the
// check before the first failure counts. One that turns out not to be a
// failed guess is forgiven.
type Attempts struct {
	max    int
	window time.Duration
	now    func() time.Time
	limit  int // maxKeys, but smaller in tests

	mu   sync.Mutex
	keys map[string]*window
}

type window struct {
	start    time.Time
	failed   int // attempts that failed
	inFlight int // attempts reserved and not yet ended
	// ended is closed, and replaced, when an attempt in flight ends or
	// the window is dropped: reservations waiting for a turn look again.
	ended chan struct{}
}

// wake lets the reservations waiting on w look again.
func (w *window) wake() {
	close(w.ended)
	w.ended = make(chan struct{})
}

// maxKeys bounds the memory of an Attempts. When a new key would pass it,
// expired windows are dropped, and then live ones until half of maxKeys are
// left: those with the fewest attempts counted go first, so a spray of new
// keys does not buy back the attempts of a key that has used them up.
const maxKeys = 100_000

// NewAttempts allows max attempts per key in each window.
func NewAttempts(max int, every time.Duration) *Attempts {
	return &Attempts{max: max, window: every, now: time.Now, limit: maxKeys, keys: map[string]*window{}}
}

// Allow reports whether key may try now; when not, it says how long until
// it may. It reserves nothing: Reserve does.
func (a *Attempts) Allow(key string) (bool, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w, ok := a.keys[key]
	now := a.now()
	if !ok || now.Sub(w.start) >= a.window || w.failed < a.max {
		return true, 0
	}
	return false, w.start.Add(a.window).Sub(now)
}

// An Attempt is one reserved try of a key. It counts against the key's
// limit from its reservation until it ends: Fail keeps it counted, Forgive
// gives it back. Forgive after Fail does nothing, so a deferred Forgive
// ends an attempt that was not a failed guess.
type Attempt struct {
	a     *Attempts
	w     *window
	key   string
	ended bool
}

// Reserve reserves an attempt of key. If key has failed Max times in its
// window it returns a nil Attempt and how long until key may try again. If
// failures and attempts in flight together reach Max, it waits for one in
// flight to end: attempts whose outcome is not yet known neither refuse nor
// pass a try that could be the last allowed. It returns ctx's error if ctx
// ends first.
func (a *Attempts) Reserve(ctx context.Context, key string) (*Attempt, time.Duration, error) {
	for {
		a.mu.Lock()
		now := a.now()
		w, ok := a.keys[key]
		if ok && now.Sub(w.start) >= a.window {
			a.drop(key, w)
			ok = false
		}
		if !ok {
			if len(a.keys) >= a.limit {
				a.prune(now)
			}
			w = &window{start: now, ended: make(chan struct{})}
			a.keys[key] = w
		}
		switch {
		case w.failed >= a.max:
			a.mu.Unlock()
			return nil, w.start.Add(a.window).Sub(now), nil
		case w.failed+w.inFlight < a.max:
			w.inFlight++
			a.mu.Unlock()
			return &Attempt{a: a, w: w, key: key}, 0, nil
		}
		ended := w.ended
		a.mu.Unlock()
		select {
		case <-ended:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
}

// Fail counts t as a failed attempt of its key.
func (t *Attempt) Fail() { t.end(true) }

// Forgive ends t without counting it: it succeeded, or it never got to
// check a password. It does nothing on a nil Attempt or one already ended.
func (t *Attempt) Forgive() {
	if t != nil {
		t.end(false)
	}
}

func (t *Attempt) end(failed bool) {
	a := t.a
	a.mu.Lock()
	defer a.mu.Unlock()
	if t.ended {
		return
	}
	t.ended = true
	w := t.w
	w.inFlight--
	if failed {
		w.failed++
	}
	w.wake()
	// A window with nothing counted is not kept.
	if w.failed == 0 && w.inFlight == 0 && a.keys[t.key] == w {
		delete(a.keys, t.key)
	}
}

// Reset forgives key's failed attempts, after it succeeded. Attempts still
// in flight count on: a guess made at the same moment as the right password
// is not forgiven with it.
func (a *Attempts) Reset(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w, ok := a.keys[key]
	if !ok {
		return
	}
	w.failed = 0
	if w.inFlight == 0 {
		delete(a.keys, key)
	}
	w.wake()
}

// drop forgets key's window w.
func (a *Attempts) drop(key string, w *window) {
	delete(a.keys, key)
	w.wake()
}

func (a *Attempts) prune(now time.Time) {
	for k, w := range a.keys {
		if now.Sub(w.start) >= a.window {
			a.drop(k, w)
		}
	}
	keep := a.limit / 2
	if len(a.keys) <= keep {
		return
	}
	// Dropping down to half, not just below the limit, leaves room for
	// half the limit of new keys before the next sort.
	type entry struct {
		key string
		w   *window
	}
	all := make([]entry, 0, len(a.keys))
	for k, w := range a.keys {
		all = append(all, entry{k, w})
	}
	slices.SortFunc(all, func(x, y entry) int {
		if c := cmp.Compare(y.w.failed+y.w.inFlight, x.w.failed+x.w.inFlight); c != 0 {
			return c
		}
		return y.w.start.Compare(x.w.start)
	})
	for _, e := range all[keep:] {
		a.drop(e.key, e.w)
	}
}
