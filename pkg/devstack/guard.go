package devstack

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// FerretDB's SQLite backend finds a document by its key only when a filter
// is exactly {_id: X}; any other filter reads the whole collection. Every
// change in the shop is a guarded write, {_id: X, revision: R}, so without
// help each write would scan its collection and slow down as data grows.
//
// The serializer already holds the collection's write lock while a write
// runs, so nothing can change the document in between: it checks the guard's
// plain equalities itself against the document read by _id (fast: straight
// from SQLite when it can, see fieldReader, else through FerretDB), then
// forwards the write with the filter cut down to {_id: X}, or answers "0
// matched" when the guard fails, exactly as MongoDB would. Anything it does
// not understand goes through untouched: correct, only slower.

const checksumPresent = 1 << 0

// section is one OP_MSG section: kind 0 is the body, kind 1 a sequence of
// documents under an identifier (how drivers send "updates" and "deletes").
type section struct {
	kind byte
	body bsoncore.Document
	id   string
	docs []bsoncore.Document
}

type opMessage struct {
	header   []byte // 16 bytes
	flags    uint32
	sections []section
}

func parseOpMsg(msg []byte) (opMessage, bool) {
	if opCode(msg) != opMsg || len(msg) < 21 {
		return opMessage{}, false
	}
	m := opMessage{header: msg[:16], flags: binary.LittleEndian.Uint32(msg[16:20])}
	if m.flags&checksumPresent != 0 {
		return opMessage{}, false
	}
	rest := msg[20:]
	for len(rest) > 0 {
		kind := rest[0]
		rest = rest[1:]
		switch kind {
		case 0:
			doc, r, ok := bsoncore.ReadDocument(rest)
			if !ok {
				return opMessage{}, false
			}
			m.sections = append(m.sections, section{kind: 0, body: doc})
			rest = r
		case 1:
			if len(rest) < 4 {
				return opMessage{}, false
			}
			size := int(binary.LittleEndian.Uint32(rest))
			if size < 5 || size > len(rest) {
				return opMessage{}, false
			}
			seq := rest[4:size]
			rest = rest[size:]
			i := 0
			for i < len(seq) && seq[i] != 0 {
				i++
			}
			if i == len(seq) {
				return opMessage{}, false
			}
			s := section{kind: 1, id: string(seq[:i])}
			seq = seq[i+1:]
			for len(seq) > 0 {
				doc, r, ok := bsoncore.ReadDocument(seq)
				if !ok {
					return opMessage{}, false
				}
				s.docs = append(s.docs, doc)
				seq = r
			}
			m.sections = append(m.sections, s)
		default:
			return opMessage{}, false
		}
	}
	return m, true
}

func (m opMessage) encode() []byte {
	out := append([]byte{}, m.header...)
	out = binary.LittleEndian.AppendUint32(out, m.flags)
	for _, s := range m.sections {
		out = append(out, s.kind)
		if s.kind == 0 {
			out = append(out, s.body...)
			continue
		}
		size := 4 + len(s.id) + 1
		for _, d := range s.docs {
			size += len(d)
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(size))
		out = append(out, s.id...)
		out = append(out, 0)
		for _, d := range s.docs {
			out = append(out, d...)
		}
	}
	binary.LittleEndian.PutUint32(out[:4], uint32(len(out)))
	return out
}

// reply builds the OP_MSG answer to request with body doc.
func reply(request []byte, doc bsoncore.Document) []byte {
	out := make([]byte, 16, 16+5+len(doc))
	binary.LittleEndian.PutUint32(out[8:12], binary.LittleEndian.Uint32(request[4:8])) // responseTo
	binary.LittleEndian.PutUint32(out[12:16], opMsg)
	out = binary.LittleEndian.AppendUint32(out, 0)
	out = append(out, 0)
	out = append(out, doc...)
	binary.LittleEndian.PutUint32(out[:4], uint32(len(out)))
	return out
}

