package kitchendb_test

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	"github.com/pizzashop/pizzashop/services/kitchen/internal/kitchen"
	"github.com/pizzashop/pizzashop/services/kitchen/internal/kitchendb"
)

var t0 = time.Date(2026, 11, 30, 18, 0, 0, 0, time.UTC)

func TestOpenStatusesAndMoves(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, db := devstack.MongoDatabase(t)
	s := kitchendb.New(db)
	if err := s.Init(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]kitchen.Status{}
	for i := range 12 {
		id := fmt.Sprint("t", i)
		tk := kitchen.New(kitchen.Ticket{ID: id, PizzaName: "Margherita", OrderTime: t0.Add(time.Duration(i) * time.Second)}, t0, t0.Add(8*time.Minute))
		if ok, err := s.Insert(ctx, tk, outbox.Entry{ID: "ev-" + id}); err != nil || !ok {
			t.Fatalf("Insert(%s) = %v, %v", id, ok, err)
		}
		var move func(*kitchen.Ticket) error
		switch i % 3 {
		case 0:
			want[id] = kitchen.StatusQueued
			continue
		case 1: // baking: still open
			move = func(t *kitchen.Ticket) error { return t.Start(t0.Add(time.Minute), 8*time.Minute) }
			want[id] = kitchen.StatusBaking
		case 2: // ready: no longer in the queue
			move = func(t *kitchen.Ticket) error {
				if err := t.Start(t0.Add(time.Minute), 8*time.Minute); err != nil {
					return err
				}
				return t.Ready(t0.Add(2 * time.Minute))
			}
		}
		if _, changed, err := s.Update(ctx, id, func(t *kitchen.Ticket) (bool, []outbox.Entry, error) {
			return true, []outbox.Entry{{ID: "ev2-" + id}}, move(t)
		}); err != nil || !changed {
			t.Fatalf("Update(%s) = %v, %v", id, changed, err)
		}
	}
	open, err := s.Open(ctx, []kitchen.Status{kitchen.StatusQueued, kitchen.StatusBaking})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]kitchen.Status{}
	for _, tk := range open {
		got[tk.ID] = tk.Status
		if tk.PizzaName != "Margherita" {
			t.Errorf("open ticket %s read as %+v, want the whole ticket", tk.ID, tk)
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("Open = %v, want %v", got, want)
	}
	// What a move stored is what a fresh store reads.
	fresh := kitchendb.New(db)
	tk, err := fresh.Get(ctx, "t2")
	if err != nil || tk.Status != kitchen.StatusReady || tk.Revision != 3 {
		t.Errorf("Get(t2) from a fresh store = %v revision %d, %v; want READY at revision 3", tk.Status, tk.Revision, err)
	}
}
