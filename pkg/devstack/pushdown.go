package devstack

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// FerretDB 1.24's SQLite backend hands SQLite a filter only when it is
// exactly {_id: X}. Any other find reads and decodes every document of the
// collection and filters and sorts them in Go, however the collection is
// indexed: one page of a customer's orders among 100,000 took longer than
// the services' 3 s store timeout. MongoDB walks the index the collection
// has for the query.
//
// indexedFind gives the dev store the same for a find of at most
// pushdownLimit documents (a page, or a query that selects few, such as the
// documents written since a relay's mark): equalities, ranges ($lt, $lte,
// $gt, $gte) and $in on top-level fields, joined by $and and $or, in the
// order of a sort. It asks
// SQLite for the _id of each match, in order, over the expressions the
// collection's indexes are built on (fieldExpr, see useFieldIndexes), and
// goes ahead only when SQLite's plan searches an index rather than reading
// the table. It then reads each document by _id through FerretDB, checks it
// against the filter again (it may have changed in between), applies the
// projection (top-level fields kept or left out), and answers the find
// itself. Any other find, or one that matches more than pushdownLimit
// documents, goes to FerretDB as it came.
//
// The SQL compares each field's value and checks its type in FerretDB's
// schema, so it matches what MongoDB's filter matches among scalar values.
// Two cases differ from MongoDB, and the shop's documents have neither: a
// field holding an array does not match the values it holds, and a sort
// over a field whose type differs from document to document orders the
// types as SQLite does.
type indexedFinder struct {
	fields *fieldReader
	mu     sync.Mutex
	plans  map[string]bool // db + "\x00" + SQL -> whether its plan searches an index
	// epoch counts forgetPlans: a plan read while indexes changed is not
	// kept, since it may describe the indexes from before.
	epoch uint64
	// afterIDs, when set (by tests), runs after each read of a page of ids.
	afterIDs atomic.Pointer[func()]
}

// maxPlans bounds the plans kept: the shop's stores find with a few dozen
// shapes of query.
const maxPlans = 256

// pushdownLimit bounds what indexedFind answers; a bigger find goes to
// FerretDB.
const pushdownLimit = 1000

// findOptions are the fields of a find command indexedFind understands or
// may ignore; a find with any other goes to FerretDB.
var findOptions = map[string]bool{
	"find": true, "filter": true, "sort": true, "limit": true, "projection": true, "batchSize": true,
	"singleBatch": true, "$db": true, "lsid": true, "$clusterTime": true, "maxTimeMS": true,
	"$readPreference": true, "readConcern": true,
}

// errNoPushdown: the find is not one indexedFind answers.
var errNoPushdown = errors.New("devstack: find not pushed down")

// find is a find command indexedFind can answer.
type find struct {
	db, coll   string
	filter     bsoncore.Document
	sort       []sortKey
	limit      int // 0: all (up to pushdownLimit)
	projection projection
}

// projection is a find's projection of top-level fields: the fields to
// keep (with _id unless noID), or else the fields to leave out.
type projection struct {
	keep, leave []string
	noID        bool
}

type sortKey struct {
	field string
	desc  bool
}

// indexedFind answers req, a find of db.coll, from an index, or returns nil
// when FerretDB must.
func (s *writeSerializer) indexedFind(req []byte, coll, db string) (answer []byte) {
	if s.finder == nil {
		return nil
	}
	defer func() {
		// A request this code misreads must not take the store down:
		// FerretDB answers it instead.
		if recover() != nil {
			answer = nil
		}
	}()
	f, err := parseFind(req, db, coll)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	docs, err := s.finder.run(ctx, s.reader, f, &s.commands)
	if err != nil {
		return nil
	}
	batch := bsoncore.NewArrayBuilder()
	for _, d := range docs {
		batch.AppendDocument(d)
	}
	cursor := bsoncore.NewDocumentBuilder().AppendArray("firstBatch", batch.Build()).
		AppendInt64("id", 0).AppendString("ns", db+"."+coll).Build()
	return reply(req, bsoncore.NewDocumentBuilder().AppendDocument("cursor", cursor).AppendDouble("ok", 1).Build())
}

