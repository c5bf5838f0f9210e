package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/devstack"
)

func TestDefaultNATSURL(t *testing.T) {
	for _, tc := range []struct {
		name, natsURL, natsAddr, want string
	}{
		{"default of make run", "", "", "nats://127.0.0.1:4222"},
		{"moved like make run", "", "127.0.0.1:14222", "nats://127.0.0.1:14222"},
		{"moved to every interface", "", "0.0.0.0:14222", "nats://localhost:14222"},
		{"NATS_URL wins", "nats://nats.example:4222", "127.0.0.1:14222", "nats://nats.example:4222"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NATS_URL", tc.natsURL)
			t.Setenv("PIZZASHOP_NATS_ADDR", tc.natsAddr)
			if got := defaultNATSURL(); got != tc.want {
				t.Errorf("defaultNATSURL() = %q, want %q", got, tc.want)
			}
		})
	}
}

// deadletters finds a shop started with a moved NATS through the variable
// that moved it, with no flag.
func TestDeadLettersFollowMovedPorts(t *testing.T) {
	url := devstack.NATS(t)
	t.Setenv("NATS_URL", "")
	t.Setenv("PIZZASHOP_NATS_ADDR", strings.TrimPrefix(url, "nats://"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"deadletters", "list"}, &out, &errOut); err != nil {
		t.Fatalf("deadletters list with PIZZASHOP_NATS_ADDR=%s: %v\n%s", strings.TrimPrefix(url, "nats://"), err, errOut.String())
	}
	if !strings.Contains(out.String(), "no dead letters") {
		t.Errorf("deadletters list = %q, want \"no dead letters\"", out.String())
	}
}
