// Package grpcxtest runs a grpcx server for a test.
package grpcxtest

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/pizzashop/pizzashop/pkg/grpcx"
)

// Serve serves s on a loopback port until ctx ends, in a goroutine wg
// waits for, and returns a connection to it that is closed when the test
// ends. A Serve that fails fails the test.
func Serve(t testing.TB, ctx context.Context, wg *sync.WaitGroup, s *grpcx.Server) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	wg.Go(func() {
		if err := s.Serve(ctx, lis, 5*time.Second); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	conn, err := grpcx.Dial(lis.Addr().String())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}
