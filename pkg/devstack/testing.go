package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/mongox"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// The helpers below are what every integration test in the repository
// starts from. With NATS_URL or MONGO_URI set they hand out those servers
// instead, so the same tests run against real NATS and MongoDB.

var discard = slog.New(slog.DiscardHandler)

// NATS returns the URL of a NATS server with JetStream for t: NATS_URL when
// set, otherwise a fresh embedded server private to t, storing in
// t.TempDir() and stopped when t ends. Against a shared NATS_URL server,
// tests must use stream names of their own.
func NATS(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("NATS_URL"); u != "" {
		return u
	}
	ns, err := startNATS(filepath.Join(t.TempDir(), "nats"), "127.0.0.1:0", discard)
	if err != nil {
		t.Fatalf("devstack.NATS: %v", err)
	}
	t.Cleanup(func() { stopNATS(ns) })
	return ns.ClientURL()
}

// FreeAddr returns a loopback address nothing listens on now, for a server
// t starts itself.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := freeLoopback()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// shared is the one embedded FerretDB of a test binary. It starts on first
// use and lives as long as the process: a FerretDB start costs far more than
// a fresh database, which is what each test gets instead.
var shared struct {
	once sync.Once
	uri  string
	dir  string
	err  error
}

// sharedDirPrefix names the shared store's temporary directory; the pid in
// it lets a later test binary remove what a finished one left behind.
const sharedDirPrefix = "pizzashop-ferretdb-"

// Mongo returns a MongoDB URI for t: MONGO_URI when set, otherwise the
// embedded FerretDB shared by the whole test binary. Tests take a database of
// their own with Database or MongoDatabase.
func Mongo(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("MONGO_URI"); u != "" {
		return u
	}
	shared.once.Do(func() { shared.uri, shared.dir, shared.err = startShared() })
	if shared.err != nil {
		t.Fatalf("devstack.Mongo: %v", shared.err)
	}
	return shared.uri
}

func startShared() (uri, dir string, err error) {
	removeStaleDirs(sharedDirPrefix)
	dir, err = os.MkdirTemp("", sharedDirPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", "", fmt.Errorf("devstack: %w", err)
	}
	f, err := startFerretDB(dir, "127.0.0.1:0", discard)
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", "", err
	}
	return f.uri, dir, nil
}

// LookupPlans returns, for every collection of database db in the shared
// embedded store, how SQLite carries out FerretDB's lookup of one document
// by _id: "SEARCH ... USING INDEX ..." when it walks an index, "SCAN ..."
// when it reads the whole table. Stores call it in their tests to prove that
// none of their collections is scanned to find a document by key. With
// MONGO_URI set it returns nil: MongoDB always looks _id up in its index.
func LookupPlans(t testing.TB, db string) map[string]string {
	t.Helper()
	if os.Getenv("MONGO_URI") != "" {
		return nil
	}
	Mongo(t)
	x := newIDIndexer(shared.dir)
	defer x.close()
	plans, err := x.lookupPlans(context.Background(), db)
	if err != nil {
		t.Fatalf("devstack.LookupPlans(%s): %v", db, err)
	}
	return plans
}

// removeStaleDirs deletes the temporary directories named prefix<pid>-...
// of processes that are no longer running: the shared stores of finished
// test binaries, the sockets of stores whose process was killed. A running
// test binary cannot remove its own: it has no hook at exit, and the store
// is in use until then.
func removeStaleDirs(prefix string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*-*"))
	for _, dir := range dirs {
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), prefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if !processAlive(pid) {
			_ = os.RemoveAll(dir)
		}
	}
}

// processAlive errs on the side of true: only a process known to be gone
// lets its directory be removed.
func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false // Windows: no such process
	}
	err = p.Signal(syscall.Signal(0))
	return !errors.Is(err, os.ErrProcessDone)
}

// maxDatabaseName is the longest database name both MongoDB and FerretDB
// accept.
const maxDatabaseName = 63

// Database returns a database name unique to this run of t: its name made of
// [a-z0-9_] and a random suffix, at most 63 characters. The caller drops the
// database; MongoDatabase does it for you.
func Database(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	for _, r := range strings.ToLower(t.Name()) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "_"):
			b.WriteByte('_')
		}
	}
	suffix := fmt.Sprintf("_%08x", rand.Uint32())
	name := strings.TrimSuffix(b.String(), "_")
	if len(name) > maxDatabaseName-len(suffix) {
		name = strings.TrimSuffix(name[:maxDatabaseName-len(suffix)], "_")
	}
	if name == "" {
		name = "test"
	}
	return name + suffix
}

// MongoDatabase connects to Mongo(t) and returns the client and a fresh
// database of t's own. When t ends the database is dropped and the client
// disconnected.
func MongoDatabase(t testing.TB) (*mongo.Client, *mongo.Database) {
	t.Helper()
	c, err := mongox.Connect(Mongo(t), 16)
	if err != nil {
		t.Fatalf("devstack.MongoDatabase: %v", err)
	}
	db := c.Database(Database(t))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := db.Drop(ctx); err != nil {
			t.Errorf("drop test database %s: %v", db.Name(), err)
		}
		if err := c.Disconnect(ctx); err != nil {
			t.Errorf("disconnect from test store: %v", err)
		}
	})
	return c, db
}