// parseFind reads a find command, or errNoPushdown.
func parseFind(req []byte, db, coll string) (find, error) {
	m, ok := parseOpMsg(req)
	if !ok || len(m.sections) != 1 || m.flags != 0 || db == "" || coll == "" {
		return find{}, errNoPushdown
	}
	body := m.sections[0].body
	elems, err := body.Elements()
	if err != nil {
		return find{}, errNoPushdown
	}
	f := find{db: db, coll: coll, filter: bsoncore.NewDocumentBuilder().Build()}
	singleBatch, batchSize := false, int64(101) // MongoDB's first batch by default
	for _, e := range elems {
		if !findOptions[e.Key()] {
			return find{}, errNoPushdown
		}
		v := e.Value()
		switch e.Key() {
		case "filter":
			d, ok := v.DocumentOK()
			if !ok {
				return find{}, errNoPushdown
			}
			f.filter = d
		case "sort":
			d, ok := v.DocumentOK()
			if !ok {
				return find{}, errNoPushdown
			}
			keys, _ := d.Elements()
			for _, k := range keys {
				dir, ok := k.Value().AsInt64OK()
				if !ok || dir != 1 && dir != -1 || !plainKey(k.Key()) {
					return find{}, errNoPushdown
				}
				f.sort = append(f.sort, sortKey{field: k.Key(), desc: dir == -1})
			}
		case "limit":
			n, ok := v.AsInt64OK()
			if !ok {
				return find{}, errNoPushdown
			}
			f.limit = int(min(max(n, -n), pushdownLimit+1))
		case "projection":
			d, ok := v.DocumentOK()
			if !ok {
				return find{}, errNoPushdown
			}
			if f.projection, ok = parseProjection(d); !ok {
				return find{}, errNoPushdown
			}
		case "singleBatch":
			singleBatch, _ = v.BooleanOK()
		case "batchSize":
			n, ok := v.AsInt64OK()
			if !ok || n <= 0 {
				return find{}, errNoPushdown
			}
			batchSize = n
		case "readConcern":
			d, _ := v.DocumentOK()
			if lvl, _ := d.Lookup("level").StringValueOK(); lvl != "" && lvl != "local" {
				return find{}, errNoPushdown
			}
		}
	}
	if singleBatch && (f.limit == 0 || int64(f.limit) > batchSize) {
		// One batch and no cursor: what the batch holds is all there is.
		f.limit = int(min(batchSize, pushdownLimit+1))
	}
	if f.limit > pushdownLimit {
		return find{}, errNoPushdown
	}
	return f, nil
}

// parseProjection reads {field: 1, ...} or {field: 0, ...} of top-level
// fields, _id either way.
func parseProjection(d bsoncore.Document) (projection, bool) {
	var p projection
	idKept := false
	keys, err := d.Elements()
	if err != nil {
		return p, false
	}
	for _, k := range keys {
		v := k.Value()
		if !v.IsNumber() && v.Type != bsoncore.TypeBoolean || !plainKey(k.Key()) {
			return p, false // an expression, a path, $slice and the like
		}
		include := asFloat(v) != 0
		switch {
		case k.Key() == "_id":
			p.noID, idKept = !include, include
		case include:
			p.keep = append(p.keep, k.Key())
		default:
			p.leave = append(p.leave, k.Key())
		}
	}
	if len(p.keep) > 0 && len(p.leave) > 0 {
		return p, false // MongoDB refuses it; let FerretDB say so
	}
	if len(p.keep) == 0 && p.noID {
		p.leave = append(p.leave, "_id")
	}
	if len(p.keep) == 0 && len(p.leave) == 0 && idKept {
		p.keep = []string{"_id"} // {_id: 1} keeps _id alone
	}
	return p, true
}

// asFloat is a number's value; a bool reads as 0 or 1.
func asFloat(v bsoncore.Value) float64 {
	switch v.Type {
	case bsoncore.TypeDouble:
		return v.Double()
	case bsoncore.TypeInt32, bsoncore.TypeInt64:
		return float64(asInt(v))
	case bsoncore.TypeBoolean:
		if v.Boolean() {
			return 1
		}
	}
	return 0
}

