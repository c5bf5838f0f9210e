package kitchenapi

import (
	"time"

	"github.com/pizzashop/pizzashop/pkg/grpcx"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	"github.com/pizzashop/pizzashop/services/kitchen/internal/kitchen"
)

// Tuning of the display streams.
const (
	// displayLimit is how many open tickets a display snapshot holds.
	displayLimit = 1000
	// displayBuffer is how many changes a display may fall behind by, in a
	// burst of orders, before it starts over from a snapshot (which holds
	// at most displayLimit tickets). A few seconds of a busy shop.
	displayBuffer = 4096
)

// WatchTickets sends the open tickets, then every ticket change. Both come
// from the queue the kitchen keeps in memory (queue.go), which takes a
// display's snapshot and registers it for the changes that follow at
// once: a change is in the snapshot or comes after it, never lost between
// the two, and a display that opens or falls behind reads nothing from the
// store.
func (s *Server) WatchTickets(_ *kitchenv1.WatchTicketsRequest, stream kitchenv1.KitchenService_WatchTicketsServer) error {
	ctx := stream.Context()
	d := newDisplay()
	defer s.queue.unwatch(d)

	seen := map[string]int64{}
	var since time.Time // when the latest snapshot was asked for
	snapshot := func() error {
		since = s.now()
		open, err := s.snapshot(ctx, d, displayLimit)
		if err != nil {
			return err
		}
		for _, t := range open {
			seen[t.GetId()] = t.GetRevision()
			if err := stream.Send(&kitchenv1.WatchTicketsResponse{Ticket: t, Snapshot: true}); err != nil {
				return err
			}
		}
		return stream.Send(&kitchenv1.WatchTicketsResponse{SnapshotComplete: true})
	}
	if err := snapshot(); err != nil {
		return err
	}
	idle := grpcx.NewIdle(s.opts.KeepAlive)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-idle.C:
			if idle.Due() {
				if err := stream.Send(&kitchenv1.WatchTicketsResponse{}); err != nil {
					return err
				}
			}
		case <-d.restart:
			// Too slow to keep up, or the queue was read again or dropped
			// as missing events: start over from a fresh snapshot.
			if err := snapshot(); err != nil {
				return err
			}
			idle.Sent()
		case t := <-d.changes:
			id := t.GetId()
			if t.GetRevision() <= seen[id] {
				continue
			}
			_, known := seen[id]
			seen[id] = t.GetRevision()
			if !known && !kitchen.Status(t.GetStatus()).Open() && t.GetUpdateTime().AsTime().Before(since) {
				// Closed before this display's snapshot, which did not
				// hold it: most often an event a relay published again
				// after a crash, which the queue checked against the store
				// (TicketChanged) and found long closed. Nothing to show.
				continue
			}
			if err := stream.Send(&kitchenv1.WatchTicketsResponse{Ticket: t}); err != nil {
				return err
			}
			idle.Sent()
		}
	}
}
