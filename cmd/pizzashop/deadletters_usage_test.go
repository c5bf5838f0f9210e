package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/pizzashop/pizzashop/pkg/devstack"
)

// A mistake in a deadletters command line is reported as one, before
// anything is asked of NATS: not as a connection error when the shop is
// down, and not as "no dead letters" (exit 0) when none were written yet.
func TestDeadLettersUsage(t *testing.T) {
	running := devstack.NATS(t) // no DEADLETTER stream on it
	const down = "nats://127.0.0.1:1"
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"deadletters", "lsit"}, `unknown verb "lsit"`},
		{[]string{"deadletters", "list", "7"}, "takes no arguments"},
		{[]string{"deadletters", "list", "--all"}, "takes no arguments"},
		{[]string{"deadletters", "replay"}, "give sequence numbers or --all"},
		{[]string{"deadletters", "replay", "3", "--all"}, "not both"},
		{[]string{"deadletters", "replay", "x"}, `"x" is not a dead-letter sequence number`},
	}
	for _, tt := range tests {
		for _, url := range []string{running, down} {
			var out, errOut bytes.Buffer
			err := run(t.Context(), append(tt.args, "--nats", url), &out, &errOut)
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(ue.msg, tt.want) {
				t.Errorf("pizzashop %s (NATS %s) = %v, output %q; want a usage error saying %q",
					strings.Join(tt.args, " "), url, err, out.String()+errOut.String(), tt.want)
			}
		}
	}
}