// guard applies the guards of an update's or delete's statements as
// described above. It returns the request to forward, or the reply to send
// instead. A write of several statements (a bulk write) forwards only the
// statements whose guard holds, each cut down to {_id: X}; those that fail
// match nothing, as in MongoDB, and count 0 in the reply; fix then numbers
// the reply's write errors as in the write that came, not the one sent.
// When any statement is of a kind the guard cannot check, the whole write
// goes through as it came: correct, only slower.
func (s *writeSerializer) guard(req []byte, cmd, coll, db string) (forward, answer []byte, fix func([]byte) []byte) {
	listKey := map[string]string{"update": "updates", "delete": "deletes"}[cmd]
	if cmd == "insert" {
		return req, nil, s.rememberInserts(req, db, coll)
	}
	// pass forwards the write as it came; what it changes is not known.
	pass := func() ([]byte, []byte, func([]byte) []byte) {
		if fdb, fcoll, ok := staleAfter(cmd, coll, db); ok {
			s.memory.forgetAll(fdb, fcoll)
		} else {
			s.memory.forgetAll(db, coll)
		}
		return req, nil, nil
	}
	if listKey == "" || s.reader == nil {
		return pass()
	}
	m, ok := parseOpMsg(req)
	if !ok || m.flags&moreToComeBit != 0 {
		// Unparsed, or unacknowledged (w:0): it expects no reply, so the
		// guard could not answer for it. Pass it through.
		return pass()
	}
	stmts, put, ok := statements(&m, listKey)
	if !ok || len(stmts) > maxGuardedStatements {
		return pass()
	}
	type checked struct {
		id    bsoncore.Value
		conds []bsoncore.Element
		stmt  bsoncore.Document
	}
	var all []checked
	seen := map[string]bool{}
	for _, stmt := range stmts {
		if upsert, ok := stmt.Lookup("upsert").BooleanOK(); ok && upsert {
			return pass()
		}
		q, ok := stmt.Lookup("q").DocumentOK()
		if !ok {
			return pass()
		}
		id, conds, ok := plainGuard(q)
		if !ok || seen[idKey(id)] {
			// Two statements on one document: the second must see the
			// first's change, which only FerretDB can give it.
			return pass()
		}
		seen[idKey(id)] = true
		all = append(all, checked{id, conds, stmt})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var keep []bsoncore.Document
	var sent []int // the index in the write that came of each statement kept
	for i, c := range all {
		holds, known := s.memory.recall(db, coll, c.id, c.conds)
		if !known {
			var err error
			if holds, err = s.guardHolds(ctx, db, coll, c.id, c.conds); err != nil {
				return pass()
			}
		}
		s.guarded.Add(1)
		if !holds {
			continue
		}
		// The guard holds: the write may go by _id alone.
		onlyID := bsoncore.BuildDocument(nil, bsoncore.AppendValueElement(nil, "_id", c.id))
		var elems [][]byte
		stmtElems, _ := c.stmt.Elements()
		for _, e := range stmtElems {
			if e.Key() == "q" {
				elems = append(elems, bsoncore.AppendDocumentElement(nil, "q", onlyID))
				continue
			}
			elems = append(elems, e)
		}
		keep = append(keep, bsoncore.BuildDocument(nil, elems...))
		sent = append(sent, i)
	}
	if len(keep) == 0 {
		return nil, reply(req, noMatch(cmd)), nil
	}
	put(keep)
	// The documents written are forgotten until the reply says what they
	// hold now.
	type written struct {
		id   bsoncore.Value
		prev map[string]bsoncore.Value
		set  []bsoncore.Element
		ok   bool
	}
	ws := make([]written, len(sent))
	for j, i := range sent {
		w := written{id: all[i].id, prev: s.memory.take(db, coll, all[i].id)}
		if u, isDoc := all[i].stmt.Lookup("u").DocumentOK(); isDoc && cmd == "update" {
			w.set, w.ok = setOnly(u)
		}
		ws[j] = w
	}
	fix = func(r []byte) []byte {
		if cmd == "update" && writeApplied(r, len(keep)) {
			for _, w := range ws {
				if w.ok {
					s.memory.remember(db, coll, w.id, w.set, w.prev)
				}
			}
		}
		if len(keep) < len(all) {
			return renumberWriteErrors(r, sent)
		}
		return r
	}
	return m.encode(), nil, fix
}

// rememberInserts returns the reply hook of an insert: once FerretDB says
// every document was stored, the guard memory has their fields.
func (s *writeSerializer) rememberInserts(req []byte, db, coll string) func([]byte) []byte {
	if s.memory == nil {
		return nil
	}
	m, ok := parseOpMsg(req)
	if !ok || m.flags&moreToComeBit != 0 {
		return nil
	}
	docs, _, ok := statements(&m, "documents")
	if !ok {
		return nil
	}
	return func(r []byte) []byte {
		if writeApplied(r, len(docs)) {
			for _, d := range docs {
				id, err := d.LookupErr("_id")
				elems, err2 := d.Elements()
				if err == nil && err2 == nil {
					s.memory.remember(db, coll, id, elems, nil)
				}
			}
		}
		return r
	}
}

// renumberWriteErrors rewrites the index of each write error in reply, a
// reply to a write sent with some statements left out, to sent[index]: the
// statement's place in the write the client made.
func renumberWriteErrors(reply []byte, sent []int) []byte {
	m, ok := parseOpMsg(reply)
	if !ok || len(m.sections) == 0 || m.sections[0].kind != 0 {
		return reply
	}
	body := m.sections[0].body
	errs, ok := body.Lookup("writeErrors").ArrayOK()
	if !ok {
		return reply
	}
	vals, err := errs.Values()
	if err != nil {
		return reply
	}
	renumbered := bsoncore.NewArrayBuilder()
	for _, v := range vals {
		we, ok := v.DocumentOK()
		if !ok {
			return reply
		}
		elems, _ := we.Elements()
		var out [][]byte
		for _, e := range elems {
			if e.Key() == "index" {
				if i, ok := e.Value().AsInt64OK(); ok && i >= 0 && int(i) < len(sent) {
					out = append(out, bsoncore.AppendInt32Element(nil, "index", int32(sent[i])))
					continue
				}
			}
			out = append(out, e)
		}
		renumbered.AppendDocument(bsoncore.BuildDocument(nil, out...))
	}
	bodyElems, _ := body.Elements()
	var out [][]byte
	for _, e := range bodyElems {
		if e.Key() == "writeErrors" {
			out = append(out, bsoncore.AppendArrayElement(nil, "writeErrors", renumbered.Build()))
			continue
		}
		out = append(out, e)
	}
	m.sections[0].body = bsoncore.BuildDocument(nil, out...)
	return m.encode()
}

// errUndecided: the serializer cannot tell whether a guard holds; the write
// goes to FerretDB as it came, or the guard is read through FerretDB.
var errUndecided = errors.New("devstack: guard undecided")

// maxGuardedStatements bounds the reads one write's guards make.
const maxGuardedStatements = 128

// guardHolds reads document id and reports whether it exists and has every
// field of conds equal to its value: from SQLite when it can tell there,
// otherwise through FerretDB. An error means the write must go to FerretDB
// as it came.
func (s *writeSerializer) guardHolds(ctx context.Context, db, coll string, id bsoncore.Value, conds []bsoncore.Element) (bool, error) {
	if s.fields != nil {
		holds, queried, err := s.fields.holds(db, coll, id, conds)
		if queried {
			s.commands.add("guardRead", coll, "sqlite", 1)
		}
		if err == nil {
			return holds, nil
		}
	}
	return s.guardHoldsFerretDB(ctx, db, coll, id, conds)
}

// guardHoldsFerretDB is guardHolds through FerretDB: a find by _id.
func (s *writeSerializer) guardHoldsFerretDB(ctx context.Context, db, coll string, id bsoncore.Value, conds []bsoncore.Element) (bool, error) {
	s.commands.add("guardRead", coll, "id", 1)
	raw, err := s.reader.Database(db).Collection(coll).FindOne(ctx, bson.D{{Key: "_id", Value: bson.RawValue{Type: bson.Type(id.Type), Value: id.Data}}}).Raw()
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return false, nil
	case err != nil:
		return false, err
	}
	doc := bsoncore.Document(raw)
	var undecided error
	for _, c := range conds {
		v, err := doc.LookupErr(c.Key())
		switch {
		case err != nil:
			return false, nil // missing
		case v.Type == bsoncore.TypeArray:
			// An array matches a value it holds, by rules FerretDB has.
			undecided = errUndecided
		case !sameValue(v, c.Value()):
			return false, nil
		}
	}
	return undecided == nil, undecided
}

