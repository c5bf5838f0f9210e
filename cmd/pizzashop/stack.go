package main

import (
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/logging"
)

// Default listen addresses of the embedded servers: the usual NATS and
// MongoDB ports, so tools like `nats` and `mongosh` work without flags.
const (
	defaultNATSAddr  = "127.0.0.1:4222"
	defaultMongoAddr = "127.0.0.1:27017"
	defaultData      = "./data"
)

// stackFlags are the flags shared by run and devstack.
type stackFlags struct {
	data      string
	natsAddr  string
	mongoAddr string
}

func (f *stackFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.data, "data", envOr("PIZZASHOP_DATA", defaultData), "data directory: NATS, FerretDB and logs (env PIZZASHOP_DATA)")
	fs.StringVar(&f.natsAddr, "nats-addr", envOr("PIZZASHOP_NATS_ADDR", defaultNATSAddr), "listen address of the embedded NATS (env PIZZASHOP_NATS_ADDR)")
	fs.StringVar(&f.mongoAddr, "mongo-addr", envOr("PIZZASHOP_MONGO_ADDR", defaultMongoAddr), "listen address of the embedded FerretDB (env PIZZASHOP_MONGO_ADDR)")
}

// startStack starts the embedded NATS and FerretDB under f.data, their logs
// going to the "devstack" sink. Both require the credentials kept in f.data
// (generated at the first start); the stack's URLs carry them.
func startStack(ctx context.Context, f stackFlags, sink *logSink) (*devstack.Stack, time.Duration, error) {
	begin := time.Now()
	creds, err := devstack.LoadOrCreateCredentials(f.data)
	if err != nil {
		return nil, 0, err
	}
	st, err := devstack.Start(ctx, devstack.Options{
		Dir:         f.data,
		NATSAddr:    f.natsAddr,
		MongoAddr:   f.mongoAddr,
		Logger:      logging.New(sink, "devstack", os.Getenv("LOG_LEVEL")),
		Credentials: &creds,
	})
	if err != nil {
		return nil, 0, err
	}
	return st, time.Since(begin), nil
}

// runDevstack serves only NATS and FerretDB, for running services by hand
// or from an IDE.
func runDevstack(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("devstack", "pizzashop devstack [--data DIR] [--nats-addr ADDR] [--mongo-addr ADDR]", stderr)
	var f stackFlags
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	logDir, err := makeDataDir(f.data)
	if err != nil {
		return err
	}
	term := &syncWriter{w: stdout}
	sink, err := newLogSink(logDir, "devstack", len("devstack"), term)
	if err != nil {
		return err
	}
	defer sink.Close()
	st, took, err := startStack(ctx, f, sink)
	if err != nil {
		return err
	}
	term.Printf("NATS and FerretDB are up in %s.\n\n", took.Round(time.Millisecond))
	// The URLs carry the credentials of f.data: they are printed whole, to
	// be exported, on the terminal only, never into a log.
	term.Printf("  NATS_URL=%s    data %s\n", st.NATSURL(), filepath.Join(f.data, "nats"))
	term.Printf("  MONGO_URI=%s    data %s\n", st.MongoURI(), filepath.Join(f.data, "ferretdb"))
	term.Printf("  (user names and passwords from %s)\n", filepath.Join(f.data, devstack.CredentialsFile))
	term.Printf("  PIZZASHOP_DEMO=true    (a local demo: services may sign with the development key)\n")
	term.Printf("  logs %s\n\n", sink.path)
	term.Printf("Export these variables to run a service against them. Press Ctrl-C to stop.\n")
	<-ctx.Done()
	st.Close()
	term.Println("stopped")
	return nil
}

// makeDataDir creates the data directory (for its owner only, when new) and
// its logs directory, and returns the latter. An existing data directory
// keeps its mode: it may be one the user chose for more than the shop. What
// must stay private lives in directories of the shop's own (the store's
// files, the NATS streams, the logs), which are closed whatever their
// parent's mode, and credentials.json is its owner's only.
func makeDataDir(data string) (logDir string, err error) {
	if err := os.MkdirAll(data, 0o700); err != nil {
		return "", err
	}
	logDir = filepath.Join(data, "logs")
	if err := devstack.PrivateDir(logDir); err != nil {
		return "", err
	}
	return logDir, nil
}
