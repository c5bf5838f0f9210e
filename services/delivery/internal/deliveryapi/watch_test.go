package deliveryapi_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pizzashop/pizzashop/pkg/auth"
	deliveryv1 "github.com/pizzashop/pizzashop/proto/pizzashop/delivery/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// watch is an open WatchDeliveries stream whose messages arrive on msgs.
type watch struct {
	msgs   chan *deliveryv1.WatchDeliveriesResponse
	errc   chan error
	cancel context.CancelFunc
}

func (e *env) watch(t *testing.T, ctx context.Context, f orderv1.Fulfillment) *watch {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	st, err := e.client.WatchDeliveries(ctx, &deliveryv1.WatchDeliveriesRequest{Fulfillment: f})
	if err != nil {
		t.Fatalf("WatchDeliveries: %v", err)
	}
	w := &watch{msgs: make(chan *deliveryv1.WatchDeliveriesResponse, 100), errc: make(chan error, 1), cancel: cancel}
	go func() {
		for {
			m, err := st.Recv()
			if err != nil {
				w.errc <- err
				return
			}
			w.msgs <- m
		}
	}()
	return w
}

// next returns the next message, failing t if none comes within 10s.
func (w *watch) next(t *testing.T) *deliveryv1.WatchDeliveriesResponse {
	t.Helper()
	select {
	case m := <-w.msgs:
		return m
	case err := <-w.errc:
		t.Fatalf("watch ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatalf("no watch message within 10s")
	}
	return nil
}

// complete reads the message that ends the snapshot.
func (w *watch) complete(t *testing.T) {
	t.Helper()
	if m := w.next(t); !m.GetSnapshotComplete() || m.GetDelivery() != nil {
		t.Fatalf("after the snapshot got %v, want the snapshot_complete marker with no delivery", m)
	}
}

// says describes a message as id, status, revision and whether it is part
// of the snapshot.
func says(m *deliveryv1.WatchDeliveriesResponse) string {
	d := m.GetDelivery()
	s := fmt.Sprintf("%s %s @%d", d.GetId(), d.GetStatus(), d.GetRevision())
	if m.GetSnapshot() {
		s += " snapshot"
	}
	return s
}

func TestWatchDeliveries(t *testing.T) {
	e := newEnv(t)
	e.seed(t, "d1", D, 0)
	e.seed(t, "p1", P, 1)
	e.seed(t, "d2", D, 2)
	e.seed(t, "gone", D, 3)
	ctx := e.courier(t)
	if _, err := e.client.DispatchDelivery(ctx, &deliveryv1.DispatchDeliveryRequest{Id: "gone"}); err != nil {
		t.Fatal(err)
	}
	e.waitFlushed(t)
	if _, err := e.client.DeliverDelivery(ctx, &deliveryv1.DeliverDeliveryRequest{Id: "gone"}); err != nil {
		t.Fatal(err)
	}
	e.waitFlushed(t)

	board := e.watch(t, e.courier(t), orderv1.Fulfillment_FULFILLMENT_DELIVERY)
	all := e.watch(t, e.as(t, auth.RoleAdmin, "boss"), orderv1.Fulfillment_FULFILLMENT_UNSPECIFIED)

	// The open deliveries first, in ready order, the board's only.
	var got []string
	for range 2 {
		got = append(got, says(board.next(t)))
	}
	if diff := cmp.Diff([]string{
		"d1 DELIVERY_STATUS_WAITING @1 snapshot",
		"d2 DELIVERY_STATUS_WAITING @1 snapshot",
	}, got); diff != "" {
		t.Errorf("board snapshot (-want +got):\n%s", diff)
	}
	board.complete(t)
	got = nil
	for range 3 {
		got = append(got, says(all.next(t)))
	}
	if diff := cmp.Diff([]string{
		"d1 DELIVERY_STATUS_WAITING @1 snapshot",
		"p1 DELIVERY_STATUS_WAITING @1 snapshot",
		"d2 DELIVERY_STATUS_WAITING @1 snapshot",
	}, got); diff != "" {
		t.Errorf("unfiltered snapshot (-want +got):\n%s", diff)
	}
	all.complete(t)

	// A pickup at the counter is no business of the delivery board; the
	// dispatch after it is.
	if _, err := e.client.PickupDelivery(ctx, &deliveryv1.PickupDeliveryRequest{Id: "p1"}); err != nil {
		t.Fatal(err)
	}
	e.waitPublished(t, "delivery.picked_up.p1")
	e.waitFlushed(t)
	disp, err := e.client.DispatchDelivery(ctx, &deliveryv1.DispatchDeliveryRequest{Id: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	m := board.next(t)
	if says(m) != "d1 DELIVERY_STATUS_OUT_FOR_DELIVERY @2" {
		t.Errorf("board change after the pickup and the dispatch = %s, want d1 out for delivery at revision 2", says(m))
	}
	if !proto.Equal(m.GetDelivery(), disp.GetDelivery()) {
		t.Errorf("board change carries %v, want the delivery as dispatched: %v", m.GetDelivery(), disp.GetDelivery())
	}
	got = []string{says(all.next(t)), says(all.next(t))}
	if diff := cmp.Diff([]string{
		"p1 DELIVERY_STATUS_PICKED_UP @2",
		"d1 DELIVERY_STATUS_OUT_FOR_DELIVERY @2",
	}, got); diff != "" {
		t.Errorf("unfiltered changes (-want +got):\n%s", diff)
	}

	// A delivery that becomes ready while the board watches appears on it.
	e.orderStream(t)
	ev := readyEvent("d9", orderv1.Fulfillment_FULFILLMENT_DELIVERY)
	data, _ := proto.Marshal(ev)
	e.publish(t, "order.ready.d9", ev.GetEventId(), data)
	if m := board.next(t); says(m) != "d9 DELIVERY_STATUS_WAITING @1" {
		t.Errorf("board change after a ready order = %s, want d9 waiting at revision 1", says(m))
	}
	if m := all.next(t); says(m) != "d9 DELIVERY_STATUS_WAITING @1" {
		t.Errorf("unfiltered change after a ready order = %s, want d9 waiting at revision 1", says(m))
	}

	// Shutting down ends the streams with Unavailable, so boards reconnect.
	e.srv.EndWatches()
	for name, w := range map[string]*watch{"board": board, "all": all} {
		select {
		case err := <-w.errc:
			if status.Code(err) != codes.Unavailable {
				t.Errorf("%s stream ended with %v, want Unavailable", name, err)
			}
		case m := <-w.msgs:
			t.Errorf("%s stream got %s, want it to end", name, says(m))
		case <-time.After(10 * time.Second):
			t.Errorf("%s stream still open 10s after EndWatches", name)
		}
	}
}

func TestWatchDeliveriesRefusals(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name string
		ctx  context.Context
		f    orderv1.Fulfillment
		want codes.Code
	}{
		{"customer", e.as(t, auth.RoleCustomer, "cust1"), 0, codes.PermissionDenied},
		{"kitchen", e.as(t, auth.RoleKitchen, "cook1"), 0, codes.PermissionDenied},
		{"unknown fulfillment", e.courier(t), 9, codes.InvalidArgument},
	} {
		w := e.watch(t, tc.ctx, tc.f)
		select {
		case err := <-w.errc:
			checkCode(t, tc.name, err, tc.want, "")
		case m := <-w.msgs:
			t.Errorf("%s: got %s, want %v", tc.name, says(m), tc.want)
		case <-time.After(10 * time.Second):
			t.Errorf("%s: stream still open after 10s, want %v", tc.name, tc.want)
		}
	}
}

// TestWatchDeliveriesRepublishedAfterACrash: after a crash the relay
// publishes again what it cannot prove JetStream holds, and plain
// subscribers get those events a second time. A board that connected after
// the crash must not show a delivery waiting that was picked up meanwhile:
// a board that saw it waiting before the crash would show it twice.
func TestWatchDeliveriesRepublishedAfterACrash(t *testing.T) {
	e := newEnv(t)
	e.orderStream(t)
	ready := readyEvent("old", orderv1.Fulfillment_FULFILLMENT_PICKUP)
	data, _ := proto.Marshal(ready)
	e.publish(t, "order.ready.old", ready.GetEventId(), data)
	e.waitPublished(t, "delivery.waiting.old")
	if _, err := e.client.PickupDelivery(e.courier(t), &deliveryv1.PickupDeliveryRequest{Id: "old"}); err != nil {
		t.Fatal(err)
	}
	var again [][]byte
	for _, ev := range e.waitPublished(t, "delivery.waiting.old", "delivery.picked_up.old") {
		if ev.GetDelivery().GetId() == "old" {
			data, _ := proto.Marshal(ev)
			again = append(again, data)
		}
	}

	all := e.watch(t, e.as(t, auth.RoleAdmin, "boss"), orderv1.Fulfillment_FULFILLMENT_UNSPECIFIED)
	all.complete(t) // nothing open
	for i, data := range again {
		subject := []string{"delivery.waiting.old", "delivery.picked_up.old"}[i]
		if err := e.bus.Conn.Publish(subject, data); err != nil {
			t.Fatal(err)
		}
	}
	// A delivery that becomes ready afterwards is the board's next message.
	ev := readyEvent("d9", orderv1.Fulfillment_FULFILLMENT_DELIVERY)
	data, _ = proto.Marshal(ev)
	e.publish(t, "order.ready.d9", ev.GetEventId(), data)
	if m := all.next(t); says(m) != "d9 DELIVERY_STATUS_WAITING @1" {
		t.Errorf("board's first change = %s, want d9 waiting at revision 1: the picked-up delivery's events published again must not show", says(m))
	}
}
