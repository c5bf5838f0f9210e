package config_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/config"
)

// Common stands in for svc.Common: a struct every service embeds by value.
type Common struct {
	GRPCAddr   string `env:"GRPC_ADDR" default:"127.0.0.1:9091"`
	AuthSecret string `env:"AUTH_SECRET" secret:"true"`
	MongoURI   string `env:"MONGO_URI" default:"mongodb://127.0.0.1:27017/"`
}

type testConfig struct {
	Common
	Timeout  time.Duration `env:"TIMEOUT" default:"10s"`
	Debug    bool          `env:"DEBUG" default:"false"`
	Ovens    int           `env:"OVENS" default:"2"`
	Workers  int32         `env:"WORKERS"`
	MaxPool  uint64        `env:"MAX_POOL" default:"16"`
	Small    uint32        `env:"SMALL"`
	Ratio    float64       `env:"RATIO" default:"0.5"`
	Origins  []string      `env:"ORIGINS" default:"a.example, b.example"`
	Nested   nested
	NoEnv    string    // no env tag: left alone
	Started  time.Time // a struct, but not one to walk into
	internal string    `env:"INTERNAL" default:"x"` // unexported: ignored
}

type nested struct {
	Name string `env:"NESTED_NAME" default:"inner"`
}

func defaults() testConfig {
	return testConfig{
		Common:  Common{GRPCAddr: "127.0.0.1:9091", MongoURI: "mongodb://127.0.0.1:27017/"},
		Timeout: 10 * time.Second,
		Ovens:   2,
		MaxPool: 16,
		Ratio:   0.5,
		Origins: []string{"a.example", "b.example"},
		Nested:  nested{Name: "inner"},
	}
}