// statements finds the statements of a write, in a document sequence or in
// the body, and returns a function that replaces them.
func statements(m *opMessage, listKey string) ([]bsoncore.Document, func([]bsoncore.Document), bool) {
	for i := range m.sections {
		sec := &m.sections[i]
		if sec.kind == 1 && sec.id == listKey {
			return sec.docs, func(d []bsoncore.Document) { sec.docs = d }, len(sec.docs) > 0
		}
	}
	for i := range m.sections {
		sec := &m.sections[i]
		if sec.kind != 0 {
			continue
		}
		arr, ok := sec.body.Lookup(listKey).ArrayOK()
		if !ok {
			return nil, nil, false
		}
		vals, err := arr.Values()
		if err != nil || len(vals) == 0 {
			return nil, nil, false
		}
		var docs []bsoncore.Document
		for _, v := range vals {
			d, ok := v.DocumentOK()
			if !ok {
				return nil, nil, false
			}
			docs = append(docs, d)
		}
		return docs, func(stmts []bsoncore.Document) {
			var elems [][]byte
			bodyElems, _ := sec.body.Elements()
			for _, e := range bodyElems {
				if e.Key() == listKey {
					b := bsoncore.NewArrayBuilder()
					for _, st := range stmts {
						b.AppendDocument(st)
					}
					elems = append(elems, bsoncore.AppendArrayElement(nil, listKey, b.Build()))
					continue
				}
				elems = append(elems, e)
			}
			sec.body = bsoncore.BuildDocument(nil, elems...)
		}, true
	}
	return nil, nil, false
}

