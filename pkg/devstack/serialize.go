package devstack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// FerretDB 1.x carries out an update as a read followed by a separate write
// of the whole document (FerretDB issue #3040), so two conditional updates
// of one document can interleave and one of them is lost. MongoDB is atomic
// per document, and the services rely on it: every change is written "where
// revision = R". writeSerializer restores that guarantee for the dev stack by
// sitting in front of FerretDB on the wire and letting only one write command
// run at a time, from its request until its reply. Reads pass freely.
type writeSerializer struct {
	ln       net.Listener
	upstream string
	mu       sync.Mutex // held by the one write command in flight
	wg       sync.WaitGroup
	closing  chan struct{}
	connsMu  sync.Mutex
	conns    map[net.Conn]struct{}
}

// writeCommands are the commands that change documents or collections.
var writeCommands = map[string]bool{
	"insert": true, "update": true, "delete": true, "findAndModify": true, "findandmodify": true,
	"createIndexes": true, "dropIndexes": true, "create": true, "drop": true, "dropDatabase": true,
	"renameCollection": true,
}

const (
	opMsg         = 2013
	moreToComeBit = 1 << 1
	maxMessage    = 48 << 20
)

// listenSerializer takes listenAddr; start begins relaying to upstream.
// The two steps let the address be claimed before FerretDB is up.
func listenSerializer(listenAddr string) (*writeSerializer, error) {
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("devstack: mongo proxy on %s: %w", listenAddr, err)
	}
	return &writeSerializer{ln: ln, closing: make(chan struct{}), conns: map[net.Conn]struct{}{}}, nil
}

func (s *writeSerializer) start(upstream string) {
	s.upstream = upstream
	s.wg.Go(s.accept)
}

func (s *writeSerializer) addr() string { return s.ln.Addr().String() }

func (s *writeSerializer) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Go(func() { s.serve(c) })
	}
}

func (s *writeSerializer) track(c net.Conn, on bool) {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	if on {
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
}

// serve relays one client connection. The wire protocol is request and
// reply in turn on a connection, so one loop does both directions.
func (s *writeSerializer) serve(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", s.upstream)
	if err != nil {
		return
	}
	defer server.Close()
	s.track(client, true)
	s.track(server, true)
	defer s.track(client, false)
	defer s.track(server, false)
	for {
		req, err := readMessage(client)
		if err != nil {
			return
		}
		write := isWrite(req)
		if write {
			s.mu.Lock()
		}
		err = s.roundTrip(server, client, req)
		if write {
			s.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

func (s *writeSerializer) roundTrip(server, client net.Conn, req []byte) error {
	if _, err := server.Write(req); err != nil {
		return err
	}
	if flags(req)&moreToComeBit != 0 {
		return nil // no reply expected
	}
	for {
		reply, err := readMessage(server)
		if err != nil {
			return err
		}
		if _, err := client.Write(reply); err != nil {
			return err
		}
		if flags(reply)&moreToComeBit == 0 {
			return nil
		}
	}
}

func (s *writeSerializer) close() {
	close(s.closing)
	_ = s.ln.Close()
	s.connsMu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.connsMu.Unlock()
	s.wg.Wait()
}

func readMessage(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.LittleEndian.Uint32(hdr[:]))
	if n < 16 || n > maxMessage {
		return nil, errors.New("devstack: bad wire message length")
	}
	msg := make([]byte, n)
	copy(msg, hdr[:])
	if _, err := io.ReadFull(r, msg[4:]); err != nil {
		return nil, err
	}
	return msg, nil
}

func opCode(msg []byte) int32 { return int32(binary.LittleEndian.Uint32(msg[12:16])) }

func flags(msg []byte) uint32 {
	if opCode(msg) != opMsg || len(msg) < 20 {
		return 0
	}
	return binary.LittleEndian.Uint32(msg[16:20])
}

// isWrite reads the command name, the first key of the body section of an
// OP_MSG: header (16) + flags (4) + section kind 0 (1) + document length (4)
// + element type (1) + the name as a C string.
func isWrite(msg []byte) bool {
	if opCode(msg) != opMsg || len(msg) < 27 || msg[20] != 0 {
		return false
	}
	name := msg[26:]
	for i, b := range name {
		if b == 0 {
			return writeCommands[string(name[:i])]
		}
	}
	return false
}
