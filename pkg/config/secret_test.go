package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/pizzashop/pizzashop/pkg/config"
)

func TestSecret(t *testing.T) {
	const dev = "pizzashop-local-dev-secret-do-not-use-in-production"
	const real = "q3V7m1x0Zr8Kp2WcYt5Nb9Ld4Hs6Gf1A"
	for _, tc := range []struct {
		name, value, demo string
		want              string
		wantErr           string // substring; "" for no error
	}{
		{"a real key", real, "", real, ""},
		{"a real key in a demo", real, "true", real, ""},
		{"unset", "", "", "", "AUTH_SECRET is not set"},
		{"unset, demo false", "", "false", "", "AUTH_SECRET is not set"},
		{"unset in a demo", "", "true", dev, ""},
		{"the development key", dev, "", "", "public development key"},
		{"the development key in a demo", dev, "1", dev, ""},
		{"the Kubernetes placeholder", "REPLACE-ME-this-placeholder-is-not-a-secret", "", "", "placeholder"},
		{"a changeme", "ChangeMe-please-0123456789", "", "", "placeholder"},
		{"a placeholder in a demo", "REPLACE-ME-this-placeholder-is-not-a-secret", "true", "REPLACE-ME-this-placeholder-is-not-a-secret", ""},
		{"demo not a boolean", real, "yes please", "", "PIZZASHOP_DEMO"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) {
				if k == config.DemoEnv && tc.demo != "" {
					return tc.demo, true
				}
				return "", false
			}
			got, err := config.SecretFrom("AUTH_SECRET", tc.value, dev, lookup)
			if tc.wantErr == "" {
				if err != nil || got != tc.want {
					t.Fatalf("SecretFrom(%q, demo %q) = %q, %v; want %q", tc.value, tc.demo, got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("SecretFrom(%q, demo %q) = %q, %v; want an error containing %q", tc.value, tc.demo, got, err, tc.wantErr)
			}
			if tc.value != "" && strings.Contains(err.Error(), tc.value) {
				t.Errorf("the error shows the secret: %v", err)
			}
			if tc.wantErr != "PIZZASHOP_DEMO" && (!errors.Is(err, config.ErrUnsafeSecret) || !strings.Contains(err.Error(), "PIZZASHOP_DEMO=true")) {
				t.Errorf("error %v: want ErrUnsafeSecret saying how to run a demo", err)
			}
		})
	}
}
