package devstack

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/crypto/bcrypt"
)

// CredentialsFile is the name of the file, in a stack's data directory,
// that holds the credentials of its NATS server and store.
const CredentialsFile = "credentials.json"

// Credentials are the user names and passwords the embedded NATS server and
// store require of every client. They are generated once per data directory
// and kept in it (CredentialsFile, mode 0600), so the shop's processes and
// tools on this machine find them and nobody else on loopback gets in.
type Credentials struct {
	NATSUser      string `json:"nats_user"`
	NATSPassword  string `json:"nats_password"`
	MongoUser     string `json:"mongo_user"`
	MongoPassword string `json:"mongo_password"`
}

// Default user names; the passwords are what keeps others out.
const (
	natsUser  = "pizzashop"
	mongoUser = "pizzashop"
)

// LoadOrCreateCredentials returns the credentials kept in dir, creating
// dir and the file with fresh random passwords the first time. A file
// readable by others is narrowed to its owner; a malformed or incomplete
// one is an error naming it, never silently replaced (services started
// with it would be locked out).
func LoadOrCreateCredentials(dir string) (Credentials, error) {
	path := filepath.Join(dir, CredentialsFile)
	c, err := readCredentials(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return c, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Credentials{}, fmt.Errorf("devstack: credentials: %w", err)
	}
	c = Credentials{NATSUser: natsUser, NATSPassword: randomSecret(), MongoUser: mongoUser, MongoPassword: randomSecret()}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return Credentials{}, fmt.Errorf("devstack: credentials: %w", err)
	}
	// O_EXCL: of two processes starting on one fresh directory, the second
	// reads what the first wrote instead of replacing it.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return readCredentials(path)
	}
	if err != nil {
		return Credentials{}, fmt.Errorf("devstack: credentials: %w", err)
	}
	_, err = f.Write(append(data, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return Credentials{}, fmt.Errorf("devstack: credentials: write %s: %w", path, err)
	}
	return c, nil
}

// NATSURL is the client URL of a NATS server at hostport with the NATS
// user and password in it, as nats.go and the NATS CLI take them.
func (c Credentials) NATSURL(hostport string) string {
	return (&url.URL{Scheme: "nats", User: url.UserPassword(c.NATSUser, c.NATSPassword), Host: hostport}).String()
}

// MongoURI is the connection string of a store at hostport with the store
// user and password in it. The user is valid in every database, so the
// URI needs no authSource.
func (c Credentials) MongoURI(hostport string) string {
	return (&url.URL{Scheme: "mongodb", User: url.UserPassword(c.MongoUser, c.MongoPassword), Host: hostport, Path: "/"}).String()
}

// configureNATS makes a NATS server require the NATS user; a nil c leaves
// it open. The server keeps only a bcrypt hash of the password (and does
// not warn of a plain one). The lowest cost is enough: the password is
// random, and every client connection pays it.
func (c *Credentials) configureNATS(opts *server.Options) {
	if c == nil {
		return
	}
	opts.Username = c.NATSUser
	opts.Password = c.NATSPassword
	if h, err := bcrypt.GenerateFromPassword([]byte(c.NATSPassword), bcrypt.MinCost); err == nil {
		opts.Password = string(h)
	}
}

// LoadCredentials returns the credentials kept in dir by a stack started
// there, for tools that talk to it; an error wrapping fs.ErrNotExist when
// none has been.
func LoadCredentials(dir string) (Credentials, error) {
	c, err := readCredentials(filepath.Join(dir, CredentialsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Credentials{}, fmt.Errorf("devstack: no credentials in %s: %w", dir, err)
	}
	return c, err
}

func readCredentials(path string) (Credentials, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Credentials{}, err
		}
		return Credentials{}, fmt.Errorf("devstack: credentials: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return Credentials{}, fmt.Errorf("devstack: credentials: %s is readable by others and cannot be narrowed: %w", path, err)
		}
	}
	var c Credentials
	if err := json.Unmarshal(data, &c); err != nil {
		return Credentials{}, fmt.Errorf("devstack: credentials: %s is not valid JSON (%v); remove it to generate new ones", path, err)
	}
	if err := c.validate(); err != nil {
		return Credentials{}, fmt.Errorf("devstack: credentials: %s: %w; remove it to generate new ones", path, err)
	}
	return c, nil
}

// validate checks that every field is set and safe to put in a URL and a
// SCRAM message unescaped.
func (c Credentials) validate() error {
	for _, f := range []struct{ name, value string }{
		{"nats_user", c.NATSUser}, {"nats_password", c.NATSPassword},
		{"mongo_user", c.MongoUser}, {"mongo_password", c.MongoPassword},
	} {
		if f.value == "" {
			return fmt.Errorf("%s is empty", f.name)
		}
		for _, r := range f.value {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
				// The value itself is not repeated: it may be a secret.
				return fmt.Errorf("%s may hold only letters, digits, '-', '_' and '.'", f.name)
			}
		}
	}
	return nil
}

// randomSecret is 32 random letters (182 bits). No digits: a long run of
// them could pass for a card number in the scans of the data directory.
func randomSecret() string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	out := make([]byte, 0, 32)
	buf := make([]byte, 64)
	for len(out) < cap(out) {
		_, _ = rand.Read(buf) // never fails (crypto/rand documents it)
		for _, c := range buf {
			// 208 = 4 x 52: the bytes above would favour the first letters.
			if c < 208 && len(out) < cap(out) {
				out = append(out, letters[c%52])
			}
		}
	}
	return string(out)
}

// PrivateDir creates dir, and any missing parent, for its owner only, and
// closes it to group and others if it exists open. The store's SQLite files
// and the NATS streams live in such directories: the credentials guard them
// over the network, and other users of the machine must not read them from
// the disk either. Only directories the shop owns are given to it; a data
// directory a user chose (it may be their home) keeps its mode.
func PrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		if err := os.Chmod(dir, perm&^0o077); err != nil {
			return fmt.Errorf("%s is open to other users and cannot be closed: %w", dir, err)
		}
	}
	return nil
}