// run answers f: the matching documents, in order.
func (x *indexedFinder) run(ctx context.Context, reader *mongo.Client, f find, counter *commandCounter) ([]bsoncore.Document, error) {
	var q sqlFilter
	where, err := q.filter(f.filter)
	if err != nil {
		return nil, err
	}
	conn, table, err := x.fields.table(f.db, f.coll)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `SELECT _ferretdb_sjson->>'$._id', %s FROM %s`, typeExpr("_id"), quoteIdent(table))
	if where != "" {
		b.WriteString(" WHERE " + where)
	}
	for i, k := range f.sort {
		b.WriteString(map[bool]string{true: " ORDER BY ", false: ", "}[i == 0])
		b.WriteString(fieldExpr(k.field))
		if k.desc {
			b.WriteString(" DESC")
		}
	}
	b.WriteString(" LIMIT ? OFFSET ?")
	query := b.String()
	page := f.limit
	if page == 0 {
		page = pushdownLimit + 1 // all, if not more than pushdownLimit
	}
	if !x.searchesIndex(ctx, conn, f.db, query, append(q.args, page, 0)) {
		return nil, errNoPushdown
	}
	coll := reader.Database(f.db).Collection(f.coll)
	var out []bsoncore.Document
	size := 0
	// A later page of ids may repeat one of an earlier page, when
	// documents stored in between shifted the rows.
	seen := map[any]bool{}
	for offset := 0; ; offset += page {
		ids, err := x.ids(ctx, conn, query, append(slices.Clip(q.args), page, offset))
		if err != nil {
			return nil, err
		}
		if hook := x.afterIDs.Load(); hook != nil {
			(*hook)()
		}
		if f.limit == 0 && len(ids) > pushdownLimit {
			return nil, errNoPushdown
		}
		counter.add("find", f.coll, "index", 1)
		for _, id := range ids {
			if seen[id] {
				continue
			}
			seen[id] = true
			raw, err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Raw()
			counter.add("find", f.coll, "id", 1)
			if errors.Is(err, mongo.ErrNoDocuments) {
				continue // deleted since
			}
			if err != nil {
				return nil, err
			}
			doc := bsoncore.Document(raw)
			ok, err := matches(doc, f.filter)
			if err != nil {
				return nil, err
			}
			if !ok || f.limit > 0 && len(out) == f.limit {
				continue // changed since
			}
			doc = f.projection.apply(doc)
			if size += len(doc); size > 12<<20 {
				return nil, errNoPushdown // more than one reply holds
			}
			out = append(out, doc)
		}
		if f.limit == 0 || len(ids) < page || len(out) == f.limit {
			break
		}
	}
	return out, nil
}

// ids runs query and returns the _id of each row, as the BSON value to
// find it by.
func (x *indexedFinder) ids(ctx context.Context, conn *sql.DB, query string, args []any) ([]any, error) {
	rows, err := conn.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []any
	for rows.Next() {
		var text, typ sql.NullString
		if err := rows.Scan(&text, &typ); err != nil {
			return nil, err
		}
		switch typ.String {
		case "string":
			ids = append(ids, text.String)
		case "objectId":
			b, err := hex.DecodeString(text.String)
			if err != nil || len(b) != 12 {
				return nil, errNoPushdown
			}
			ids = append(ids, bson.ObjectID(b))
		default:
			return nil, errNoPushdown // an _id FerretDB does not look up by key
		}
	}
	return ids, rows.Err()
}

// forgetPlans drops the plans kept, when indexes or collections change.
func (x *indexedFinder) forgetPlans() {
	if x == nil {
		return
	}
	x.mu.Lock()
	clear(x.plans)
	x.epoch++
	x.mu.Unlock()
}

// searchesIndex reports whether SQLite's plan for query reads an index
// rather than the whole table: no step scans the table itself, and a sort
// in a temporary tree sorts only what an index search found.
func (x *indexedFinder) searchesIndex(ctx context.Context, conn *sql.DB, db, query string, args []any) bool {
	key := db + "\x00" + query
	x.mu.Lock()
	ok, known := x.plans[key]
	epoch := x.epoch
	x.mu.Unlock()
	if known {
		return ok
	}
	steps, err := queryPlan(ctx, conn, query, args...)
	if err != nil {
		return false
	}
	search, scan, temp := false, false, false
	for _, step := range steps {
		switch {
		case strings.HasPrefix(step, "SEARCH ") && strings.Contains(step, " INDEX "):
			search = true
		case strings.HasPrefix(step, "SCAN ") && !strings.Contains(step, " INDEX "):
			scan = true
		case strings.Contains(step, "TEMP B-TREE"):
			temp = true
		}
	}
	ok = !scan && (search || !temp)
	x.mu.Lock()
	if len(x.plans) >= maxPlans {
		clear(x.plans) // finds of ever new shapes: start over
	}
	if x.epoch == epoch {
		x.plans[key] = ok
	}
	x.mu.Unlock()
	return ok
}

// sqlFilter turns a filter into an SQL condition over fieldExpr and
// typeExpr, collecting its arguments in order.
type sqlFilter struct{ args []any }

var sqlOps = map[string]string{"$eq": "=", "$lt": "<", "$lte": "<=", "$gt": ">", "$gte": ">="}

