package config

import (
	"errors"
	"strings"
	"testing"
)

// Connection strings are printed on the terminal and in errors: no password
// or token in them may show, whatever their shape.
func TestRedactURL(t *testing.T) {
	tests := []struct {
		in, want string
		secrets  []string
	}{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222", nil},
		{"nats://pizzashop:s3cret@127.0.0.1:4222", "nats://pizzashop:xxxxx@127.0.0.1:4222", []string{"s3cret"}},
		// A NATS cluster: every server of the list carries the password.
		{"nats://u:one@n1:4222,nats://u:two@n2:4222,nats://u:three@n3:4222",
			"nats://u:xxxxx@n1:4222,nats://u:xxxxx@n2:4222,nats://u:xxxxx@n3:4222", []string{"one", "two", "three"}},
		{"nats://u:one@n1:4222, nats://u:two@n2:4222", "nats://u:xxxxx@n1:4222, nats://u:xxxxx@n2:4222", []string{"one", "two"}},
		// A NATS token is the whole user info.
		{"nats://t0ken-value@n1:4222", "nats://xxxxx@n1:4222", []string{"t0ken-value"}},
		// A MongoDB replica set lists its hosts after one user info.
		{"mongodb://u:pw-1@h1:27017,h2:27017/?replicaSet=rs0", "mongodb://u:xxxxx@h1:27017,h2:27017/?replicaSet=rs0", []string{"pw-1"}},
		{"mongodb+srv://u:pw-2@cluster0.example.net/db", "mongodb+srv://u:xxxxx@cluster0.example.net/db", []string{"pw-2"}},
		// A comma inside a password does not split the URL.
		{"nats://u:pa,ss@n1:4222,nats://u:x,y@n2:4222", "nats://u:xxxxx@n1:4222,nats://u:xxxxx@n2:4222", []string{"pa,ss", "ss@", "x,y", "y@"}},
		{"mongodb://u:p,w@h1:27017,h2:27017/db", "mongodb://u:xxxxx@h1:27017,h2:27017/db", []string{"p,w", "w@"}},
		// Not a URL Go parses: the user info still goes.
		{"nats://u:pw 3@n1:4222", "nats://xxxxx@n1:4222", []string{"pw 3"}},
	}
	for _, tt := range tests {
		got := RedactURL(tt.in)
		if got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
		for _, s := range tt.secrets {
			if strings.Contains(got, s) {
				t.Errorf("RedactURL(%q) = %q shows the secret %q", tt.in, got, s)
			}
		}
	}
}

// A connection string whose password or token is a deploy file's
// placeholder is refused outside a local demo, naming the variable and
// never the value; real credentials and a demo pass.
func TestURLSecrets(t *testing.T) {
	env := func(demo string) func(string) (string, bool) {
		return func(k string) (string, bool) {
			if k == DemoEnv && demo != "" {
				return demo, true
			}
			return "", false
		}
	}
	tests := []struct {
		url, demo string
		refused   bool
	}{
		{"nats://pizzashop:REPLACE-ME-nats-placeholder@nats:4222", "", true},
		{"nats://u:real-one@n1:4222,nats://u:changeme@n2:4222", "", true},
		{"nats://REPLACE-ME-token@nats:4222", "", true},
		{"mongodb://u:placeholder@h1:27017,h2:27017/?replicaSet=rs0", "false", true},
		{"nats://pizzashop:REPLACE-ME-nats-placeholder@nats:4222", "true", false},
		{"nats://pizzashop:Xk2v9-long-random@nats:4222", "", false},
		{"mongodb://mongo:27017", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		err := urlSecrets("NATS_URL", tt.url, env(tt.demo))
		if refused := errors.Is(err, ErrUnsafeSecret); refused != tt.refused {
			t.Errorf("urlSecrets(%q, demo %q) = %v, want refused %v", tt.url, tt.demo, err, tt.refused)
		}
		if err != nil && (strings.Contains(err.Error(), "REPLACE-ME") || strings.Contains(err.Error(), "changeme") || !strings.Contains(err.Error(), "NATS_URL")) {
			t.Errorf("urlSecrets(%q) error %q shows the value or does not name the variable", tt.url, err)
		}
	}
}
