// Package mongoxtest helps tests put the store in trouble.
package mongoxtest

import (
	"context"
	"net"
	"net/url"
	"sync"
	"testing"

	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/mongox"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Stall is a TCP proxy in front of a store that can stop passing bytes
// without closing anything, as a store that hangs (a full disk, a lock, a
// stopped process) does: connections stay open and calls get no answer.
type Stall struct {
	lis    net.Listener
	target string

	mu      sync.Mutex
	stalled bool
	resume  chan struct{} // closed on Resume
	conns   map[net.Conn]bool
	closed  bool
}

// NewStall starts a proxy to the host:port target.
func NewStall(target string) (*Stall, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Stall{lis: lis, target: target, resume: make(chan struct{}), conns: map[net.Conn]bool{}}
	close(s.resume)
	go s.accept()
	return s, nil
}

// URI returns mongoURI with its host replaced by the proxy's address.
func (s *Stall) URI(mongoURI string) (string, error) {
	u, err := url.Parse(mongoURI)
	if err != nil {
		return "", err
	}
	u.Host = s.Addr()
	return u.String(), nil
}

// Addr is the proxy's address.
func (s *Stall) Addr() string { return s.lis.Addr().String() }

// Stall stops passing bytes in both directions.
func (s *Stall) Stall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stalled {
		s.stalled = true
		s.resume = make(chan struct{})
	}
}

// Resume passes bytes again, the held ones first.
func (s *Stall) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stalled {
		s.stalled = false
		close(s.resume)
	}
}

// Close stops the proxy and closes every connection.
func (s *Stall) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.Resume()
	return s.lis.Close()
}

func (s *Stall) gate() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resume
}

func (s *Stall) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.Close()
		return false
	}
	s.conns[c] = true
	return true
}

func (s *Stall) accept() {
	for {
		client, err := s.lis.Accept()
		if err != nil {
			return
		}
		go func() {
			server, err := net.Dial("tcp", s.target)
			if err != nil {
				_ = client.Close()
				return
			}
			if !s.track(client) || !s.track(server) {
				_ = client.Close()
				_ = server.Close()
				return
			}
			go s.pipe(server, client)
			s.pipe(client, server)
		}()
	}
}

// pipe copies from src to dst, holding each chunk while stalled.
func (s *Stall) pipe(dst, src net.Conn) {
	defer func() { _ = dst.Close(); _ = src.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			<-s.gate()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// StallIn starts a Stall in front of the store of mongoURI for the length
// of test t, and returns it with the URI that reaches the store through it.
func StallIn(t testing.TB, mongoURI string) (*Stall, string) {
	t.Helper()
	u, err := url.Parse(mongoURI)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStall(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	uri, err := s.URI(mongoURI)
	if err != nil {
		t.Fatal(err)
	}
	return s, uri
}

// StalledDatabase returns a fresh database of the test store (see
// devstack.MongoDatabase), reached through a Stall by a client of pool
// connections that is closed when test t ends, and the Stall.
func StalledDatabase(t testing.TB, pool uint64) (*Stall, *mongo.Database) {
	t.Helper()
	stall, uri := StallIn(t, devstack.Mongo(t))
	client, err := mongox.Connect(uri, pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	_, db := devstack.MongoDatabase(t)
	return stall, client.Database(db.Name())
}
