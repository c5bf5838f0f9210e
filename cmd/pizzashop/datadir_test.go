package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The data directory holds the store's SQLite files and the NATS streams,
// which the credentials guard only over the network: other users of the
// machine must not read them from the disk. A new data directory is its
// owner's only. One that existed open (an older version's, or one the user
// chose for more than the shop) keeps its mode, and what lies in it is
// closed instead: the store's and NATS's directories, the logs, and the
// credentials file.
func TestDataDirIsPrivate(t *testing.T) {
	for _, existing := range []bool{false, true} {
		data := filepath.Join(t.TempDir(), "data")
		if existing {
			for _, d := range []string{"logs", "ferretdb", "nats"} {
				if err := os.MkdirAll(filepath.Join(data, d), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(filepath.Join(data, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(data, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		started := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- runDevstack(ctx, []string{"--data", data, "--nats-addr", "127.0.0.1:0", "--mongo-addr", "127.0.0.1:0"}, writerFunc(func(p []byte) (int, error) {
				select {
				case <-started:
				default:
					close(started)
				}
				return len(p), nil
			}), io.Discard)
		}()
		select {
		case <-started: // it printed where it listens: the store and NATS are up
		case err := <-done:
			t.Fatalf("devstack ended before it started: %v", err)
		case <-ctx.Done():
			t.Fatal("devstack did not start")
		}
		cancel()
		<-done

		fi, err := os.Stat(data)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o700)
		if existing {
			want = 0o755
		}
		if perm := fi.Mode().Perm(); perm != want {
			t.Errorf("data directory (existing before: %v) has mode %o, want %o", existing, perm, want)
		}
		for _, d := range []string{"logs", "ferretdb", "nats"} {
			fi, err := os.Stat(filepath.Join(data, d))
			if err != nil {
				t.Errorf("%s: %v", d, err)
				continue
			}
			if perm := fi.Mode().Perm(); perm&0o077 != 0 {
				t.Errorf("%s (existing before: %v) has mode %o, want no access for group and others", d, existing, perm)
			}
		}
		fi, err = os.Stat(filepath.Join(data, "credentials.json"))
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("credentials.json has mode %o, want 600", perm)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