func lookup(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

func TestLoadFrom(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want func(*testConfig)
	}{
		{name: "defaults", env: nil, want: func(*testConfig) {}},
		{
			name: "overrides",
			env: map[string]string{
				"GRPC_ADDR": ":7000", "AUTH_SECRET": "s3cret", "MONGO_URI": "mongodb://db:27017/",
				"TIMEOUT": "1m30s", "DEBUG": "true", "OVENS": "-3", "WORKERS": "7", "MAX_POOL": "64",
				"SMALL": "9", "RATIO": "1.25", "ORIGINS": "x.example", "NESTED_NAME": "deep",
			},
			want: func(c *testConfig) {
				c.GRPCAddr, c.AuthSecret, c.MongoURI = ":7000", "s3cret", "mongodb://db:27017/"
				c.Timeout, c.Debug, c.Ovens, c.Workers = 90*time.Second, true, -3, 7
				c.MaxPool, c.Small, c.Ratio = 64, 9, 1.25
				c.Origins = []string{"x.example"}
				c.Nested.Name = "deep"
			},
		},
		{
			name: "empty value takes the default",
			env:  map[string]string{"GRPC_ADDR": "", "TIMEOUT": ""},
			want: func(*testConfig) {},
		},
		{
			name: "list trims blanks and empty items",
			env:  map[string]string{"ORIGINS": " one ,, two ,three,"},
			want: func(c *testConfig) { c.Origins = []string{"one", "two", "three"} },
		},
		{
			name: "list of only separators is empty",
			env:  map[string]string{"ORIGINS": " , ,"},
			want: func(c *testConfig) { c.Origins = nil },
		},
		{
			name: "bool spellings",
			env:  map[string]string{"DEBUG": "1"},
			want: func(c *testConfig) { c.Debug = true },
		},
		{
			name: "variables not in the struct are ignored",
			env:  map[string]string{"INTERNAL": "y", "NO_ENV": "z"},
			want: func(*testConfig) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := defaults()
			tt.want(&want)
			var got testConfig
			if err := config.LoadFrom(&got, lookup(tt.env)); err != nil {
				t.Fatalf("LoadFrom() err = %v, want nil", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("LoadFrom() =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestLoadFromErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string // each must appear in the error
	}{
		{"bad duration", map[string]string{"TIMEOUT": "10 parsecs"}, []string{"TIMEOUT", `"10 parsecs"`}},
		{"duration without unit", map[string]string{"TIMEOUT": "10"}, []string{"TIMEOUT"}},
		{"bad bool", map[string]string{"DEBUG": "yes please"}, []string{"DEBUG"}},
		{"bad int", map[string]string{"OVENS": "two"}, []string{"OVENS", `"two"`}},
		{"bad float", map[string]string{"RATIO": "half"}, []string{"RATIO"}},
		{"negative uint", map[string]string{"MAX_POOL": "-1"}, []string{"MAX_POOL"}},
		{"int32 overflow", map[string]string{"WORKERS": "4294967297"}, []string{"WORKERS"}},
		{"uint32 overflow", map[string]string{"SMALL": "4294967296"}, []string{"SMALL"}},
		{"in the embedded struct", map[string]string{"GRPC_ADDR": "ok", "NESTED_NAME": "ok", "OVENS": "1.5"}, []string{"OVENS"}},
		{"every bad variable is named", map[string]string{"TIMEOUT": "x", "DEBUG": "y", "OVENS": "z"}, []string{"TIMEOUT", "DEBUG", "OVENS"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got testConfig
			err := config.LoadFrom(&got, lookup(tt.env))
			if err == nil {
				t.Fatalf("LoadFrom(%v) err = nil, want an error naming %v", tt.env, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("LoadFrom(%v) err = %q, want it to contain %q", tt.env, err, w)
				}
			}
		})
	}
}

func TestLoadFromUnsupported(t *testing.T) {
	var bad struct {
		Tags map[string]string `env:"TAGS" default:"a=b"`
	}
	err := config.LoadFrom(&bad, lookup(nil))
	if err == nil || !strings.Contains(err.Error(), "TAGS") {
		t.Errorf("LoadFrom(map field) err = %v, want an error naming TAGS", err)
	}
	// Without a value there is nothing to convert, so no error.
	var unset struct {
		Tags map[string]string `env:"TAGS"`
	}
	if err := config.LoadFrom(&unset, lookup(nil)); err != nil {
		t.Errorf("LoadFrom(unset map field) err = %v, want nil", err)
	}
}

func TestLoadFromDestination(t *testing.T) {
	for _, dst := range []any{testConfig{}, new(int), nil, new(*testConfig)} {
		if err := config.LoadFrom(dst, lookup(nil)); err == nil {
			t.Errorf("LoadFrom(%T) err = nil, want an error", dst)
		}
	}
}

func TestLoad(t *testing.T) {
	t.Setenv("OVENS", "5")
	t.Setenv("GRPC_ADDR", "")
	var got testConfig
	if err := config.Load(&got); err != nil {
		t.Fatalf("Load() err = %v, want nil", err)
	}
	if got.Ovens != 5 || got.GRPCAddr != "127.0.0.1:9091" {
		t.Errorf("Load() Ovens, GRPCAddr = %d, %q; want 5, %q", got.Ovens, got.GRPCAddr, "127.0.0.1:9091")
	}
}

func TestLogValue(t *testing.T) {
	tests := []struct {
		name string
		set  func(*testConfig)
		key  string
		want string
	}{
		{"secret masked", func(c *testConfig) { c.AuthSecret = "hunter2" }, "AUTH_SECRET", "***"},
		{"empty secret shown empty", func(c *testConfig) { c.AuthSecret = "" }, "AUTH_SECRET", ""},
		{"url credentials masked", func(c *testConfig) { c.MongoURI = "mongodb://admin:hunter2@db:27017/shop" }, "MONGO_URI", "mongodb://admin:xxxxx@db:27017/shop"},
		{"url user only masked", func(c *testConfig) { c.MongoURI = "nats://token@nats:4222" }, "MONGO_URI", "nats://xxxxx@nats:4222"},
		{"@ in password masked", func(c *testConfig) { c.MongoURI = "mongodb://u:p@ss@db/" }, "MONGO_URI", "mongodb://u:xxxxx@db/"},
		{"url without credentials kept", func(*testConfig) {}, "MONGO_URI", "mongodb://127.0.0.1:27017/"},
		{"plain value kept", func(*testConfig) {}, "GRPC_ADDR", "127.0.0.1:9091"},
		{"duration", func(*testConfig) {}, "TIMEOUT", "10s"},
		{"list", func(*testConfig) {}, "ORIGINS", "[a.example b.example]"},
		{"nested struct", func(*testConfig) {}, "NESTED_NAME", "inner"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := defaults()
			tt.set(&cfg)
			for _, v := range []any{cfg, &cfg} {
				got := attrs(config.LogValue(v))
				if g, ok := got[tt.key]; !ok || g != tt.want {
					t.Errorf("LogValue(%T)[%s] = %q (present %v), want %q", v, tt.key, g, ok, tt.want)
				}
			}
		})
	}
}

func attrs(v slog.Value) map[string]string {
	out := map[string]string{}
	for _, a := range v.Group() {
		out[a.Key] = a.Value.String()
	}
	return out
}

// TestLogValueNoLeak logs a whole configuration as a service does at startup
// and checks that no secret reaches the output.
func TestLogValueNoLeak(t *testing.T) {
	cfg := defaults()
	cfg.AuthSecret = "hunter2-secret"
	cfg.MongoURI = "mongodb://admin:hunter2-password@db:27017/"
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", config.LogValue(cfg))
	if out := buf.String(); strings.Contains(out, "hunter2") {
		t.Errorf("startup log line leaks a secret: %s", out)
	}
	var line struct {
		Config map[string]string `json:"config"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("log line is not JSON: %v", err)
	}
	wantKeys := []string{"GRPC_ADDR", "AUTH_SECRET", "MONGO_URI", "TIMEOUT", "DEBUG", "OVENS", "WORKERS",
		"MAX_POOL", "SMALL", "RATIO", "ORIGINS", "NESTED_NAME"}
	if len(line.Config) != len(wantKeys) {
		t.Errorf("logged config has %d keys %v, want %d", len(line.Config), line.Config, len(wantKeys))
	}
	for _, k := range wantKeys {
		if _, ok := line.Config[k]; !ok {
			t.Errorf("logged config lacks %s: %v", k, line.Config)
		}
	}
}
