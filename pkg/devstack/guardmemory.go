package devstack

import (
	"slices"
	"strings"
	"sync"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Every write of the shop goes through the serializer, one per collection
// at a time, so the serializer can know what a guard is about to read: the
// value the last write gave the guarded field. guardMemory keeps, for each
// document a write it understood has touched, the values of the fields
// guards compare (a collection's guard fields are learned from the guards
// it sees, so an order costs one remembered revision, not its whole
// document). A guard whose fields are all remembered is decided without a
// read; MongoDB, too, checks a filter without a second round through its
// storage.
//
// What the memory holds must be what the store holds, so it is forgotten
// before anything could make it wrong:
//   - a guarded update forgets its documents before it goes to FerretDB,
//     and remembers their new values only from a reply that says every
//     statement was applied, and only for a plain {$set: {...}};
//   - an insert remembers its documents only from a reply that says all
//     were stored (an insert never changes a document that existed);
//   - any other write to a collection (a delete, an update the guard does
//     not take, findAndModify, a drop or rename) forgets the collection, or
//     the database.
//
// A write whose reply never comes leaves its documents forgotten, and the
// next guard reads them.
type guardMemory struct {
	mu     sync.Mutex
	fields map[string][]string                             // collection -> the fields its guards compare
	docs   map[string]map[string]map[string]bsoncore.Value // collection -> document id -> field -> value
	n      int                                             // documents remembered
}

// maxRemembered bounds the documents remembered; past it the memory starts
// over.
const maxRemembered = 200_000

func newGuardMemory() *guardMemory {
	return &guardMemory{fields: map[string][]string{}, docs: map[string]map[string]map[string]bsoncore.Value{}}
}

func collKey(db, coll string) string { return db + "\x00" + coll }

// idKey names the document whose _id is id. Numbers equal in value are
// one _id whatever their type (int32 7, int64 7 and 7.0 find the same
// document), so a whole number is keyed by its value as an int64.
func idKey(id bsoncore.Value) string {
	switch {
	case id.Type == bsoncore.TypeInt32 || id.Type == bsoncore.TypeInt64:
		return "n" + string(bsoncore.AppendInt64(nil, asInt(id)))
	case id.Type == bsoncore.TypeDouble:
		if f := id.Double(); intEqualsFloat(int64(f), f) {
			return "n" + string(bsoncore.AppendInt64(nil, int64(f)))
		}
	}
	return string(rune(id.Type)) + string(id.Data)
}

// recall decides a guard from memory: known is false when a field of conds
// is not remembered for document id.
func (g *guardMemory) recall(db, coll string, id bsoncore.Value, conds []bsoncore.Element) (holds, known bool) {
	if g == nil {
		return false, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	ck := collKey(db, coll)
	for _, c := range conds {
		if !slices.Contains(g.fields[ck], c.Key()) {
			g.fields[ck] = append(g.fields[ck], c.Key())
		}
	}
	fields := g.docs[ck][idKey(id)]
	if fields == nil {
		return false, false
	}
	holds = true
	for _, c := range conds {
		v, ok := fields[c.Key()]
		if !ok {
			return false, false
		}
		holds = holds && sameValue(v, c.Value())
	}
	return holds, true
}

// take forgets document id of db.coll and returns what was remembered of
// it.
func (g *guardMemory) take(db, coll string, id bsoncore.Value) map[string]bsoncore.Value {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	docs := g.docs[collKey(db, coll)]
	fields, ok := docs[idKey(id)]
	if ok {
		delete(docs, idKey(id))
		g.n--
	}
	return fields
}

// forgetAll drops every document of db.coll; of all of db when coll is
// "", of every database when db is "" too.
func (g *guardMemory) forgetAll(db, coll string) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, docs := range g.docs {
		d, c, _ := strings.Cut(k, "\x00")
		if db == "" || d == db && (coll == "" || c == coll) {
			g.n -= len(docs)
			delete(g.docs, k)
		}
	}
}

// remember records the values elems (a document's top-level fields, or a
// $set's) give the guard fields of db.coll in document id; a guard field
// elems do not set keeps its value in prev (what take returned before the
// write), or stays unknown.
func (g *guardMemory) remember(db, coll string, id bsoncore.Value, elems []bsoncore.Element, prev map[string]bsoncore.Value) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	ck := collKey(db, coll)
	guarded := g.fields[ck]
	if len(guarded) == 0 {
		return
	}
	docs := g.docs[ck]
	if docs == nil {
		docs = map[string]map[string]bsoncore.Value{}
		g.docs[ck] = docs
	}
	old := docs[idKey(id)]
	fields := map[string]bsoncore.Value{}
	for k, v := range prev {
		fields[k] = v
	}
	for _, e := range elems {
		if slices.Contains(guarded, e.Key()) {
			v := e.Value()
			if !plainType[v.Type] {
				delete(fields, e.Key()) // a value the guard does not compare itself
				continue
			}
			fields[e.Key()] = bsoncore.Value{Type: v.Type, Data: slices.Clone(v.Data)}
		}
	}
	if old == nil {
		if g.n >= maxRemembered {
			clear(g.docs)
			g.n = 0
			docs = map[string]map[string]bsoncore.Value{}
			g.docs[ck] = docs
		}
		g.n++
	}
	docs[idKey(id)] = fields
}

// writeApplied reports whether reply, FerretDB's answer to a write of n
// statements or documents, says every one of them was applied: ok, n
// matched (or inserted), no write error and no write concern error.
func writeApplied(reply []byte, n int) bool {
	m, ok := parseOpMsg(reply)
	if !ok || len(m.sections) == 0 || m.sections[0].kind != 0 {
		return false
	}
	body := m.sections[0].body
	if okv, ok := body.Lookup("ok").AsFloat64OK(); !ok || okv != 1 {
		return false
	}
	if _, err := body.LookupErr("writeErrors"); err == nil {
		return false
	}
	if _, err := body.LookupErr("writeConcernError"); err == nil {
		return false
	}
	got, ok := body.Lookup("n").AsInt64OK()
	return ok && got == int64(n)
}

// setOnly returns the fields of u when it is {$set: {...}} and nothing else.
func setOnly(u bsoncore.Document) ([]bsoncore.Element, bool) {
	elems, err := u.Elements()
	if err != nil || len(elems) != 1 || elems[0].Key() != "$set" {
		return nil, false
	}
	set, ok := elems[0].Value().DocumentOK()
	if !ok {
		return nil, false
	}
	fields, err := set.Elements()
	if err != nil {
		return nil, false
	}
	for _, f := range fields {
		if !plainKey(f.Key()) {
			return nil, false // a path or an operator: leave it forgotten
		}
	}
	return fields, true
}
