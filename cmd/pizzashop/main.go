// Command pizzashop runs the whole shop on one machine for development: an
// embedded NATS JetStream and FerretDB under ./data, every service as its own
// process next to this binary, and the REST gateway. It also prints
// credentials for trying the API.
//
//	pizzashop [run] [flags]     the whole shop, until Ctrl-C (make run)
//	pizzashop token --role R --sub S [--name N] [--ttl 24h]
//	pizzashop devstack [flags]  only NATS and FerretDB, until Ctrl-C
//	pizzashop deadletters list | replay SEQ... | --all
//	pizzashop events tail [SUBJECT] | get STREAM SEQ
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/pizzashop/pizzashop/pkg/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), app.StopSignals()...)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

const usage = `pizzashop runs the Pizzashop on this machine for development.

Usage:
  pizzashop [run] [flags]      start NATS, FerretDB, every service and the gateway
  pizzashop token --role ROLE --sub ID [--name NAME] [--ttl 24h]
                               print a credential to send as "Authorization: Bearer <token>"
  pizzashop devstack [flags]   start only NATS and FerretDB
  pizzashop deadletters list   list the messages consumers gave up on
  pizzashop deadletters replay SEQ... | --all
                               publish them again on their original subjects
  pizzashop events tail [SUBJECT]
                               print live events as JSON with their headers
  pizzashop events get STREAM SEQ
                               print one stored event, for example: events get ORDER 12
  pizzashop help               show this text

Commands that talk to a running shop (deadletters, events) find its NATS at
NATS_URL, else at PIZZASHOP_NATS_ADDR as "pizzashop run" uses it, else
127.0.0.1:4222; --nats overrides. Run "pizzashop <command> -h" for the flags
of a command.
`

// run dispatches to the subcommand named by args[0]; flags alone mean run.
// Output goes to stdout and stderr so tests can capture it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd, rest := "run", args
	if len(args) > 0 && (!strings.HasPrefix(args[0], "-") || isHelp(args[0])) {
		cmd, rest = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runShop(ctx, rest, stdout, stderr)
	case "token":
		return runToken(rest, stdout, stderr)
	case "devstack":
		return runDevstack(ctx, rest, stdout, stderr)
	case "deadletters":
		return runDeadLetters(ctx, rest, stdout, stderr)
	case "events":
		return runEvents(ctx, rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usageErrorf("unknown command %q", cmd)
}

// isHelp reports whether a first argument asks for the command list rather
// than being a flag of run.
func isHelp(arg string) bool { return arg == "-h" || arg == "-help" || arg == "--help" }

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usageErrorf(format string, a ...any) error {
	return usageError{fmt.Sprintf(format, a...)}
}

// exitCode reports err once, on stderr, and picks the exit status.
func exitCode(err error, stderr io.Writer) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		if ue.msg != "" { // empty when the flag package already said it
			fmt.Fprintf(stderr, "pizzashop: %s\nRun \"pizzashop help\" for usage.\n", ue.msg)
		}
		return 2
	default:
		fmt.Fprintf(stderr, "pizzashop: %v\n", err)
		return 1
	}
}

// newFlagSet returns a flag set whose -h prints synopsis and the flags.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and refuses positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{} // the flag package has printed the problem and usage
	}
	if fs.NArg() > 0 {
		return usageErrorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

// parseArgs parses args whose flags may come before, between or after the
// positional arguments, and returns the latter in order.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{} // the flag package has printed the problem and usage
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos, args = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
}

// envOr returns the environment variable key, or def when it is unset or
// empty.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
