// Package devstack runs the shop's infrastructure inside one process for
// development and tests: an embedded NATS server with JetStream and an
// embedded FerretDB (the MongoDB wire protocol over SQLite). `make run` and
// every integration test use it, so nothing but Go is needed on the machine.
//
// FerretDB is heavy (minutes to build cold, tens of MB): only the launcher
// and test binaries import this package, never a service binary.
//
// What FerretDB v1.24 (SQLite) lacks, so the services design around it:
// multi-document transactions, change streams and TTL indexes. It also
// drops the connection (a recovered panic) when one createIndexes command
// names two or more indexes that already exist, as on every restart; create
// indexes one per command.
//
// FerretDB starts its spans on the global OpenTelemetry tracer provider and
// its config has no option to pass another one. The default global provider
// is a no-op, so keep this package out of processes that install a real one
// (the launcher installs none), or accept FerretDB's spans in their traces.
package devstack

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/nats-io/nats-server/v2/server"
)

// Options configures Start.
type Options struct {
	// Dir holds all data: Dir/nats for JetStream, Dir/ferretdb for the
	// SQLite files. Data in Dir survives Close and a new Start.
	Dir string
	// NATSAddr and MongoAddr are host:port listen addresses; port 0 picks a
	// free port. Empty means 127.0.0.1:0.
	NATSAddr  string
	MongoAddr string
	// Logger receives both servers' logs; nil discards them.
	Logger *slog.Logger
	// Credentials, when not nil, are required of every client of NATS and
	// of the store (LoadOrCreateCredentials keeps them in the data
	// directory). NATSURL and MongoURI carry them. Nil lets anyone on the
	// address in, as tests do.
	Credentials *Credentials
}

// Stack is a running NATS server and FerretDB.
type Stack struct {
	store
	nats *server.Server
	// Where NATS listens, kept so that a restart comes back on the same
	// address, as a real server would.
	natsAddr string

	closeOnce sync.Once
}

// store is the FerretDB behind its proxy that Stack and Cluster share,
// with what it needs to start again.
type store struct {
	dir       string
	log       *slog.Logger
	creds     *Credentials
	ferret    *ferretDB
	mongoAddr string // where the proxy listens, kept for a restart
}

// prepare checks what Start and StartCluster share: the data directory
// (made absolute), the logger (discarding when nil) and the credentials.
func prepare(what, dir string, log *slog.Logger, creds *Credentials) (string, *slog.Logger, error) {
	if dir == "" {
		return "", nil, fmt.Errorf("devstack: %s.Dir is empty", what)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, fmt.Errorf("devstack: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if creds != nil {
		if err := creds.validate(); err != nil {
			return "", nil, fmt.Errorf("devstack: credentials: %w", err)
		}
	}
	return abs, log, nil
}

// readyTimeout bounds how long Start waits for NATS to accept clients;
// JetStream recovers its file store before that.
const readyTimeout = 30 * time.Second

// Start starts NATS with JetStream and FerretDB with data under opts.Dir. It
// returns once both accept connections. Close stops them.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	dir, log, err := prepare("Options", opts.Dir, opts.Logger, opts.Credentials)
	if err != nil {
		return nil, err
	}
	ns, err := startNATSWithCredentials(filepath.Join(dir, "nats"), or(opts.NATSAddr, "127.0.0.1:0"), opts.Credentials, log.With("component", "nats"))
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			stopNATS(ns)
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	st := store{dir: dir, log: log, creds: opts.Credentials}
	if err := st.start(or(opts.MongoAddr, "127.0.0.1:0")); err != nil {
		return nil, err
	}
	return &Stack{store: st, nats: ns, natsAddr: ns.Addr().String()}, nil
}

// start starts FerretDB behind its proxy on addr and keeps the address it
// got, for a restart.
func (s *store) start(addr string) error {
	fdb, err := startFerretDBWithCredentials(s.MongoDir(), addr, s.creds, s.log.With("component", "ferretdb"))
	if err != nil {
		return err
	}
	u, err := url.Parse(fdb.uri)
	if err != nil {
		fdb.stop()
		return fmt.Errorf("devstack: ferretdb uri: %w", err)
	}
	s.ferret, s.mongoAddr = fdb, u.Host
	return nil
}

// StopNATS stops the NATS server, as an outage would. For fault tests.
func (s *Stack) StopNATS() { stopNATS(s.nats) }

// StartNATS brings NATS back after StopNATS, on the same address and with
// the same data.
func (s *Stack) StartNATS() error {
	ns, err := startNATSWithCredentials(s.NATSDir(), s.natsAddr, s.creds, s.log.With("component", "nats"))
	if err != nil {
		return err
	}
	s.nats = ns
	return nil
}

// StopMongo stops FerretDB, as an outage of the store would. For fault
// tests.
func (s *store) StopMongo() { s.ferret.stop() }

