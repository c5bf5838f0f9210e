package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// The data directory holds the store's SQLite files and the NATS streams,
// which the credentials guard only over the network: other users of the
// machine must not read them from the disk, in a new directory as in one an
// older version left open.
func TestDataDirIsPrivate(t *testing.T) {
	for _, existing := range []bool{false, true} {
		data := filepath.Join(t.TempDir(), "data")
		if existing {
			if err := os.MkdirAll(filepath.Join(data, "logs"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(data, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // start and stop at once: only the directory matters here
		_ = runDevstack(ctx, []string{"--data", data, "--nats-addr", "127.0.0.1:0", "--mongo-addr", "127.0.0.1:0"}, io.Discard, io.Discard)
		fi, err := os.Stat(data)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("data directory (existing before: %v) has mode %o, want no access for group and others", existing, perm)
		}
	}
}
