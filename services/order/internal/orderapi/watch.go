package orderapi

import (
	"github.com/nats-io/nats.go"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"google.golang.org/protobuf/proto"
)

// NATSWatcher watches one order's events with a plain NATS subscription on
// "order.*.<id>". Every replica sees every event, whichever replica's relay
// published it.
type NATSWatcher struct{ Conn *nats.Conn }

// Watch subscribes to the events of order id.
func (w NATSWatcher) Watch(id string, fn func(*orderv1.OrderStatusChanged)) (func(), error) {
	sub, err := w.Conn.Subscribe("order.*."+id, func(m *nats.Msg) {
		var ev orderv1.OrderStatusChanged
		if proto.Unmarshal(m.Data, &ev) == nil {
			fn(&ev)
		}
	})
	if err != nil {
		return nil, err
	}
	return func() { _ = sub.Unsubscribe() }, nil
}