// StartMongo brings FerretDB back after StopMongo, on the same address and
// with the same data.
func (s *store) StartMongo() error { return s.start(s.mongoAddr) }

// StoreCommands counts, since Start, the statements FerretDB carried out
// for clients, by command, collection and how each found its documents. The
// launcher serves them as pizzashop_devstore_statements_total.
func (s *store) StoreCommands() []StoreCommand { return s.ferret.proxy.commands.snapshot() }

// StoreRequests counts, since Start, the requests clients sent the store
// by command and collection: its round trips. A bulk write is one request
// of many statements. The launcher serves them as
// pizzashop_devstore_requests_total.
func (s *store) StoreRequests() []StoreRequest { return s.ferret.proxy.commands.requests() }

// NATSURL is the client URL of the NATS server, such as
// nats://127.0.0.1:4222, with the user and password of Options.Credentials
// in it when they are set. Print it with its password masked.
func (s *Stack) NATSURL() string {
	if s.creds == nil {
		return s.nats.ClientURL()
	}
	return s.creds.NATSURL(s.natsAddr)
}

// MongoURI is the MongoDB connection string of FerretDB, such as
// mongodb://127.0.0.1:27017/, with the user and password of
// Options.Credentials in it when they are set.
func (s *store) MongoURI() string {
	if s.creds == nil {
		return s.ferret.uri
	}
	return s.creds.MongoURI(s.mongoAddr)
}

// NATSDir is where JetStream keeps its streams.
func (s *Stack) NATSDir() string { return filepath.Join(s.dir, "nats") }

// MongoDir is where FerretDB keeps one SQLite file per database.
func (s *store) MongoDir() string { return filepath.Join(s.dir, "ferretdb") }

// Close stops FerretDB, then NATS, and waits until both have released their
// files. FerretDB gives clients still connected up to 3 s to go away. Close
// may be called more than once.
func (s *Stack) Close() {
	s.closeOnce.Do(func() {
		s.ferret.stop()
		stopNATS(s.nats)
	})
}

// startNATS starts a JetStream server storing under dir that lets any
// client in.
func startNATS(dir, addr string, log *slog.Logger) (*server.Server, error) {
	return startNATSWithCredentials(dir, addr, nil, log)
}

// startNATSWithCredentials starts a JetStream server storing under dir,
// requiring the NATS user of creds unless creds is nil. Every message is
// written to its file before JetStream acknowledges it (a stream of one
// replica flushes in place), so a crash of any process, the launcher's
// kill -9 included, loses no acknowledged message. It is not synced to the
// disk each time: only a power loss can take the last messages, the same
// trade the store makes (synchronous=NORMAL) and MongoDB's default journal
// makes. An fsync per message capped every stream at a few hundred events a
// second on this machine's disk, and with it the whole shop.
func startNATSWithCredentials(dir, addr string, creds *Credentials, log *slog.Logger) (*server.Server, error) {
	host, port, err := splitAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("devstack: nats address: %w", err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	} else if err := checkFree(addr); err != nil {
		// NATS would only log this and never become ready.
		return nil, fmt.Errorf("devstack: nats: %w", err)
	}
	if err := PrivateDir(dir); err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	opts := &server.Options{
		ServerName: "pizzashop-dev",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
	}
	creds.configureNATS(opts)
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("devstack: nats: %w", err)
	}
	ns.SetLoggerV2(natsLogger{log}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(readyTimeout) {
		stopNATS(ns)
		return nil, fmt.Errorf("devstack: nats did not accept connections on %s within %s (port in use?)", addr, readyTimeout)
	}
	return ns, nil
}

func stopNATS(ns *server.Server) {
	ns.Shutdown()
	ns.WaitForShutdown()
}

type ferretDB struct {
	uri    string
	cancel context.CancelFunc
	done   chan struct{}
	proxy  *writeSerializer
	// sockDir holds FerretDB's socket; removed when it stops.
	sockDir string

	stopOnce sync.Once
}

// startFerretDB starts FerretDB with its SQLite handler keeping one file per
// database under dir, open to any client.
func startFerretDB(dir, addr string, log *slog.Logger) (*ferretDB, error) {
	return startFerretDBWithCredentials(dir, addr, nil, log)
}

