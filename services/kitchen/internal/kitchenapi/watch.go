package kitchenapi

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pizzashop/pizzashop/pkg/grpcx"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	"github.com/pizzashop/pizzashop/services/kitchen/internal/kitchen"
	"github.com/pizzashop/pizzashop/services/kitchen/internal/kitchendb"
	"google.golang.org/protobuf/proto"
)

// Tuning of the display streams.
const (
	// displayLimit is how many open tickets a display snapshot holds.
	displayLimit = 1000
	// snapshotTimeout bounds one shared snapshot read.
	snapshotTimeout = 5 * time.Second
	// displayBuffer is how many changes a display may fall behind by, in a
	// burst of orders, before it starts over from a snapshot (which holds
	// at most displayLimit tickets). A few seconds of a busy shop.
	displayBuffer = 4096
)

// displays holds the snapshot reads the display streams share.
type displays struct {
	once  sync.Once
	snaps *grpcx.Snapshots[struct{}, []kitchen.Ticket]
}

// snapshot returns the open tickets, read after the call began, sharing the
// read with every display asking meanwhile. The tickets must not be changed.
func (d *displays) snapshot(ctx context.Context, store *kitchendb.Store) ([]kitchen.Ticket, error) {
	d.once.Do(func() {
		d.snaps = grpcx.NewSnapshots(snapshotTimeout, func(ctx context.Context, _ struct{}) ([]kitchen.Ticket, error) {
			return store.List(ctx, []kitchen.Status{kitchen.StatusQueued, kitchen.StatusBaking}, displayLimit, nil)
		})
	})
	return d.snaps.Get(ctx, struct{}{})
}

// WatchTickets sends the open tickets, then every ticket change. Displays
// that start or fall behind at about the same time share one read of the
// open tickets.
func (s *Server) WatchTickets(_ *kitchenv1.WatchTicketsRequest, stream kitchenv1.KitchenService_WatchTicketsServer) error {
	ctx := stream.Context()
	events := make(chan *kitchenv1.Ticket, displayBuffer)
	overflow := make(chan struct{}, 1)
	sub, err := s.conn.Subscribe("kitchen.*.*", func(m *nats.Msg) {
		var ev kitchenv1.TicketStatusChanged
		if proto.Unmarshal(m.Data, &ev) != nil {
			return
		}
		select {
		case events <- ev.GetTicket():
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
	// Make sure the server has the subscription before reading the snapshot.
	if err := s.conn.FlushTimeout(5 * time.Second); err != nil {
		return fmt.Errorf("subscribe kitchen events: %w", err)
	}

	seen := map[string]int64{}
	snapshot := func() error {
		open, err := s.displays.snapshot(ctx, s.store)
		if err != nil {
			return err
		}
		for _, t := range open {
			seen[t.ID] = t.Revision
			if err := stream.Send(&kitchenv1.WatchTicketsResponse{Ticket: toProto(t), Snapshot: true}); err != nil {
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
		case t := <-events:
			if t.GetRevision() <= seen[t.GetId()] {
				continue
			}
			seen[t.GetId()] = t.GetRevision()
			if err := stream.Send(&kitchenv1.WatchTicketsResponse{Ticket: t}); err != nil {
				return err
			}
			idle.Sent()
		}
	}
}
