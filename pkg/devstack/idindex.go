package devstack

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	_ "modernc.org/sqlite" // the driver FerretDB's SQLite backend uses
)

// FerretDB 1.24 keeps each collection in a SQLite table of one JSON column
// and looks documents up by key with
//
//	WHERE _ferretdb_sjson->'$._id' = ?
//
// but builds its unique _id index on the expression _ferretdb_sjson->"_id".
// SQLite uses an expression index only for the identical expression, so
// every find, update and delete by _id scans the whole table and gets
// slower as the data grows, where MongoDB walks its _id index.
//
// idIndexer rebuilds that unique index on exactly the expression FerretDB
// queries with, so a lookup by _id costs the same at 100,000 documents as
// at 10. The two expressions name the same value (a bare label after -> is
// read as the path $.label), so the index refuses exactly the duplicates it
// refused before; only SQLite's matching of index to query, which is by
// the text of the expression, changes. The index keeps its name, the one
// FerretDB's metadata lists, so listIndexes and a duplicate key error read
// as before, and it goes when the table goes. The swap is one transaction:
// at no moment is the table without its unique index.
//
// Earlier versions added a second, plain index on the expression instead,
// which cost every write one more index to keep; the swap drops it.
type idIndexer struct {
	mu    sync.Mutex
	files *sqliteFiles
	done  map[string]bool // "db.collection" already indexed
}

// idIndexExpr is the expression FerretDB's queries by _id use.
const idIndexExpr = `_ferretdb_sjson->'$._id'`

// metadataTable is where FerretDB maps collection names to table names.
const metadataTable = "_ferretdb_collections"

func newIDIndexer(dir string) *idIndexer {
	return &idIndexer{files: newSQLiteFiles(dir, "_pragma=busy_timeout(10000)", 1), done: map[string]bool{}}
}

// indexAll indexes every collection of every database under dir: the data
// an earlier run left.
func (x *idIndexer) indexAll(ctx context.Context) error {
	files, err := filepath.Glob(filepath.Join(x.files.dir, "*.sqlite"))
	if err != nil {
		return err
	}
	for _, f := range files {
		db := strings.TrimSuffix(filepath.Base(f), ".sqlite")
		if err := x.ensureDB(ctx, db, ""); err != nil {
			return err
		}
	}
	return nil
}

// ensure indexes collection coll of database db, once, and reports whether
// it looked at the indexes this time (they may have changed).
func (x *idIndexer) ensure(ctx context.Context, db, coll string) (bool, error) {
	x.mu.Lock()
	done := x.done[db+"."+coll]
	x.mu.Unlock()
	if done {
		return false, nil
	}
	return true, x.ensureDB(ctx, db, coll)
}

// ensureDB indexes coll of db, or every collection of db when coll is "".
func (x *idIndexer) ensureDB(ctx context.Context, db, coll string) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	conn, err := x.open(db)
	if conn == nil || err != nil {
		return err
	}
	defer x.files.close(db)
	q := fmt.Sprintf("SELECT name, table_name, settings FROM %q", metadataTable)
	args := []any{}
	if coll != "" {
		q += " WHERE name = ?"
		args = append(args, coll)
	}
	rows, err := conn.QueryContext(ctx, q, args...)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return nil // a database FerretDB has not finished creating
		}
		return fmt.Errorf("devstack: read collections of %s: %w", db, err)
	}
	type table struct{ coll, name, settings string }
	var tables []table
	for rows.Next() {
		var t table
		if err := rows.Scan(&t.coll, &t.name, &t.settings); err != nil {
			rows.Close()
			return fmt.Errorf("devstack: read collections of %s: %w", db, err)
		}
		tables = append(tables, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("devstack: read collections of %s: %w", db, err)
	}
	for _, t := range tables {
		if err := useIDIndex(ctx, conn, t.name); err != nil {
			return fmt.Errorf("devstack: index %s.%s by _id: %w", db, t.coll, err)
		}
		if err := useFieldIndexes(ctx, conn, t.name, t.settings); err != nil {
			return fmt.Errorf("devstack: indexes of %s.%s: %w", db, t.coll, err)
		}
		x.done[db+"."+t.coll] = true
	}
	return nil
}

