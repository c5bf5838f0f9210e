package devstack

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreateCredentials(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	c, err := LoadOrCreateCredentials(dir)
	if err != nil {
		t.Fatalf("first LoadOrCreateCredentials: %v", err)
	}
	if err := c.validate(); err != nil {
		t.Fatalf("generated credentials: %v", err)
	}
	if len(c.NATSPassword) < 32 || len(c.MongoPassword) < 32 || c.NATSPassword == c.MongoPassword {
		t.Errorf("passwords %d and %d characters, equal %v: want two different ones of 32 or more", len(c.NATSPassword), len(c.MongoPassword), c.NATSPassword == c.MongoPassword)
	}
	if strings.ContainsAny(c.NATSPassword+c.MongoPassword, "0123456789") {
		t.Errorf("a generated password holds digits, which the card scans of the data directory could take for a card number")
	}
	path := filepath.Join(dir, CredentialsFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("%s has mode %o, want 600", path, perm)
	}
	again, err := LoadOrCreateCredentials(dir)
	if err != nil {
		t.Fatalf("second LoadOrCreateCredentials: %v", err)
	}
	if again != c {
		t.Errorf("second start got other credentials than the first")
	}

	// A file others can read is narrowed, and keeps its credentials.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if again, err := LoadOrCreateCredentials(dir); err != nil || again != c {
		t.Fatalf("LoadOrCreateCredentials of a 0644 file = equal %v, %v; want the same credentials", again == c, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("after loading, %s has mode %o, want 600", path, fi.Mode().Perm())
	}
}

func TestLoadOrCreateCredentialsRefusesBadFile(t *testing.T) {
	for name, content := range map[string]string{
		"not JSON":        "nats_user=x",
		"empty password":  `{"nats_user":"a","nats_password":"","mongo_user":"b","mongo_password":"c"}`,
		"URL characters":  `{"nats_user":"a","nats_password":"p@ss:w/rd","mongo_user":"b","mongo_password":"c"}`,
		"missing a field": `{"nats_user":"a","nats_password":"b","mongo_user":"c"}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, CredentialsFile)
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadOrCreateCredentials(dir)
			if err == nil || !strings.Contains(err.Error(), path) {
				t.Fatalf("LoadOrCreateCredentials = %v, want an error naming %s", err, path)
			}
			if strings.Contains(err.Error(), "p@ss") {
				t.Errorf("error %q repeats the password", err)
			}
			if got, _ := os.ReadFile(path); string(got) != content {
				t.Errorf("the bad file was changed to %q", got)
			}
		})
	}
}
