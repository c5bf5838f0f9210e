package deliveryapi

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pizzashop/pizzashop/pkg/grpcx"

	"github.com/nats-io/nats.go"
	deliveryv1 "github.com/pizzashop/pizzashop/proto/pizzashop/delivery/v1"
	"github.com/pizzashop/pizzashop/services/delivery/internal/delivery"
	"github.com/pizzashop/pizzashop/services/delivery/internal/deliverydb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Tuning of WatchDeliveries.
const (
	// watchBuffer is how many changes may wait for a slow board before it
	// is sent a fresh snapshot instead.
	watchBuffer = 256
	// snapshotPage is how many open deliveries one store read fetches.
	snapshotPage = 200
	// snapshotTimeout bounds one shared snapshot read.
	snapshotTimeout = 5 * time.Second
	// reconnectCheck is how often a stream checks whether the NATS
	// connection was re-established, losing the changes published while
	// it was down.
	reconnectCheck = time.Second
	// replayCheckTimeout bounds the store read that checks an event from
	// before a board's snapshot.
	replayCheckTimeout = time.Second
)

// boards holds the snapshot reads the board streams share, one per
// fulfillment filter.
type boards struct {
	once  sync.Once
	snaps *grpcx.Snapshots[delivery.Fulfillment, []delivery.Delivery]
}

// snapshot returns the open deliveries of fulfillment only (0: all), read
// after the call began, sharing the read with every board of the same
// filter asking meanwhile. The deliveries must not be changed.
func (b *boards) snapshot(ctx context.Context, store *deliverydb.Store, only delivery.Fulfillment) ([]delivery.Delivery, error) {
	b.once.Do(func() {
		b.snaps = grpcx.NewSnapshots(snapshotTimeout, func(ctx context.Context, only delivery.Fulfillment) ([]delivery.Delivery, error) {
			f := deliverydb.Filter{Statuses: delivery.OpenStatuses, Fulfillment: only}
			var all []delivery.Delivery
			var after *delivery.Delivery
			for {
				page, err := store.List(ctx, f, snapshotPage, after)
				if err != nil {
					return nil, err
				}
				all = append(all, page...)
				if len(page) < snapshotPage {
					return all, nil
				}
				after = &page[len(page)-1]
			}
		})
	})
	return b.snaps.Get(ctx, only)
}

// WatchDeliveries sends the open deliveries of the requested fulfillment,
// then every change to a delivery of that fulfillment. A board that falls
// behind, or whose changes were lost while NATS was away, gets a fresh
// snapshot, shared with the boards asking at about the same time.
func (s *Server) WatchDeliveries(req *deliveryv1.WatchDeliveriesRequest, stream deliveryv1.DeliveryService_WatchDeliveriesServer) error {
	only, err := fulfillmentFilter("fulfillment", req.GetFulfillment())
	if err != nil {
		return err
	}
	ctx := stream.Context()
	events := make(chan *deliveryv1.DeliveryStatusChanged, watchBuffer)
	overflow := make(chan struct{}, 1)
	lost := func() {
		select {
		case overflow <- struct{}{}:
		default:
		}
	}
	sub, err := s.conn.Subscribe("delivery.*.*", func(m *nats.Msg) {
		var ev deliveryv1.DeliveryStatusChanged
		if proto.Unmarshal(m.Data, &ev) != nil || ev.GetDelivery().GetId() == "" {
			return
		}
		if only != 0 && delivery.Fulfillment(ev.GetDelivery().GetFulfillment()) != only {
			return
		}
		select {
		case events <- &ev:
		default:
			lost()
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe delivery events: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// Subscribed, and the server knows it, before the snapshot is read: a
	// change stored after the read is published after this point, so
	// nothing falls between the snapshot and the changes.
	if err := s.conn.FlushTimeout(5 * time.Second); err != nil {
		return status.Errorf(codes.Unavailable, "the event bus is unavailable, try again shortly: %v", err)
	}
	reconnects := s.conn.Stats().Reconnects

	// seen is the revision the board has of each delivery; open, the
	// deliveries it holds as open.
	seen := map[string]int64{}
	open := map[string]bool{}
	send := func(d *deliveryv1.Delivery, snapshot bool) error {
		seen[d.GetId()] = d.GetRevision()
		if delivery.Status(d.GetStatus()).Open() {
			open[d.GetId()] = true
		} else {
			delete(open, d.GetId())
		}
		return stream.Send(&deliveryv1.WatchDeliveriesResponse{Delivery: d, Snapshot: snapshot})
	}
	// since is when the latest snapshot was asked for: it holds every
	// change stored before.
	var since time.Time
	snapshot := func() error {
		held := open
		open = map[string]bool{}
		since = s.now()
		all, err := s.boards.snapshot(ctx, s.store, only)
		if err != nil {
			return err
		}
		for _, d := range all {
			if err := send(toProto(d), true); err != nil {
				return err
			}
		}
		// A delivery the board holds as open that closed while its change
		// was lost: send how it ended.
		for id := range held {
			if open[id] {
				continue
			}
			d, err := s.store.Get(ctx, id)
			if errors.Is(err, delivery.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if d.Revision() > seen[id] {
				if err := send(toProto(d), false); err != nil {
					return err
				}
			}
		}
		return stream.Send(&deliveryv1.WatchDeliveriesResponse{SnapshotComplete: true})
	}
	if err := snapshot(); err != nil {
		return err
	}
	tick := time.NewTicker(reconnectCheck)
	defer tick.Stop()
	idle := grpcx.NewIdle(s.KeepAlive)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.closing:
			return status.Error(codes.Unavailable, "the delivery service is shutting down; reconnect")
		case <-idle.C:
			if idle.Due() {
				if err := stream.Send(&deliveryv1.WatchDeliveriesResponse{}); err != nil {
					return err
				}
			}
		case <-tick.C:
			if n := s.conn.Stats().Reconnects; n != reconnects {
				reconnects = n
				lost()
			}
		case <-overflow:
			if err := snapshot(); err != nil {
				return err
			}
			idle.Sent()
		case ev := <-events:
			d := ev.GetDelivery()
			if d.GetRevision() <= seen[d.GetId()] {
				continue // already sent, or older than what was sent
			}
			if _, known := seen[d.GetId()]; !known && ev.GetOccurTime().AsTime().Before(since) {
				// A change from before the snapshot, of a delivery the
				// snapshot did not hold: most often an event published
				// again after a crash (a board that saw it before the
				// crash must not see it twice), whose delivery has moved
				// on and closed since. The store says where it is now.
				rctx, cancel := context.WithTimeout(ctx, replayCheckTimeout)
				cur, err := s.store.Get(rctx, d.GetId())
				cancel()
				// When the store does not answer, the event shows as it
				// came: shown twice is better than not shown.
				if err == nil && cur.Revision() > d.GetRevision() {
					if !cur.Status().Open() {
						seen[d.GetId()] = cur.Revision() // closed before this board saw it
						continue
					}
					d = toProto(cur)
				}
			}
			if err := send(d, false); err != nil {
				return err
			}
			idle.Sent()
		}
	}
}