// useIDIndex makes table's unique _id index one that FerretDB's lookups
// use, and drops the plain one earlier versions added beside it. A table
// whose _id index FerretDB has not created yet gets the plain index, so
// lookups are indexed anyway; the next ensure finds it again.
func useIDIndex(ctx context.Context, conn *sql.DB, table string) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	unique, plain := table+"__id_", table+"_pizzashop_id"
	var def string
	err = tx.QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?`, unique).Scan(&def)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = tx.ExecContext(ctx, fmt.Sprintf("CREATE INDEX IF NOT EXISTS %q ON %q (%s)", plain, table, idIndexExpr))
		if err != nil {
			return err
		}
		return tx.Commit()
	case err != nil:
		return err
	}
	if !strings.Contains(def, idIndexExpr) {
		for _, q := range []string{
			fmt.Sprintf("DROP INDEX %q", unique),
			fmt.Sprintf("CREATE UNIQUE INDEX %q ON %q (%s)", unique, table, idIndexExpr),
		} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("DROP INDEX IF EXISTS %q", plain)); err != nil {
		return err
	}
	return tx.Commit()
}

// forget drops what is known of db (all of it when coll is "", of every
// database when db is "" too), after the
// collection or database was dropped or renamed: a new one of the same
// name needs its index again.
func (x *idIndexer) forget(db, coll string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for k := range x.done {
		if db == "" || coll == "" && strings.HasPrefix(k, db+".") || k == db+"."+coll {
			delete(x.done, k)
		}
	}
	if coll == "" {
		// The file may be gone; open it afresh next time.
		x.files.close(db)
	}
}

// open returns a connection pool to db's file, or nil when it does not
// exist yet. Call with x.mu held.
func (x *idIndexer) open(db string) (*sql.DB, error) {
	if _, err := os.Stat(x.files.path(db)); err != nil {
		return nil, nil
	}
	return x.files.open(db)
}

// ferretIndex is an index as FerretDB's metadata lists it.
type ferretIndex struct {
	Name string `json:"name"`
	Key  []struct {
		Field      string `json:"field"`
		Descending bool   `json:"descending"`
	} `json:"key"`
	Unique bool `json:"unique"`
}

// useFieldIndexes rebuilds each plain (not unique) index FerretDB made for
// table on the expressions indexedFind queries with: each field's value as
// SQLite reads it out of the JSON (fieldExpr), which orders numbers and
// dates by value and strings by their bytes, as MongoDB does. FerretDB
// builds them on the field's JSON text and never queries them, so the
// rebuilt index changes what SQLite can search, nothing FerretDB sees.
// Unique indexes keep FerretDB's expression, whose notion of equal values
// is the one they enforce. settings is FerretDB's metadata of the table.
func useFieldIndexes(ctx context.Context, conn *sql.DB, table, settings string) error {
	var meta struct {
		Indexes []ferretIndex `json:"indexes"`
	}
	if err := json.Unmarshal([]byte(settings), &meta); err != nil {
		return fmt.Errorf("read indexes: %w", err)
	}
	for _, ix := range meta.Indexes {
		want, ok := fieldIndexSQL(table, ix)
		if !ok {
			continue
		}
		name := table + "_" + ix.Name
		var def string
		err := conn.QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?`, name).Scan(&def)
		if errors.Is(err, sql.ErrNoRows) || err == nil && def == want {
			continue // not made yet (FerretDB makes it next), or done
		}
		if err != nil {
			return err
		}
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, fmt.Sprintf("DROP INDEX %q", name))
		if err == nil {
			_, err = tx.ExecContext(ctx, want)
		}
		if err == nil {
			err = tx.Commit()
		}
		_ = tx.Rollback()
		if err != nil {
			return fmt.Errorf("rebuild index %s: %w", ix.Name, err)
		}
	}
	return nil
}

// fieldIndexSQL is the statement that makes index ix of table on
// fieldExpr; false for an index left as FerretDB made it: the _id index,
// a unique one, or one on a field whose name is not a plain key.
func fieldIndexSQL(table string, ix ferretIndex) (string, bool) {
	if ix.Unique || ix.Name == "_id_" || len(ix.Key) == 0 {
		return "", false
	}
	cols := make([]string, len(ix.Key))
	for i, k := range ix.Key {
		path := strings.Split(k.Field, ".")
		for _, p := range path {
			if !plainKey(p) {
				return "", false
			}
		}
		cols[i] = fieldExpr(path...)
		if k.Descending {
			cols[i] += " DESC"
		}
	}
	return fmt.Sprintf("CREATE INDEX %q ON %q (%s)", table+"_"+ix.Name, table, strings.Join(cols, ", ")), true
}

// fieldExpr is the value at path (field names, outermost first) of
// FerretDB's JSON as SQLite reads it out: an integer for an int, long,
// date or bool, a real for a double, the text of a string or of an
// ObjectId's hex digits, and SQL NULL for null or a missing field.
func fieldExpr(path ...string) string {
	return `_ferretdb_sjson->>'$."` + strings.Join(path, `"."`) + `"'`
}

// typeExpr is the type FerretDB's schema gives the top-level field f.
func typeExpr(f string) string {
	return `_ferretdb_sjson->>'$."$s".p."` + f + `".t'`
}

// lookupPlans explains FerretDB's lookup by _id for every collection of db.
func (x *idIndexer) lookupPlans(ctx context.Context, db string) (map[string]string, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	conn, err := x.open(db)
	if conn == nil || err != nil {
		return nil, err
	}
	rows, err := conn.QueryContext(ctx, fmt.Sprintf("SELECT name, table_name FROM %q", metadataTable))
	if err != nil {
		return nil, err
	}
	tables := map[string]string{}
	for rows.Next() {
		var coll, table string
		if err := rows.Scan(&coll, &table); err != nil {
			rows.Close()
			return nil, err
		}
		tables[coll] = table
	}
	rows.Close()
	plans := map[string]string{}
	for coll, table := range tables {
		steps, err := queryPlan(ctx, conn, fmt.Sprintf("SELECT _ferretdb_sjson FROM %q WHERE %s = ?", table, idIndexExpr), `"x"`)
		if err != nil {
			return nil, err
		}
		plans[coll] = strings.Join(steps, "; ")
	}
	return plans, nil
}

// queryPlan returns the steps of SQLite's plan for query (EXPLAIN QUERY
// PLAN's details). EXPLAIN does not check that the connection's copy of
// the schema is current, so an index made or dropped since through another
// connection would go unseen; a read of the schema table first brings the
// copy up to date, on the same connection.
func queryPlan(ctx context.Context, conn *sql.DB, query string, args ...any) ([]string, error) {
	c, err := conn.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var n int
	if err := c.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(&n); err != nil {
		return nil, err
	}
	rows, err := c.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var steps []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			return nil, err
		}
		steps = append(steps, detail)
	}
	return steps, rows.Err()
}

func (x *idIndexer) close() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.files.close("")
}
