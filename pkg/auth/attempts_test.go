package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// newTestAttempts returns an Attempts whose clock reads *now.
func newTestAttempts(max int, every time.Duration, now *time.Time) *Attempts {
	a := NewAttempts(max, every)
	a.now = func() time.Time { return *now }
	return a
}

// reserve reserves an attempt of key that must not wait.
func reserve(t *testing.T, a *Attempts, key string) (*Attempt, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	at, wait, err := a.Reserve(ctx, key)
	if err != nil {
		t.Fatalf("Reserve(%q) err = %v", key, err)
	}
	return at, wait
}

func TestAttemptsLimit(t *testing.T) {
	now := epoch
	a := newTestAttempts(3, time.Minute, &now)
	for i := range 3 {
		at, _ := reserve(t, a, "ann")
		if at == nil {
			t.Fatalf("Reserve(ann) #%d refused, want an attempt", i+1)
		}
		at.Fail()
		at.Forgive() // after Fail: does nothing
	}
	now = epoch.Add(20 * time.Second)
	if at, wait := reserve(t, a, "ann"); at != nil || wait != 40*time.Second {
		t.Errorf("Reserve(ann) after 3 failures = %v, %v; want refused for 40s", at, wait)
	}
	if ok, wait := a.Allow("ann"); ok || wait != 40*time.Second {
		t.Errorf("Allow(ann) after 3 failures = %v, %v; want false, 40s", ok, wait)
	}
	if at, _ := reserve(t, a, "bob"); at == nil {
		t.Errorf("Reserve(bob) refused by ann's failures")
	}
	now = epoch.Add(time.Minute)
	if at, _ := reserve(t, a, "ann"); at == nil {
		t.Errorf("Reserve(ann) in the next window refused")
	}
}

func TestAttemptsForgiveAndReset(t *testing.T) {
	now := epoch
	a := newTestAttempts(2, time.Minute, &now)
	for range 5 {
		at, _ := reserve(t, a, "ann")
		if at == nil {
			t.Fatal("Reserve(ann) refused after only forgiven attempts")
		}
		at.Forgive()
	}
	if n := len(a.keys); n != 0 {
		t.Errorf("Attempts keeps %d keys with nothing counted, want 0", n)
	}

	// A reset after a success forgives failures, not attempts in flight.
	at, _ := reserve(t, a, "ann")
	at.Fail()
	inFlight, _ := reserve(t, a, "ann")
	a.Reset("ann")
	inFlight.Fail()
	at, _ = reserve(t, a, "ann")
	at.Fail()
	if at, _ := reserve(t, a, "ann"); at != nil {
		t.Errorf("Reserve(ann) = %v after a guess in flight across a reset and one more failure, want refused", at)
	}
	a.Reset("ann")
	at, _ = reserve(t, a, "ann")
	at.Fail()
	if ok, _ := a.Allow("ann"); !ok {
		t.Errorf("Allow(ann) after a reset and 1 failure = refused, want allowed")
	}
}

func TestAttemptsBounded(t *testing.T) {
	now := epoch
	a := newTestAttempts(1, time.Minute, &now)
	for i := range maxKeys + 10 {
		if i == maxKeys/2 {
			now = now.Add(45 * time.Second)
		}
		at, _ := reserve(t, a, string(rune('a'+i%26))+time.Duration(i).String())
		at.Fail()
	}
	if n := len(a.keys); n > maxKeys {
		t.Errorf("%d keys kept, want at most %d", n, maxKeys)
	}
}

// TestAttemptsConcurrent: reservations made all at once are held to the
// limit, and those that find it taken by attempts in flight wait for their
// outcome instead of being refused or let through.
func TestAttemptsConcurrent(t *testing.T) {
	a := NewAttempts(3, time.Minute)
	const n = 50
	var tried, refused atomic.Int32
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			at, _ := reserve(t, a, "ann")
			if at == nil {
				refused.Add(1)
				return
			}
			tried.Add(1)
			time.Sleep(time.Millisecond)
			at.Fail()
		})
	}
	wg.Wait()
	if tried.Load() != 3 || refused.Load() != n-3 {
		t.Errorf("%d concurrent failing attempts: %d tried, %d refused; want 3 tried", n, tried.Load(), refused.Load())
	}

	// Attempts that succeed: all get their turn, however many.
	b := NewAttempts(3, time.Minute)
	var in, most atomic.Int32
	tried.Store(0)
	for range n {
		wg.Go(func() {
			at, _ := reserve(t, b, "nat")
			if at == nil {
				t.Error("Reserve(nat) refused with no failures")
				return
			}
			most.Store(max(most.Load(), in.Add(1)))
			time.Sleep(time.Millisecond)
			in.Add(-1)
			at.Forgive()
			tried.Add(1)
		})
	}
	wg.Wait()
	if tried.Load() != n || most.Load() > 3 {
		t.Errorf("%d concurrent succeeding attempts: %d tried, at most %d at once; want all, at most 3", n, tried.Load(), most.Load())
	}
}

func TestAttemptsReserveWaitEndsWithContext(t *testing.T) {
	a := NewAttempts(1, time.Minute)
	held, _ := reserve(t, a, "ann")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if at, _, err := a.Reserve(ctx, "ann"); at != nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Reserve(ann) while its last attempt is in flight = %v, %v; want it to wait until the context ends", at, err)
	}
	held.Forgive()
	if at, _ := reserve(t, a, "ann"); at == nil {
		t.Errorf("Reserve(ann) after the attempt in flight was forgiven refused")
	}
}

// TestAttemptsSpray: a spray of distinct keys, all within the last moment,
// keeps the memory bounded, and does not buy back the attempts of a key
// that has used them up.
func TestAttemptsSpray(t *testing.T) {
	now := epoch
	a := newTestAttempts(3, time.Minute, &now)
	a.limit = 100
	for range 3 {
		at, _ := reserve(t, a, "ann")
		at.Fail()
	}
	for i := range 10 * a.limit {
		at, _ := reserve(t, a, fmt.Sprint("spray-", i))
		if at == nil {
			t.Fatalf("Reserve(spray-%d) refused", i)
		}
		at.Fail()
		if n := len(a.keys); n > a.limit {
			t.Fatalf("after %d distinct keys in one instant %d are kept, want at most %d", i+1, n, a.limit)
		}
	}
	if at, _ := reserve(t, a, "ann"); at != nil {
		t.Errorf("Reserve(ann) after a spray of other keys = %v, want still refused", at)
	}
}
