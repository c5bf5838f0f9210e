// Package config fills a configuration struct from environment variables.
//
// Each field names its variable and default in tags:
//
//	type Config struct {
//		GRPCAddr string        `env:"GRPC_ADDR" default:"127.0.0.1:9091"`
//		Secret   string        `env:"AUTH_SECRET" secret:"true"`
//		Timeout  time.Duration `env:"SHUTDOWN_TIMEOUT" default:"10s"`
//	}
//
// Defaults are chosen so that `make run` needs no environment at all.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Load fills the struct pointed to by dst from the environment, using each
// field's default when its variable is unset. Nested structs are walked.
func Load(dst any) error {
	return load(dst, os.LookupEnv)
}

// LoadFrom is Load with a custom lookup, for tests.
func LoadFrom(dst any, lookup func(string) (string, bool)) error {
	return load(dst, lookup)
}

func load(dst any, lookup func(string) (string, bool)) error {
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return errors.New("config: destination must be a pointer to a struct")
	}
	var errs []error
	walk(v.Elem(), func(f reflect.StructField, fv reflect.Value) {
		name := f.Tag.Get("env")
		raw, ok := lookup(name)
		if !ok || raw == "" {
			raw, ok = f.Tag.Lookup("default")
			if !ok {
				return
			}
		}
		if err := set(fv, raw); err != nil {
			errs = append(errs, fmt.Errorf("config: %s=%q: %w", name, raw, err))
		}
	})
	return errors.Join(errs...)
}

func walk(v reflect.Value, fn func(reflect.StructField, reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		f, fv := t.Field(i), v.Field(i)
		if !f.IsExported() {
			continue
		}
		if f.Tag.Get("env") == "" {
			if fv.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Time]() {
				walk(fv, fn)
			}
			continue
		}
		fn(f, fv)
	}
}

