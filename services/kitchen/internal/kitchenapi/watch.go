package kitchenapi

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pizzashop/pizzashop/pkg/grpcx"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	"github.com/pizzashop/pizzashop/services/kitchen/internal/kitchen"
	"google.golang.org/protobuf/proto"
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

// WatchTickets sends the open tickets, then every ticket change. The open
// tickets come from the queue the kitchen keeps in memory, so a display
// that opens or falls behind reads nothing from the store, except one
// ticket at a time for an event from before its snapshot of a ticket it
// has not seen (after a crash, a relay publishes events again).
func (s *Server) WatchTickets(_ *kitchenv1.WatchTicketsRequest, stream kitchenv1.KitchenService_WatchTicketsServer) error {
	ctx := stream.Context()
	events := make(chan *kitchenv1.TicketStatusChanged, displayBuffer)
	overflow := make(chan struct{}, 1)
	sub, err := s.conn.Subscribe("kitchen.*.*", func(m *nats.Msg) {
		var ev kitchenv1.TicketStatusChanged
		if proto.Unmarshal(m.Data, &ev) != nil {
			return
		}
		select {
		case events <- &ev:
		default:
			select {
			case overflow <- struct{}{}:
			default:
			}
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe kitchen events: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// Closed when ticket events may have been missed (NATS reconnected, or
	// cut a subscriber off as too slow): this display's may be among them.
	missed := s.queue.missedSignal()
	// Make sure the server has the subscription before reading the snapshot.
	if err := s.conn.FlushTimeout(5 * time.Second); err != nil {
		return fmt.Errorf("subscribe kitchen events: %w", err)
	}

	seen := map[string]int64{}
	// since is when the latest snapshot was asked for. The snapshot comes
	// from the kitchen's queue, which may lag the store, so an event from
	// before it is checked against the store, not dropped.
	var since time.Time
	snapshot := func() error {
		since = s.now()
		open, err := s.openTickets(ctx, displayLimit)
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
	// Subscribed first, so nothing falls between the snapshot and the changes.
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
		case <-overflow:
			// Too slow to keep up: start over from a fresh snapshot.
			if err := snapshot(); err != nil {
				return err
			}
			idle.Sent()
		case <-missed:
			// Changes were lost on the way here: start over from a fresh
			// snapshot, once the server has the subscription again. If it
			// does not answer, NATS is away again and says so again.
			missed = s.queue.missedSignal()
			_ = s.conn.FlushTimeout(5 * time.Second)
			if err := snapshot(); err != nil {
				return err
			}
			idle.Sent()
		case ev := <-events:
			t := ev.GetTicket()
			if t.GetRevision() <= seen[t.GetId()] || s.queue.outdated(t) {
				continue
			}
			if _, known := seen[t.GetId()]; !known && ev.GetOccurTime().AsTime().Before(since) {
				// A change from before the snapshot, of a ticket the
				// snapshot did not hold: most often an event published
				// again after a crash (a display that saw it before the
				// crash must not see it twice), whose ticket has moved on
				// and closed since. The store says where it is now.
				// When the store does not answer, the event shows as it
				// came: shown twice is better than not shown.
				if cur := s.newerInStore(ctx, t); cur != nil {
					if !kitchen.Status(cur.GetStatus()).Open() {
						seen[t.GetId()] = cur.GetRevision() // closed before this display saw it
						continue
					}
					t = cur
				}
			}
			seen[t.GetId()] = t.GetRevision()
			if err := stream.Send(&kitchenv1.WatchTicketsResponse{Ticket: t}); err != nil {
				return err
			}
			idle.Sent()
		}
	}
}