// filter is d as an SQL condition, "" for an empty filter.
func (q *sqlFilter) filter(d bsoncore.Document) (string, error) {
	elems, err := d.Elements()
	if err != nil {
		return "", errNoPushdown
	}
	var parts []string
	for _, e := range elems {
		var p string
		switch k := e.Key(); k {
		case "$and", "$or":
			vals, err := docs(e.Value())
			if err != nil {
				return "", err
			}
			subs := make([]string, len(vals))
			for i, v := range vals {
				sub, err := q.filter(v)
				if err != nil {
					return "", err
				}
				if sub == "" {
					sub = "1"
				}
				subs[i] = "(" + sub + ")"
			}
			p = strings.Join(subs, map[string]string{"$and": " AND ", "$or": " OR "}[k])
		default:
			if !plainKey(k) {
				return "", errNoPushdown
			}
			if p, err = q.field(k, e.Value()); err != nil {
				return "", err
			}
		}
		parts = append(parts, "("+p+")")
	}
	return strings.Join(parts, " AND "), nil
}

// field is the condition v puts on field f: a value to equal, or a
// document of operators.
func (q *sqlFilter) field(f string, v bsoncore.Value) (string, error) {
	d, isDoc := v.DocumentOK()
	if !isDoc {
		return q.compare(f, "=", v)
	}
	elems, err := d.Elements()
	if err != nil || len(elems) == 0 {
		return "", errNoPushdown // an embedded document to equal
	}
	var parts []string
	for _, e := range elems {
		if e.Key() == "$in" {
			vals, ok := arrayValues(e.Value())
			if !ok {
				return "", errNoPushdown
			}
			var marks []string
			var types []string
			for i, v := range vals {
				arg, ts, ok := sqlValue(v)
				if !ok || i > 0 && !slices.Equal(ts, types) {
					return "", errNoPushdown // one kind of value only
				}
				types = ts
				q.args = append(q.args, arg)
				marks = append(marks, "?")
			}
			parts = append(parts, fmt.Sprintf("%s IN (%s) AND %s IN (%s)", fieldExpr(f), strings.Join(marks, ", "), typeExpr(f), quoteList(types)))
			continue
		}
		op, ok := sqlOps[e.Key()]
		if !ok {
			return "", errNoPushdown
		}
		p, err := q.compare(f, op, e.Value())
		if err != nil {
			return "", err
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " AND "), nil
}

func (q *sqlFilter) compare(f, op string, v bsoncore.Value) (string, error) {
	arg, types, ok := sqlValue(v)
	if !ok {
		return "", errNoPushdown
	}
	q.args = append(q.args, arg)
	return fmt.Sprintf("%s %s ? AND %s IN (%s)", fieldExpr(f), op, typeExpr(f), quoteList(types)), nil
}

// sqlValue is v as fieldExpr reads it out of FerretDB's JSON, with the
// schema types MongoDB compares it with; false for a value it leaves to
// FerretDB (null, documents, arrays, binary data and the rest).
func sqlValue(v bsoncore.Value) (any, []string, bool) {
	numbers := []string{"int", "long", "double"}
	switch v.Type {
	case bsoncore.TypeString:
		s, ok := v.StringValueOK()
		return s, []string{"string"}, ok && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
	case bsoncore.TypeObjectID:
		oid := v.ObjectID()
		return hex.EncodeToString(oid[:]), []string{"objectId"}, true
	case bsoncore.TypeDateTime:
		return v.DateTime(), []string{"date"}, true
	case bsoncore.TypeInt32, bsoncore.TypeInt64:
		return asInt(v), numbers, true
	case bsoncore.TypeDouble:
		f := v.Double()
		return f, numbers, !math.IsNaN(f) && !math.IsInf(f, 0)
	case bsoncore.TypeBoolean:
		if v.Boolean() {
			return int64(1), []string{"bool"}, true
		}
		return int64(0), []string{"bool"}, true
	}
	return nil, nil, false
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = "'" + s + "'"
	}
	return strings.Join(q, ", ")
}

// arrayValues is the values of v, a non-empty array.
func arrayValues(v bsoncore.Value) ([]bsoncore.Value, bool) {
	arr, ok := v.ArrayOK()
	if !ok {
		return nil, false
	}
	vals, err := arr.Values()
	return vals, err == nil && len(vals) > 0
}

// docs is the documents of v, a non-empty array of documents.
func docs(v bsoncore.Value) ([]bsoncore.Document, error) {
	vals, ok := arrayValues(v)
	if !ok {
		return nil, errNoPushdown
	}
	out := make([]bsoncore.Document, len(vals))
	for i, v := range vals {
		if out[i], ok = v.DocumentOK(); !ok {
			return nil, errNoPushdown
		}
	}
	return out, nil
}