// plainGuard splits a filter {_id: X, k: v, ...} into the id and the
// equalities, when every one of them is a top-level field compared with a
// plain value whose matching the guard reproduces exactly. Anything else
// (operators, dotted paths, null, documents, arrays, which MongoDB matches
// with rules of their own) is left to FerretDB.
func plainGuard(q bsoncore.Document) (bsoncore.Value, []bsoncore.Element, bool) {
	elems, err := q.Elements()
	if err != nil || len(elems) < 2 {
		return bsoncore.Value{}, nil, false
	}
	var id bsoncore.Value
	var conds []bsoncore.Element
	for _, e := range elems {
		v := e.Value()
		if !plainType[v.Type] || strings.ContainsAny(e.Key(), ".$") {
			return bsoncore.Value{}, nil, false
		}
		if e.Key() == "_id" {
			if id.Type != 0 {
				return bsoncore.Value{}, nil, false // _id twice
			}
			id = v
			continue
		}
		conds = append(conds, e)
	}
	return id, conds, id.Type != 0 && len(conds) > 0
}

var plainType = map[bsoncore.Type]bool{
	bsoncore.TypeString: true, bsoncore.TypeBoolean: true, bsoncore.TypeDateTime: true, bsoncore.TypeObjectID: true,
	bsoncore.TypeInt32: true, bsoncore.TypeInt64: true, bsoncore.TypeDouble: true,
}

// sameValue is MongoDB's equality for plain values: numbers compare by
// exact value whatever their type (int32 1 equals int64 1 and double 1.0,
// int64 2^53+1 does not equal double 2^53), the rest by type and bytes.
func sameValue(a, b bsoncore.Value) bool {
	if !isNumber(a) || !isNumber(b) {
		return a.Equal(b)
	}
	switch {
	case a.Type == bsoncore.TypeDouble && b.Type == bsoncore.TypeDouble:
		return a.Double() == b.Double()
	case a.Type == bsoncore.TypeDouble:
		return intEqualsFloat(asInt(b), a.Double())
	case b.Type == bsoncore.TypeDouble:
		return intEqualsFloat(asInt(a), b.Double())
	}
	return asInt(a) == asInt(b)
}

func isNumber(v bsoncore.Value) bool {
	return v.Type == bsoncore.TypeInt32 || v.Type == bsoncore.TypeInt64 || v.Type == bsoncore.TypeDouble
}

func asInt(v bsoncore.Value) int64 {
	if v.Type == bsoncore.TypeInt32 {
		return int64(v.Int32())
	}
	return v.Int64()
}

// intEqualsFloat compares exactly: a float64 equals an integer only when it
// is that whole number (NaN, infinities and fractions equal none).
func intEqualsFloat(i int64, f float64) bool {
	if f != math.Trunc(f) || f < -(1<<63) || f >= 1<<63 {
		return false
	}
	return int64(f) == i
}

func noMatch(cmd string) bsoncore.Document {
	b := bsoncore.NewDocumentBuilder().AppendInt32("n", 0)
	if cmd == "update" {
		b = b.AppendInt32("nModified", 0)
	}
	return b.AppendDouble("ok", 1).Build()
}

func connectReader(upstream string) *mongo.Client {
	c, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + upstream + "/").SetMaxPoolSize(8))
	if err != nil {
		return nil
	}
	return c
}