func set(v reflect.Value, raw string) error {
	switch v.Interface().(type) {
	case time.Duration:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
		return nil
	case []string:
		var out []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		v.Set(reflect.ValueOf(out))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, v.Type().Bits())
		if err != nil {
			return err
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(raw, 10, v.Type().Bits())
		if err != nil {
			return err
		}
		v.SetUint(n)
	case reflect.Float64:
		n, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return err
		}
		v.SetFloat(n)
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

// LogValue renders the configuration for a startup log line, with every
// field tagged secret:"true" masked, and credentials in URLs hidden.
func LogValue(cfg any) slog.Value {
	v := reflect.Indirect(reflect.ValueOf(cfg))
	var attrs []slog.Attr
	walk(v, func(f reflect.StructField, fv reflect.Value) {
		val := fmt.Sprint(fv.Interface())
		switch {
		case f.Tag.Get("secret") == "true":
			if val != "" {
				val = "***"
			}
		case strings.Contains(val, "://") && strings.Contains(val, "@"):
			val = RedactURL(val)
		}
		attrs = append(attrs, slog.String(f.Tag.Get("env"), val))
	})
	return slog.GroupValue(attrs...)
}

// RedactURL hides the passwords and tokens in a connection string before it
// is printed or logged. NATS_URL may list several servers, each a URL with
// its own user info, so each is redacted on its own; a MongoDB replica
// set's list of hosts after one user info stays readable, and so does a
// comma inside a password: only a comma that starts another URL
// ("scheme://") separates two of them.
func RedactURL(s string) string {
	parts := splitURLs(s)
	for i, p := range parts {
		parts[i] = redactOne(p)
	}
	return strings.Join(parts, ",")
}

// splitURLs splits a list of URLs at the commas that start another URL
// ("scheme://"), so a comma inside a password or between a MongoDB replica
// set's hosts splits nothing.
func splitURLs(s string) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == ',' && startsURL(s[i+1:]) {
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// startsURL reports whether s, after leading spaces, begins with a URL
// scheme and "://".
func startsURL(s string) bool {
	s = strings.TrimLeft(s, " ")
	scheme, _, ok := strings.Cut(s, "://")
	if !ok || scheme == "" {
		return false
	}
	for i, c := range scheme {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

func redactOne(s string) string {
	lead := s[:len(s)-len(strings.TrimLeft(s, " "))]
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		// Not a URL Go reads: drop anything that may be user info.
		scheme, rest, ok := strings.Cut(s, "://")
		if at := strings.LastIndex(rest, "@"); ok && at >= 0 {
			return scheme + "://xxxxx@" + rest[at+1:]
		}
		return s
	}
	if u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); !ok {
		// User info without a password is a NATS token: all of it is secret.
		u.User = url.User("xxxxx")
		return lead + u.String()
	}
	return lead + u.Redacted()
}

// DemoEnv names the variable that declares a deployment a local demo: only
// there may a service run with the public development key or a placeholder
// secret. `pizzashop run` sets it for the processes it starts.
const DemoEnv = "PIZZASHOP_DEMO"

// ErrUnsafeSecret is a secret that must not sign anything outside a local
// demo: unset, the public development key, or a placeholder left in a
// deploy file.
var ErrUnsafeSecret = errors.New("unsafe secret")

// placeholders are words that mark a secret nobody chose: the values deploy
// files ship with until someone replaces them.
var placeholders = []string{"replace-me", "replace_me", "replaceme", "changeme", "change-me", "change_me", "placeholder", "not-a-secret", "do-not-use"}

// Secret decides which key a service signs with. value is what the
// variable name holds and dev the public development key. Outside a demo
// (DemoEnv unset or false) an empty value, dev or a placeholder is refused
// with ErrUnsafeSecret and an error saying what to do; in a demo an empty
// value means dev. The error never contains the secret.
func Secret(name, value, dev string) (string, error) {
	return secret(name, value, dev, os.LookupEnv)
}

// SecretFrom is Secret with a custom lookup of DemoEnv, for tests.
func SecretFrom(name, value, dev string, lookup func(string) (string, bool)) (string, error) {
	return secret(name, value, dev, lookup)
}

// demoMode reports whether DemoEnv declares a local demo.
func demoMode(lookup func(string) (string, bool)) (bool, error) {
	raw, ok := lookup(DemoEnv)
	if !ok || raw == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(raw)
	if err != nil {
		return false, fmt.Errorf("config: %s=%q: want true or false", DemoEnv, raw)
	}
	return b, nil
}

// URLSecrets refuses, outside a local demo, a connection string (NATS_URL,
// MONGO_URI) whose password or token is a placeholder left in a deploy
// file: a shop must not run on credentials that came with the manifests.
// The error names the variable, never the value.
func URLSecrets(name, value string) error {
	return urlSecrets(name, value, os.LookupEnv)
}

func urlSecrets(name, value string, lookup func(string) (string, bool)) error {
	demo, err := demoMode(lookup)
	if err != nil || demo {
		return err
	}
	for _, part := range splitURLs(value) {
		u, err := url.Parse(strings.TrimSpace(part))
		if err != nil || u.User == nil {
			continue
		}
		secret, ok := u.User.Password()
		if !ok {
			secret = u.User.Username() // a NATS token
		}
		if isPlaceholder(secret) {
			return fmt.Errorf("config: %s holds a placeholder password from a deploy file: %w; put the real one where the deployment keeps its secrets, or set %s=true for a local demo",
				name, ErrUnsafeSecret, DemoEnv)
		}
	}
	return nil
}

func secret(name, value, dev string, lookup func(string) (string, bool)) (string, error) {
	demo, err := demoMode(lookup)
	if err != nil {
		return "", err
	}
	var problem string
	switch {
	case value == "":
		if demo {
			return dev, nil
		}
		problem = "is not set"
	case value == dev:
		problem = "is the public development key"
	case isPlaceholder(value):
		problem = "is a placeholder from a deploy file"
	}
	if problem == "" || demo {
		return value, nil
	}
	return "", fmt.Errorf("config: %s %s: %w; set it to a random key of at least 16 bytes (openssl rand -base64 48), or set %s=true for a local demo",
		name, problem, ErrUnsafeSecret, DemoEnv)
}

func isPlaceholder(v string) bool {
	v = strings.ToLower(v)
	for _, p := range placeholders {
		if strings.Contains(v, p) {
			return true
		}
	}
	return false
}