// matches is MongoDB's verdict on doc for filter, of the shapes sqlFilter
// takes. A field holding an array or a document is left to FerretDB.
func matches(doc, filter bsoncore.Document) (bool, error) {
	elems, err := filter.Elements()
	if err != nil {
		return false, errNoPushdown
	}
	for _, e := range elems {
		var ok bool
		switch e.Key() {
		case "$and", "$or":
			subs, err := docs(e.Value())
			if err != nil {
				return false, err
			}
			and := e.Key() == "$and"
			ok = and
			for _, sub := range subs {
				m, err := matches(doc, sub)
				if err != nil {
					return false, err
				}
				if m != and {
					ok = m
					break
				}
			}
		default:
			got, err := doc.LookupErr(e.Key())
			if err == nil && (got.Type == bsoncore.TypeArray || got.Type == bsoncore.TypeEmbeddedDocument) {
				return false, errNoPushdown
			}
			if ok, err = fieldMatches(got, err == nil, e.Value()); err != nil {
				return false, err
			}
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// fieldMatches says whether got (absent when !present) meets cond, a value
// to equal or a document of operators.
func fieldMatches(got bsoncore.Value, present bool, cond bsoncore.Value) (bool, error) {
	ops, isDoc := cond.DocumentOK()
	if !isDoc {
		return present && sameValue(got, cond), nil
	}
	elems, err := ops.Elements()
	if err != nil {
		return false, errNoPushdown
	}
	for _, e := range elems {
		want := e.Value()
		var ok bool
		switch e.Key() {
		case "$in":
			vals, isArr := arrayValues(want)
			if !isArr {
				return false, errNoPushdown
			}
			for _, v := range vals {
				ok = ok || present && sameValue(got, v)
			}
		case "$eq":
			ok = present && sameValue(got, want)
		default:
			c, comparable := compareValues(got, want)
			ok = present && comparable
			switch e.Key() {
			case "$lt":
				ok = ok && c < 0
			case "$lte":
				ok = ok && c <= 0
			case "$gt":
				ok = ok && c > 0
			case "$gte":
				ok = ok && c >= 0
			default:
				return false, errNoPushdown
			}
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// compareValues orders two values of one of MongoDB's comparison
// brackets: numbers of any type by exact value, strings by their bytes,
// dates, ObjectIds and bools. false when they are of different brackets,
// which a range operator never matches.
func compareValues(a, b bsoncore.Value) (int, bool) {
	switch {
	case isNumber(a) && isNumber(b):
		if a.Type != bsoncore.TypeDouble && b.Type != bsoncore.TypeDouble {
			return cmp.Compare(asInt(a), asInt(b)), true
		}
		fa, fb := exact(a), exact(b)
		if fa == nil || fb == nil {
			return 0, false // NaN
		}
		return fa.Cmp(fb), true
	case a.Type != b.Type:
		return 0, false
	case a.Type == bsoncore.TypeString:
		return strings.Compare(a.StringValue(), b.StringValue()), true
	case a.Type == bsoncore.TypeDateTime:
		return cmp.Compare(a.DateTime(), b.DateTime()), true
	case a.Type == bsoncore.TypeObjectID:
		x, y := a.ObjectID(), b.ObjectID()
		return strings.Compare(string(x[:]), string(y[:])), true
	case a.Type == bsoncore.TypeBoolean:
		return cmp.Compare(int64(asFloat(a)), int64(asFloat(b))), true
	}
	return 0, false
}

// exact is a number as an exact big.Float; nil for NaN.
func exact(v bsoncore.Value) *big.Float {
	if v.Type == bsoncore.TypeDouble {
		if math.IsNaN(v.Double()) {
			return nil
		}
		return new(big.Float).SetFloat64(v.Double())
	}
	return new(big.Float).SetInt64(asInt(v))
}

// apply is doc with the fields p keeps.
func (p projection) apply(doc bsoncore.Document) bsoncore.Document {
	if len(p.keep) == 0 && len(p.leave) == 0 {
		return doc
	}
	elems, _ := doc.Elements()
	idx, out := bsoncore.AppendDocumentStart(nil)
	for _, e := range elems {
		k := e.Key()
		keep := !slices.Contains(p.leave, k)
		if len(p.keep) > 0 {
			keep = slices.Contains(p.keep, k) || k == "_id" && !p.noID
		}
		if keep {
			out = append(out, e...)
		}
	}
	out, _ = bsoncore.AppendDocumentEnd(out, idx)
	return out
}
