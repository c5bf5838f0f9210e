package devstack

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// A guard check through FerretDB costs as much as any find: the wire
// protocol, FerretDB's handler, decoding the whole stored document and
// encoding it again as BSON. fieldReader reads only the fields a guard
// compares, straight from FerretDB's SQLite files, with the index on _id
// that idIndexer adds.
//
// FerretDB 1.24 stores a document as one JSON text ("sjson"): the values at
// the top level and their types under "$s":
//
//	{"$s":{"p":{"_id":{"t":"string"},"revision":{"t":"long"}},"$k":["_id","revision"]},
//	 "_id":"o-1","revision":3}
//
// Each type the guard compares is written by encoding/json from the Go
// value: a string as a JSON string (invalid UTF-8 replaced by U+FFFD), an
// ObjectId as the JSON string of its 24 lower-case hex digits, a bool as
// true or false, a datetime as its milliseconds since the epoch, int32
// ("int") and int64 ("long") as integers, a double as the shortest decimal
// that reads back to the same float64. SQLite's -> gives that text back as
// it was stored. FerretDB finds a document by _id with
//
//	WHERE _ferretdb_sjson->'$._id' = <the id encoded as above>
//
// and fieldReader asks exactly that, then checks the id's type: the text of
// an ObjectId is also the text of the string of its hex digits.
//
// The serializer holds the collection's write lock while it checks a guard,
// so no write to the collection is under way: FerretDB keeps its files in
// WAL mode, where a read sees every transaction committed before it began,
// and a reader never blocks a writer. Reads go through a read-only pool per
// database file, outside any transaction, and each closes its rows at once.
//
// Whatever it cannot decide for certain (an id or value type other than
// those above, a field holding an array, a collection it cannot map to its
// table, any SQLite error) it leaves to the read through FerretDB.
type fieldReader struct {
	mu     sync.Mutex
	files  *sqliteFiles
	tables map[string]string // db + "\x00" + collection -> table
}

func newFieldReader(dir string) *fieldReader {
	// mode=ro: never create a file FerretDB has not, never write; a
	// missing file fails the first query and the guard goes to FerretDB.
	// One guard at a time runs per collection; a few collections of one
	// database may be checked at once.
	return &fieldReader{files: newSQLiteFiles(dir, "mode=ro&_pragma=busy_timeout(10000)", 4), tables: map[string]string{}}
}

// holds reports whether document id of db.coll exists and has every field
// of conds equal to its value. queried says whether it asked SQLite; an
// error (errUndecided or another) means the answer is unknown.
func (r *fieldReader) holds(db, coll string, id bsoncore.Value, conds []bsoncore.Element) (holds, queried bool, err error) {
	idText, idType, ok := sjsonID(id)
	if !ok {
		return false, false, errUndecided
	}
	for _, c := range conds {
		if !plainKey(c.Key()) {
			return false, false, errUndecided
		}
	}
	conn, table, err := r.table(db, coll)
	if err != nil {
		return false, false, err
	}
	var q strings.Builder
	q.WriteString(`SELECT _ferretdb_sjson->>'$."$s".p._id.t'`)
	for _, c := range conds {
		fmt.Fprintf(&q, `, _ferretdb_sjson->>'$."$s".p."%s".t', _ferretdb_sjson->'$."%s"'`, c.Key(), c.Key())
	}
	fmt.Fprintf(&q, ` FROM %s WHERE %s = ?`, quoteIdent(table), idIndexExpr)
	// No deadline: a lookup by index takes microseconds, and the busy
	// timeout bounds a wait for a lock. A context with one would cost a
	// goroutine per query in database/sql and in the driver. (Keeping the
	// statement prepared would save nothing: the driver prepares a
	// statement again each time it runs.)
	rows, err := conn.QueryContext(context.Background(), q.String(), idText)
	if err != nil {
		// Read the table's name afresh next time.
		r.forget(db, coll)
		return false, true, err
	}
	defer rows.Close()
	dest := make([]any, 1+2*len(conds))
	cols := make([]sql.NullString, len(dest))
	for i := range dest {
		dest[i] = &cols[i]
	}
	found := false
	var undecided error
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return false, true, err
		}
		if !cols[0].Valid {
			return false, true, errUndecided // no type for its _id
		}
		if cols[0].String != idType {
			// The same text under another type: a string id of an
			// ObjectId's hex digits, or the other way round. Not this
			// document; FerretDB would not match it either.
			continue
		}
		if found {
			return false, true, errUndecided // two documents with one _id
		}
		found = true
		// One field that differs decides; one SQLite cannot compare
		// leaves the rest to FerretDB.
		holds = true
		for i, c := range conds {
			eq, err := sjsonEqual(cols[1+2*i], cols[2+2*i], c.Value())
			if err != nil {
				undecided = err
				continue
			}
			if !eq {
				holds, undecided = false, nil
				break
			}
		}
	}
	if err := rows.Err(); err != nil {
		return false, true, err
	}
	if undecided != nil {
		return false, true, undecided
	}
	return found && holds, true, nil
}

