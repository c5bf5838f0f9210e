package devstack

import (
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
)

// sqliteFiles keeps one connection pool per database file of FerretDB's
// data directory, each opened with the same options, until its database is
// dropped. The owner holds its own lock around every call.
type sqliteFiles struct {
	dir   string
	query string // the file URI's options
	conns int    // most connections open, and idle, per file
	dbs   map[string]*sql.DB
}

func newSQLiteFiles(dir, query string, conns int) *sqliteFiles {
	return &sqliteFiles{dir: dir, query: query, conns: conns, dbs: map[string]*sql.DB{}}
}

// path is db's file.
func (f *sqliteFiles) path(db string) string { return filepath.Join(f.dir, db+".sqlite") }

// open returns db's pool, opening it on first use.
func (f *sqliteFiles) open(db string) (*sql.DB, error) {
	if c := f.dbs[db]; c != nil {
		return c, nil
	}
	u := &url.URL{Scheme: "file", Path: f.path(db), OmitHost: true, RawQuery: f.query}
	c, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, fmt.Errorf("devstack: open %s: %w", f.path(db), err)
	}
	c.SetMaxOpenConns(f.conns)
	c.SetMaxIdleConns(f.conns)
	f.dbs[db] = c
	return c, nil
}

// close closes db's pool, or every pool when db is "". A pool on a
// dropped database's file would go on reading the deleted file, so the next
// open starts afresh.
func (f *sqliteFiles) close(db string) {
	for name, c := range f.dbs {
		if db == "" || name == db {
			_ = c.Close()
			delete(f.dbs, name)
		}
	}
}
