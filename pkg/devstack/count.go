package devstack

import (
	"slices"
	"strings"
	"sync"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// StoreCommand is how many statements of one kind the store carried out:
// a command on a collection, and how it found its documents.
type StoreCommand struct {
	Command    string // find, count, aggregate, insert, update, delete, findAndModify, ...
	Collection string
	// Lookup is "id" when FerretDB fetched the document by its key (a
	// filter of exactly {_id: X}), "scan" when it read the collection and
	// filtered in Go, "none" for a command that finds nothing (insert).
	// The proxy's own reads for guard checks are the command "guardRead":
	// by "id" through FerretDB, or by "sqlite" when it read the guarded
	// fields straight from FerretDB's SQLite file (one indexed SELECT, about
	// a tenth of the CPU of a find through FerretDB).
	Lookup string
	Count  int64
}

// commandCounter counts the statements that pass the proxy, after guard
// checks rewrote what they could, and the reads those checks made: what the
// store really does. It is the dev stack's answer to "how many store round
// trips does an order cost, and does any of them scan?"
type commandCounter struct {
	mu   sync.Mutex
	n    map[[3]string]int64
	reqs map[[2]string]int64
}

// StoreRequest is how many requests of one command on one collection
// clients sent: the round trips, each carrying one statement or many (a
// bulk write, an insert of several documents).
type StoreRequest struct {
	Command    string
	Collection string
	Count      int64
}

// request counts one client request.
func (c *commandCounter) request(cmd, coll string) {
	if uncounted(cmd) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reqs == nil {
		c.reqs = map[[2]string]int64{}
	}
	c.reqs[[2]string{cmd, coll}]++
}

func (c *commandCounter) requests() []StoreRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]StoreRequest, 0, len(c.reqs))
	for k, n := range c.reqs {
		out = append(out, StoreRequest{Command: k[0], Collection: k[1], Count: n})
	}
	slices.SortFunc(out, func(a, b StoreRequest) int {
		return strings.Compare(a.Command+"\x00"+a.Collection, b.Command+"\x00"+b.Collection)
	})
	return out
}

// uncounted tells the commands that touch no document: handshakes,
// cursors, catalogue reads.
func uncounted(cmd string) bool {
	switch cmd {
	case "", "hello", "isMaster", "ismaster", "ping", "endSessions", "getMore", "killCursors", "buildInfo",
		"buildinfo", "saslStart", "saslContinue", "getParameter", "listIndexes", "listCollections", "listDatabases":
		return true
	}
	return false
}

func (c *commandCounter) add(cmd, coll, lookup string, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[[3]string]int64{}
	}
	c.n[[3]string{cmd, coll, lookup}] += n
}

func (c *commandCounter) snapshot() []StoreCommand {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]StoreCommand, 0, len(c.n))
	for k, n := range c.n {
		out = append(out, StoreCommand{Command: k[0], Collection: k[1], Lookup: k[2], Count: n})
	}
	slices.SortFunc(out, func(a, b StoreCommand) int {
		return strings.Compare(a.Command+"\x00"+a.Collection+"\x00"+a.Lookup, b.Command+"\x00"+b.Collection+"\x00"+b.Lookup)
	})
	return out
}

// filterKeys names where each command keeps its filter, and for writes the
// list of statements that each carry one under "q".
var filterKeys = map[string]string{
	"find": "filter", "count": "query", "distinct": "query", "findAndModify": "query", "findandmodify": "query",
	"delete": "deletes", "update": "updates",
}

// count records the statements of msg, a request about to go to FerretDB.
func (c *commandCounter) count(msg []byte, cmd, coll string) {
	if uncounted(cmd) {
		return
	}
	m, ok := parseOpMsg(msg)
	if !ok || len(m.sections) == 0 {
		return
	}
	body := m.sections[0].body
	key := filterKeys[cmd]
	switch {
	case cmd == "insert":
		n := int64(0)
		for _, s := range m.sections {
			if s.kind == 1 && s.id == "documents" {
				n += int64(len(s.docs))
			}
		}
		if arr, ok := body.Lookup("documents").ArrayOK(); ok {
			vals, _ := arr.Values()
			n += int64(len(vals))
		}
		c.add(cmd, coll, "none", n)
	case cmd == "update" || cmd == "delete":
		var stmts []bsoncore.Document
		for _, s := range m.sections {
			if s.kind == 1 && s.id == key {
				stmts = append(stmts, s.docs...)
			}
		}
		if arr, ok := body.Lookup(key).ArrayOK(); ok {
			vals, _ := arr.Values()
			for _, v := range vals {
				if d, ok := v.DocumentOK(); ok {
					stmts = append(stmts, d)
				}
			}
		}
		for _, st := range stmts {
			q, _ := st.Lookup("q").DocumentOK()
			c.add(cmd, coll, lookupOf(q), 1)
		}
	case key != "":
		q, _ := body.Lookup(key).DocumentOK()
		c.add(cmd, coll, lookupOf(q), 1)
	case cmd == "aggregate":
		c.add(cmd, coll, "scan", 1)
	default:
		c.add(cmd, coll, "none", 1)
	}
}

// lookupOf says how FerretDB 1.24 finds the documents of filter q: by key
// only for exactly {_id: <string or ObjectId>}.
func lookupOf(q bsoncore.Document) string {
	elems, err := q.Elements()
	if err != nil || len(elems) != 1 || elems[0].Key() != "_id" {
		return "scan"
	}
	switch elems[0].Value().Type {
	case bsoncore.TypeString, bsoncore.TypeObjectID:
		return "id"
	}
	return "scan"
}