// sjsonID is what FerretDB compares _id with for id: its sjson text, and
// its type in the schema. Only string and ObjectId ids are looked up that
// way, and only a string that is valid UTF-8 has a text of its own.
func sjsonID(id bsoncore.Value) (text, typ string, ok bool) {
	switch id.Type {
	case bsoncore.TypeString:
		s, ok := id.StringValueOK()
		if !ok || !utf8.ValidString(s) {
			return "", "", false
		}
		b, err := json.Marshal(s)
		if err != nil {
			return "", "", false
		}
		return string(b), "string", true
	case bsoncore.TypeObjectID:
		oid, ok := id.ObjectIDOK()
		if !ok {
			return "", "", false
		}
		return `"` + hex.EncodeToString(oid[:]) + `"`, "objectId", true
	}
	return "", "", false
}

// sjsonEqual compares want with a stored field: its schema type (SQL NULL
// when the field is missing) and its JSON text. An error means it cannot
// tell.
func sjsonEqual(typ, text sql.NullString, want bsoncore.Value) (bool, error) {
	if !text.Valid {
		// Missing: no plain value equals it.
		return false, nil
	}
	var got bsoncore.Value
	switch typ.String {
	case "string":
		s, err := jsonString(text.String)
		if err != nil {
			return false, err
		}
		got = bsoncore.Value{Type: bsoncore.TypeString, Data: bsoncore.AppendString(nil, s)}
	case "objectId":
		s, err := jsonString(text.String)
		if err != nil {
			return false, err
		}
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != 12 {
			return false, errUndecided
		}
		got = bsoncore.Value{Type: bsoncore.TypeObjectID, Data: b}
	case "bool":
		switch text.String {
		case "true":
			got = bsoncore.Value{Type: bsoncore.TypeBoolean, Data: []byte{1}}
		case "false":
			got = bsoncore.Value{Type: bsoncore.TypeBoolean, Data: []byte{0}}
		default:
			return false, errUndecided
		}
	case "date":
		ms, err := strconv.ParseInt(text.String, 10, 64)
		if err != nil {
			return false, errUndecided
		}
		got = bsoncore.Value{Type: bsoncore.TypeDateTime, Data: bsoncore.AppendDateTime(nil, ms)}
	case "int":
		n, err := strconv.ParseInt(text.String, 10, 32)
		if err != nil {
			return false, errUndecided
		}
		got = bsoncore.Value{Type: bsoncore.TypeInt32, Data: bsoncore.AppendInt32(nil, int32(n))}
	case "long":
		n, err := strconv.ParseInt(text.String, 10, 64)
		if err != nil {
			return false, errUndecided
		}
		got = bsoncore.Value{Type: bsoncore.TypeInt64, Data: bsoncore.AppendInt64(nil, n)}
	case "double":
		f, err := strconv.ParseFloat(text.String, 64)
		if err != nil {
			return false, errUndecided
		}
		got = bsoncore.Value{Type: bsoncore.TypeDouble, Data: bsoncore.AppendDouble(nil, f)}
	case "null", "object":
		// A plain value never equals null or an embedded document.
		return false, nil
	default:
		// An array matches a value it holds; binary data, regular
		// expressions and timestamps have rules of their own. Left to
		// FerretDB.
		return false, errUndecided
	}
	return sameValue(got, want), nil
}

// jsonString decodes a JSON string as encoding/json wrote it.
func jsonString(text string) (string, error) {
	if len(text) < 2 || text[0] != '"' || text[len(text)-1] != '"' {
		return "", errUndecided
	}
	if !strings.ContainsRune(text, '\\') {
		return text[1 : len(text)-1], nil
	}
	var s string
	if err := json.Unmarshal([]byte(text), &s); err != nil {
		return "", errUndecided
	}
	return s, nil
}

// plainKey reports whether a field name can go into a JSON path as is:
// FerretDB writes names into its JSON unescaped, and SQLite's path syntax
// has characters of its own.
func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range []byte(k) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// table returns the pool of db's file and the table of coll, read from
// FerretDB's metadata the first time and kept until forget. The serializer
// calls forget when a collection is dropped or renamed and when a database
// is dropped, while it holds the locks that keep guards of those
// collections out: a cached name is never stale. A collection or database
// it cannot find is left to FerretDB, which knows for sure.
func (r *fieldReader) table(db, coll string) (*sql.DB, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	conn, err := r.open(db)
	if err != nil {
		return nil, "", err
	}
	key := db + "\x00" + coll
	if t, ok := r.tables[key]; ok {
		return conn, t, nil
	}
	var t string
	err = conn.QueryRowContext(context.Background(), fmt.Sprintf("SELECT table_name FROM %s WHERE name = ?", quoteIdent(metadataTable)), coll).Scan(&t)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, "", errUndecided
		}
		return nil, "", err
	}
	r.tables[key] = t
	return conn, t, nil
}

// open returns the read-only pool of db's file. Call with r.mu held.
func (r *fieldReader) open(db string) (*sql.DB, error) {
	if db == "" || strings.ContainsAny(db, `/\`) {
		return nil, errUndecided
	}
	return r.files.open(db)
}

// forget drops what is known of db.coll (of all of db when coll is "", of
// every database when db is "" too). A database's pool is closed with it:
// a connection to a dropped database's file would go on reading the
// deleted file.
func (r *fieldReader) forget(db, coll string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.tables {
		d, c, _ := strings.Cut(k, "\x00")
		if db == "" || d == db && (coll == "" || c == coll) {
			delete(r.tables, k)
		}
	}
	if coll == "" {
		r.files.close(db)
	}
}

func (r *fieldReader) close() { r.forget("", "") }
