package edge_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/pizzashop/pizzashop/gateway/internal/edge"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
)

// floodDouble streams large updates of one order as fast as it may, and
// reports when its stream ends.
type floodDouble struct {
	orderv1.UnimplementedOrderServiceServer
	ended chan struct{}
}

func (d *floodDouble) WatchOrder(req *orderv1.WatchOrderRequest, stream grpc.ServerStreamingServer[orderv1.WatchOrderResponse]) error {
	defer close(d.ended)
	msg := &orderv1.WatchOrderResponse{Order: &orderv1.Order{Id: req.GetId(), Note: strings.Repeat("n", 16<<10)}}
	for {
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
}

// TestStreamReaderThatNeverReads: a client that opens a live stream and
// stops reading must not hold the gateway's handler and the upstream stream
// for ever once its buffers are full.
func TestStreamReaderThatNeverReads(t *testing.T) {
	d := &floodDouble{ended: make(chan struct{})}
	conn, _ := serveGRPC(t, func(g *grpc.Server) { orderv1.RegisterOrderServiceServer(g, d) })
	s := newStack(t, func(_ *stack, o *edge.Options) {
		o.Order = conn
		o.StreamWriteTimeout = 300 * time.Millisecond
	})

	c := rawConn(t, s.url)
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4 << 10)
	}
	fmt.Fprintf(c, "GET /v1/orders/o-1:watch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n")
	// Never read.
	select {
	case <-d.ended:
	case <-time.After(5 * time.Second):
		t.Fatal("upstream stream still open 5s after its reader stopped reading, want it ended by the stream write timeout")
	}
}
