package grpcx_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/grpcx"
)

func TestSnapshotsShareReads(t *testing.T) {
	var (
		state    atomic.Int64 // what the "store" holds
		reads    atomic.Int64
		inFlight atomic.Int64
		maxIn    atomic.Int64
	)
	snaps := grpcx.NewSnapshots(time.Second, func(ctx context.Context, key string) (int64, error) {
		reads.Add(1)
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxIn.Load()
			if n <= m || maxIn.CompareAndSwap(m, n) {
				break
			}
		}
		v := state.Load()
		time.Sleep(20 * time.Millisecond) // a slow store
		return v, nil
	})

	const callers = 500
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			// Each caller "changes the store" before asking: the snapshot
			// it gets must include its change.
			want := state.Add(1)
			got, err := snaps.Get(context.Background(), "k")
			if err != nil {
				errs <- err
				return
			}
			if got < want {
				errs <- errors.New("a caller got a snapshot read before it asked")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := reads.Load(); n > callers/5 {
		t.Errorf("%d callers caused %d reads, want them shared", callers, n)
	}
	if m := maxIn.Load(); m != 1 {
		t.Errorf("at most %d reads of one key ran at once, want 1", m)
	}
	t.Logf("%d callers, %d reads", callers, reads.Load())
}

func TestSnapshotsCallerGivesUp(t *testing.T) {
	release := make(chan struct{})
	snaps := grpcx.NewSnapshots(5*time.Second, func(ctx context.Context, key int) (string, error) {
		<-release
		return "done", nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := snaps.Get(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get with an ending context = %v, want DeadlineExceeded", err)
	}
	close(release)
	if v, err := snaps.Get(context.Background(), 1); v != "done" || err != nil {
		t.Errorf("Get after the read finished = %q, %v; want done, nil", v, err)
	}
}
