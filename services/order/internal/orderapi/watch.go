package orderapi

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pizzashop/pizzashop/pkg/grpcx"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"github.com/pizzashop/pizzashop/services/order/internal/order"
	"github.com/pizzashop/pizzashop/services/order/internal/orderdb"
	"google.golang.org/protobuf/proto"
)

// NATSWatcher watches one order's events with a plain NATS subscription on
// "order.*.<id>". Every replica sees every event, whichever replica's relay
// published it.
type NATSWatcher struct{ Conn *nats.Conn }

// Watch subscribes to the events of order id. It returns once the server
// has the subscription, so a read of the order made after it misses no
// change.
func (w NATSWatcher) Watch(id string, fn func(*orderv1.OrderStatusChanged)) (func(), error) {
	sub, err := w.Conn.Subscribe("order.*."+id, func(m *nats.Msg) {
		var ev orderv1.OrderStatusChanged
		if proto.Unmarshal(m.Data, &ev) == nil {
			fn(&ev)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to order %s: %w", id, err)
	}
	if err := w.Conn.FlushTimeout(5 * time.Second); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe to order %s: %w", id, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// watchSnapshotTimeout bounds one shared read of an order for its streams.
const watchSnapshotTimeout = 5 * time.Second

// watchReads shares the store reads of the order streams: streams of one
// order that open, or look for a missed change, at about the same time get
// one read between them instead of a read, and a pooled store connection,
// each. The live streams themselves are bounded per caller and per process
// by the gRPC server (grpcx.DefaultStreamsPerCaller, grpcx.DefaultStreams).
type watchReads struct {
	once  sync.Once
	snaps *grpcx.Snapshots[string, *order.Order]
	reads atomic.Int64 // store reads made, for tests
}

// get returns order id, read after the call began. The order is shared
// with other streams and must not be changed.
func (w *watchReads) get(ctx context.Context, store *orderdb.Store, id string) (*order.Order, error) {
	w.once.Do(func() {
		w.snaps = grpcx.NewSnapshots(watchSnapshotTimeout, func(ctx context.Context, id string) (*order.Order, error) {
			w.reads.Add(1)
			return store.Get(ctx, id)
		})
	})
	return w.snaps.Get(ctx, id)
}