// startFerretDBWithCredentials is startFerretDB whose proxy requires the
// store user of creds unless creds is nil.
func startFerretDBWithCredentials(dir, addr string, creds *Credentials, log *slog.Logger) (*ferretDB, error) {
	if _, _, err := splitAddr(addr); err != nil {
		return nil, fmt.Errorf("devstack: mongo address: %w", err)
	}
	if err := PrivateDir(dir); err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	// WAL with synchronous=NORMAL: a commit is safe from a crash of any
	// process (the launcher's kill -9 included) without an fsync each; only a
	// power loss can take the last commits. That is the dev stack's trade:
	// every write of the shop goes through one writer, and an fsync per
	// write caps the whole shop at a few hundred writes a second.
	//
	// temp_store=MEMORY also keeps each statement's undo journal in small
	// pieces of memory. FerretDB updates inside a transaction, so every
	// update keeps one; by default SQLite gives it one 64 KB buffer, which
	// the SQLite build FerretDB uses maps and unmaps from the kernel for
	// every statement (about 5 % of the stack's CPU in a lifecycle run).
	sqliteURL := &url.URL{Scheme: "file", Path: dir + "/", OmitHost: true,
		RawQuery: "_pragma=synchronous(NORMAL)&_pragma=temp_store(MEMORY)"}
	// The write serializer takes the public address. FerretDB itself
	// listens where only this process reaches it, a Unix socket in a
	// directory of its own (mode 0700), so nobody on the machine gets past
	// the serializer's credential check by finding FerretDB's port.
	proxy, err := listenSerializer(addr)
	if err != nil {
		return nil, err
	}
	if creds != nil {
		proxy.auth = newSCRAMServer(creds.MongoUser, creds.MongoPassword)
	}
	removeStaleDirs(socketDirPrefix)
	sockDir, err := os.MkdirTemp("", socketDirPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		proxy.close()
		return nil, fmt.Errorf("devstack: %w", err)
	}
	sock := filepath.Join(sockDir, "ferretdb.sock")
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{Unix: sock},
		Handler:   "sqlite",
		SQLiteURL: sqliteURL.String(),
		Logger:    slog.New(quietResponses{Handler: log.Handler()}),
	})
	if err != nil {
		proxy.close()
		_ = os.RemoveAll(sockDir)
		return nil, fmt.Errorf("devstack: ferretdb on %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	fdb := &ferretDB{cancel: cancel, done: make(chan struct{}), proxy: proxy, sockDir: sockDir}
	go func() {
		defer close(fdb.done)
		_ = f.Run(ctx) // always nil; it stops when ctx ends
	}()
	// The listener is open once New returns, so this does not block.
	proxy.ids = newIDIndexer(dir)
	if err := proxy.ids.indexAll(context.Background()); err != nil {
		fdb.stop()
		return nil, err
	}
	proxy.fields = newFieldReader(dir)
	proxy.finder = &indexedFinder{fields: proxy.fields, plans: map[string]bool{}}
	proxy.memory = newGuardMemory()
	proxy.start("unix", sock)
	fdb.uri = (&url.URL{Scheme: "mongodb", Host: proxy.addr(), Path: "/"}).String()
	return fdb, nil
}

// socketDirPrefix names the temporary directories of FerretDB's sockets;
// the pid in it lets a later start remove those of a killed process.
const socketDirPrefix = "pizzashop-store-"

func (f *ferretDB) stop() {
	f.stopOnce.Do(func() {
		f.proxy.close()
		f.cancel()
		<-f.done
		_ = os.RemoveAll(f.sockDir)
	})
}

// quietResponses demotes to debug the warnings FerretDB logs for every error
// it answers a client with: a duplicate key, or a command it does not have,
// such as the endSessions every driver sends when it disconnects. They are
// the client's business and each takes a dozen lines. Its other warnings,
// about the store itself, stay warnings.
//
// It also defers the attributes FerretDB adds to its logger for every SQL
// statement until a record is written: a JSON handler encodes them at once,
// which cost 3% of the launcher's CPU under load for records that, below
// warning level, are never written.
type quietResponses struct {
	slog.Handler
	ops []logOp // WithAttrs and WithGroup calls not yet applied, in order
}

// logOp is a deferred WithAttrs (attrs) or WithGroup (group).
type logOp struct {
	attrs []slog.Attr
	group string
}

func (h quietResponses) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn && (strings.HasPrefix(r.Message, "Response header:") || strings.HasPrefix(r.Message, "Response message:")) {
		if !h.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	out := h.Handler
	for _, op := range h.ops {
		if op.group != "" {
			out = out.WithGroup(op.group)
		} else {
			out = out.WithAttrs(op.attrs)
		}
	}
	return out.Handle(ctx, r)
}

func (h quietResponses) with(op logOp) slog.Handler {
	return quietResponses{h.Handler, append(slices.Clip(h.ops), op)}
}

func (h quietResponses) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	return h.with(logOp{attrs: as})
}

func (h quietResponses) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.with(logOp{group: name})
}

func splitAddr(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	return host, port, nil
}

// checkFree reports an error when nothing can listen on addr, typically
// because another process already does.
func checkFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// natsLogger sends the NATS server's log into slog. Fatalf logs at error
// level instead of exiting: the server shuts itself down after it.
type natsLogger struct{ log *slog.Logger }

func (l natsLogger) Noticef(format string, v ...any) { l.log.Info(fmt.Sprintf(format, v...)) }
func (l natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
