package devstack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// FerretDB 1.x carries out an update as a read followed by a separate write
// of the whole document (FerretDB issue #3040), so two conditional updates
// of one document can interleave and one of them is lost. MongoDB is atomic
// per document, and the services rely on it: every change is written "where
// revision = R". writeSerializer restores that guarantee for the dev stack by
// sitting in front of FerretDB on the wire and letting only one write command
// per collection run at a time, from its request until its reply. Writes to
// different collections, and all reads, pass freely: FerretDB keeps each
// database in a SQLite file of its own, so services do not queue behind
// each other.
type writeSerializer struct {
	ln net.Listener
	// FerretDB's address: network and address to dial, and upstream as a
	// connection string's host.
	network, address string
	upstream         string
	// all is held for reading by every collection write and for writing by
	// the commands that touch a whole database.
	all  sync.RWMutex
	nsMu sync.Mutex
	ns   map[string]*sync.Mutex
	// reader reads documents straight from FerretDB for guard checks.
	reader *mongo.Client
	// ids gives each collection the index FerretDB's lookups by _id use.
	ids *idIndexer
	// fields reads the fields guards compare straight from SQLite.
	fields *fieldReader
	// finder answers finds of a page from an index (see indexedFind).
	finder *indexedFinder
	// memory decides guards it knows the answer of (see guardMemory).
	memory *guardMemory
	// commands counts what FerretDB is asked to do.
	commands commandCounter
	// auth, when not nil, is the user every client connection must
	// authenticate as before its commands reach FerretDB.
	auth *scramServer
	// guarded counts the writes whose guard the serializer checked itself.
	guarded atomic.Int64
	wg      sync.WaitGroup
	closing chan struct{}
	connsMu sync.Mutex
	conns   map[net.Conn]struct{}
}

// writeCommands are the commands that change documents or collections.
var writeCommands = map[string]bool{
	"insert": true, "update": true, "delete": true, "findAndModify": true, "findandmodify": true,
	"createIndexes": true, "dropIndexes": true, "create": true, "drop": true, "dropDatabase": true,
	"renameCollection": true,
}

// schemaCommands are the writes that change indexes or collections, after
// which a find's plan may search an index it could not, or no longer can.
var schemaCommands = map[string]bool{
	"createIndexes": true, "dropIndexes": true, "create": true, "drop": true, "dropDatabase": true,
	"renameCollection": true,
}

const (
	opMsg         = 2013
	moreToComeBit = 1 << 1
	maxMessage    = 48 << 20
	// maxHandshakeMessage bounds what a client that has not authenticated
	// may send: a hello or a SASL step is well under 1 KiB.
	maxHandshakeMessage = 64 << 10
)

// listenSerializer takes listenAddr; start begins relaying to FerretDB.
// The two steps let the address be claimed before FerretDB is up.
func listenSerializer(listenAddr string) (*writeSerializer, error) {
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("devstack: mongo proxy on %s: %w", listenAddr, err)
	}
	return &writeSerializer{ln: ln, closing: make(chan struct{}), conns: map[net.Conn]struct{}{}, ns: map[string]*sync.Mutex{}}, nil
}

func (s *writeSerializer) start(network, address string) {
	s.network, s.address, s.upstream = network, address, address
	if network == "unix" {
		// A socket path goes in a connection string's host escaped.
		s.upstream = url.PathEscape(address)
	}
	s.reader = connectReader(s.upstream)
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
	// Tracked before anything else, so close() can end it at any point.
	s.track(client, true)
	defer s.track(client, false)
	select {
	case <-s.closing:
		return
	default:
	}
	server, err := net.Dial(s.network, s.address)
	if err != nil {
		return
	}
	defer server.Close()
	s.track(server, true)
	defer s.track(server, false)
	var sess *authSession
	if s.auth != nil {
		sess = &authSession{srv: s.auth}
	}
	for {
		limit := maxMessage
		if sess != nil && !sess.authenticated {
			limit = maxHandshakeMessage
		}
		req, err := readMessage(client, limit)
		if err != nil {
			return
		}
		var fixReply func([]byte) []byte
		if sess != nil {
			g := sess.gate(req)
			if g.close {
				return
			}
			if g.answer != nil {
				if _, err := client.Write(g.answer); err != nil {
					return
				}
				continue
			}
			req, fixReply = g.forward, g.fixReply
		}
		cmd, coll, db, write := s.lock(req)
		s.commands.request(cmd, coll)
		forward, answer := req, []byte(nil)
		switch {
		case write:
			var fix func([]byte) []byte
			forward, answer, fix = s.guard(req, cmd, coll, db)
			fixReply = chainFixes(fix, fixReply)
		case cmd == "find":
			answer = s.indexedFind(req, coll, db)
		}
		if answer != nil {
			_, err = client.Write(answer)
		} else {
			s.commands.count(forward, cmd, coll)
			var beforeReply func()
			if write {
				beforeReply = func() {
					s.indexByID(cmd, coll, db)
					if schemaCommands[cmd] {
						s.finder.forgetPlans()
					}
				}
			}
			err = s.roundTrip(server, client, forward, beforeReply, fixReply)
			if write {
				s.forgetTables(cmd, coll, db)
				if schemaCommands[cmd] {
					// Also when no reply came: the change may have been
					// made all the same.
					s.finder.forgetPlans()
				}
			}
		}
		s.unlock(cmd, coll, db, write)
		if err != nil {
			return
		}
	}
}

