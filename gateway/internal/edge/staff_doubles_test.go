package edge_test

import (
	"context"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pizzashop/pizzashop/gateway/internal/edge"
	deliveryv1 "github.com/pizzashop/pizzashop/proto/pizzashop/delivery/v1"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
)

// Doubles of the kitchen and delivery services for the staff pages. Each
// watch goes as the real services' do: the snapshot, the snapshotComplete
// marker, then the changes the test feeds in.

// staffCall is one action call that reached a double.
type staffCall struct {
	verb, id, reason, authorization string
}

// kitchenDouble serves KitchenService. Watch n sends snapshots[n] (the last
// one for later watches); changes are sent as they come; a value on end
// ends the current watch with that error.
type kitchenDouble struct {
	kitchenv1.UnimplementedKitchenServiceServer

	changes chan *kitchenv1.Ticket
	end     chan error

	mu        sync.Mutex
	snapshots [][]*kitchenv1.Ticket
	watches   []metadata.MD
	calls     []staffCall
	// errs answers an action with an error, by "verb id".
	errs map[string]error
}

func newKitchenDouble(snapshots ...[]*kitchenv1.Ticket) *kitchenDouble {
	return &kitchenDouble{
		changes:   make(chan *kitchenv1.Ticket, 16),
		end:       make(chan error, 1),
		snapshots: snapshots,
		errs:      map[string]error{},
	}
}

// withKitchen wires d as the gateway's kitchen upstream.
func withKitchen(t testing.TB, d *kitchenDouble) stackOption {
	return func(_ *stack, o *edge.Options) {
		o.Kitchen, _ = serveGRPC(t, func(g *grpc.Server) { kitchenv1.RegisterKitchenServiceServer(g, d) })
	}
}

func (d *kitchenDouble) WatchTickets(_ *kitchenv1.WatchTicketsRequest, stream grpc.ServerStreamingServer[kitchenv1.WatchTicketsResponse]) error {
	ctx := stream.Context()
	md, _ := metadata.FromIncomingContext(ctx)
	d.mu.Lock()
	var snap []*kitchenv1.Ticket
	if n := len(d.snapshots); n > 0 {
		snap = d.snapshots[min(len(d.watches), n-1)]
	}
	d.watches = append(d.watches, md.Copy())
	d.mu.Unlock()

	for _, t := range snap {
		if err := stream.Send(&kitchenv1.WatchTicketsResponse{Ticket: t, Snapshot: true}); err != nil {
			return err
		}
	}
	if err := stream.Send(&kitchenv1.WatchTicketsResponse{SnapshotComplete: true}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-d.end:
			return err
		case t := <-d.changes:
			if err := stream.Send(&kitchenv1.WatchTicketsResponse{Ticket: t}); err != nil {
				return err
			}
		}
	}
}

// watchCount returns how many watches were opened and the metadata of the last.
func (d *kitchenDouble) watchCount() (int, metadata.MD) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.watches) == 0 {
		return 0, nil
	}
	return len(d.watches), d.watches[len(d.watches)-1]
}

func (d *kitchenDouble) seenCalls() []staffCall {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]staffCall(nil), d.calls...)
}

// act records an action and answers with the ticket moved to status, or
// with the error configured for it.
func (d *kitchenDouble) act(ctx context.Context, verb, id, reason string, to kitchenv1.TicketStatus) (*kitchenv1.Ticket, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, staffCall{verb, id, reason, first(md.Get("authorization"))})
	if err := d.errs[verb+" "+id]; err != nil {
		return nil, err
	}
	t := &kitchenv1.Ticket{Id: id}
	for _, snap := range d.snapshots {
		for _, s := range snap {
			if s.GetId() == id {
				t = proto.Clone(s).(*kitchenv1.Ticket)
			}
		}
	}
	t.Status, t.Reason = to, reason
	t.Revision += 10 // past any change the test sent
	return t, nil
}

func (d *kitchenDouble) StartTicket(ctx context.Context, req *kitchenv1.StartTicketRequest) (*kitchenv1.StartTicketResponse, error) {
	t, err := d.act(ctx, "start", req.GetId(), "", kitchenv1.TicketStatus_TICKET_STATUS_BAKING)
	return &kitchenv1.StartTicketResponse{Ticket: t}, err
}

func (d *kitchenDouble) ReadyTicket(ctx context.Context, req *kitchenv1.ReadyTicketRequest) (*kitchenv1.ReadyTicketResponse, error) {
	t, err := d.act(ctx, "ready", req.GetId(), "", kitchenv1.TicketStatus_TICKET_STATUS_READY)
	return &kitchenv1.ReadyTicketResponse{Ticket: t}, err
}