// indexByID keeps the _id index of idIndexer in step with the collections
// a write creates or drops. It runs under the write's lock and before the
// client has the reply, so the first write to a new collection returns only
// once lookups in it are indexed.
// A failure leaves lookups correct but slow; the next write tries again.
func (s *writeSerializer) indexByID(cmd, coll, db string) {
	if s.ids == nil {
		return
	}
	if fdb, fcoll, ok := staleAfter(cmd, coll, db); ok {
		s.ids.forget(fdb, fcoll)
	} else if coll != "" {
		if cmd == "createIndexes" {
			s.ids.forget(db, coll) // rebuild the new indexes too
		}
		if rebuilt, _ := s.ids.ensure(context.Background(), db, coll); rebuilt {
			s.finder.forgetPlans() // a retry after a failure, too
		}
	}
}

// staleAfter says what a command that drops or renames collections makes
// stale, in the terms of idIndexer.forget and fieldReader.forget: one
// collection, a database (coll ""), or everything (both "").
func staleAfter(cmd, coll, db string) (string, string, bool) {
	switch cmd {
	case "drop":
		return db, coll, true
	case "dropDatabase":
		return db, "", true
	case "renameCollection":
		return "", "", true
	}
	return "", "", false
}

// forgetTables keeps fieldReader's map of collections to tables in step
// with the collections a write drops or renames. It runs under the write's
// lock, whether or not FerretDB's reply came, so no guard of the collection
// runs in between.
func (s *writeSerializer) forgetTables(cmd, coll, db string) {
	if s.fields == nil {
		return
	}
	if fdb, fcoll, ok := staleAfter(cmd, coll, db); ok {
		s.fields.forget(fdb, fcoll)
	}
}

// roundTrip forwards req and relays its reply; beforeReply, when not nil,
// runs once the server has answered and before the client hears of it, and
// fixReply, when not nil, rewrites the reply.
func (s *writeSerializer) roundTrip(server, client net.Conn, req []byte, beforeReply func(), fixReply func([]byte) []byte) error {
	if _, err := server.Write(req); err != nil {
		return err
	}
	if flags(req)&moreToComeBit != 0 {
		if beforeReply != nil {
			beforeReply()
		}
		return nil // no reply expected
	}
	for {
		reply, err := readMessage(server, maxMessage)
		if err != nil {
			return err
		}
		if fixReply != nil {
			reply = fixReply(reply)
		}
		if beforeReply != nil {
			beforeReply()
			beforeReply = nil
		}
		if _, err := client.Write(reply); err != nil {
			return err
		}
		if flags(reply)&moreToComeBit == 0 {
			return nil
		}
	}
}

// chainFixes applies first, then second, to a reply; either may be nil.
func chainFixes(first, second func([]byte) []byte) func([]byte) []byte {
	switch {
	case first == nil:
		return second
	case second == nil:
		return first
	}
	return func(r []byte) []byte { return second(first(r)) }
}

func (s *writeSerializer) close() {
	close(s.closing)
	if s.reader != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.reader.Disconnect(ctx)
	}
	_ = s.ln.Close()
	if s.ids != nil {
		defer s.ids.close()
	}
	if s.fields != nil {
		defer s.fields.close()
	}
	s.connsMu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.connsMu.Unlock()
	s.wg.Wait()
}

func readMessage(r io.Reader, limit int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.LittleEndian.Uint32(hdr[:]))
	if n < 16 || n > limit {
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

// lock takes the locks a write needs; write reports whether it is one.
func (s *writeSerializer) lock(msg []byte) (cmd, coll, db string, write bool) {
	cmd, coll, db, ok := command(msg)
	switch {
	case !ok || !writeCommands[cmd]:
		return cmd, coll, db, false
	case databaseCommands[cmd] || coll == "":
		s.all.Lock()
		return cmd, coll, db, true
	}
	s.all.RLock()
	s.collLock(db, coll).Lock()
	return cmd, coll, db, true
}

func (s *writeSerializer) unlock(cmd, coll, db string, write bool) {
	switch {
	case !write:
	case databaseCommands[cmd] || coll == "":
		s.all.Unlock()
	default:
		s.collLock(db, coll).Unlock()
		s.all.RUnlock()
	}
}

func (s *writeSerializer) collLock(db, coll string) *sync.Mutex {
	s.nsMu.Lock()
	defer s.nsMu.Unlock()
	m := s.ns[db+"."+coll]
	if m == nil {
		m = &sync.Mutex{}
		s.ns[db+"."+coll] = m
	}
	return m
}

// databaseCommands change more than one collection.
var databaseCommands = map[string]bool{"dropDatabase": true, "renameCollection": true}

// command reads an OP_MSG's command name, the collection it names (the
// command's value) and its $db, from the body section: header (16), flags
// (4), section kind 0 (1), then the BSON document.
func command(msg []byte) (cmd, coll, db string, ok bool) {
	if opCode(msg) != opMsg || len(msg) < 26 || msg[20] != 0 {
		return "", "", "", false
	}
	doc := bsoncore.Document(msg[21:])
	if _, _, ok := bsoncore.ReadLength(doc); !ok {
		return "", "", "", false
	}
	elems, err := doc.Elements()
	if err != nil || len(elems) == 0 {
		return "", "", "", false
	}
	cmd = elems[0].Key()
	coll, _ = elems[0].Value().StringValueOK()
	if v, err := doc.LookupErr("$db"); err == nil {
		db, _ = v.StringValueOK()
	}
	return cmd, coll, db, true
}