func (d *kitchenDouble) RejectTicket(ctx context.Context, req *kitchenv1.RejectTicketRequest) (*kitchenv1.RejectTicketResponse, error) {
	t, err := d.act(ctx, "reject", req.GetId(), req.GetReason(), kitchenv1.TicketStatus_TICKET_STATUS_REJECTED)
	return &kitchenv1.RejectTicketResponse{Ticket: t}, err
}

// deliveryDouble serves DeliveryService: every watch sends snapshot, then
// the changes the test feeds in.
type deliveryDouble struct {
	deliveryv1.UnimplementedDeliveryServiceServer

	changes chan *deliveryv1.Delivery
	// token, when set, is the only bearer token a watch accepts.
	token string

	mu       sync.Mutex
	snapshot []*deliveryv1.Delivery
	filters  []string
	calls    []staffCall
}

func newDeliveryDouble(snapshot ...*deliveryv1.Delivery) *deliveryDouble {
	return &deliveryDouble{changes: make(chan *deliveryv1.Delivery, 16), snapshot: snapshot}
}

// withDelivery wires d as the gateway's delivery upstream.
func withDelivery(t testing.TB, d *deliveryDouble) stackOption {
	return func(_ *stack, o *edge.Options) {
		o.Delivery, _ = serveGRPC(t, func(g *grpc.Server) { deliveryv1.RegisterDeliveryServiceServer(g, d) })
	}
}

func (d *deliveryDouble) WatchDeliveries(req *deliveryv1.WatchDeliveriesRequest, stream grpc.ServerStreamingServer[deliveryv1.WatchDeliveriesResponse]) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	if d.token != "" && first(md.Get("authorization")) != "Bearer "+d.token {
		return status.Error(codes.Unauthenticated, "invalid or expired token")
	}
	d.mu.Lock()
	d.filters = append(d.filters, req.GetFulfillment().String())
	snap := d.snapshot
	d.mu.Unlock()
	for _, x := range snap {
		if err := stream.Send(&deliveryv1.WatchDeliveriesResponse{Delivery: x, Snapshot: true}); err != nil {
			return err
		}
	}
	if err := stream.Send(&deliveryv1.WatchDeliveriesResponse{SnapshotComplete: true}); err != nil {
		return err
	}
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case x := <-d.changes:
			if err := stream.Send(&deliveryv1.WatchDeliveriesResponse{Delivery: x}); err != nil {
				return err
			}
		}
	}
}

func (d *deliveryDouble) seenCalls() []staffCall {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]staffCall(nil), d.calls...)
}

func (d *deliveryDouble) act(ctx context.Context, verb, id string, to deliveryv1.DeliveryStatus) *deliveryv1.Delivery {
	md, _ := metadata.FromIncomingContext(ctx)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, staffCall{verb: verb, id: id, authorization: first(md.Get("authorization"))})
	x := &deliveryv1.Delivery{Id: id}
	for _, s := range d.snapshot {
		if s.GetId() == id {
			x = proto.Clone(s).(*deliveryv1.Delivery)
		}
	}
	x.Status = to
	x.Revision += 10
	if to == deliveryv1.DeliveryStatus_DELIVERY_STATUS_OUT_FOR_DELIVERY {
		x.DispatchTime, x.CourierId = timestamppb.Now(), "cleo"
	}
	return x
}

func (d *deliveryDouble) DispatchDelivery(ctx context.Context, req *deliveryv1.DispatchDeliveryRequest) (*deliveryv1.DispatchDeliveryResponse, error) {
	x := d.act(ctx, "dispatch", req.GetId(), deliveryv1.DeliveryStatus_DELIVERY_STATUS_OUT_FOR_DELIVERY)
	return &deliveryv1.DispatchDeliveryResponse{Delivery: x}, nil
}

func (d *deliveryDouble) DeliverDelivery(ctx context.Context, req *deliveryv1.DeliverDeliveryRequest) (*deliveryv1.DeliverDeliveryResponse, error) {
	x := d.act(ctx, "deliver", req.GetId(), deliveryv1.DeliveryStatus_DELIVERY_STATUS_DELIVERED)
	return &deliveryv1.DeliverDeliveryResponse{Delivery: x}, nil
}

func (d *deliveryDouble) PickupDelivery(ctx context.Context, req *deliveryv1.PickupDeliveryRequest) (*deliveryv1.PickupDeliveryResponse, error) {
	x := d.act(ctx, "pickup", req.GetId(), deliveryv1.DeliveryStatus_DELIVERY_STATUS_PICKED_UP)
	return &deliveryv1.PickupDeliveryResponse{Delivery: x}, nil
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}
