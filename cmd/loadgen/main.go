// Command loadgen drives a running Pizzashop through its REST gateway and
// measures what customers, the kitchen and the courier see, and what it
// costs the machine:
//
//   - an open-model arrival rate (-rate: orders sent on schedule whatever
//     the latency, late starts counted, latency from the due time), a closed
//     loop (-clients), or a ramp (-ramp) that finds the highest rate whose
//     p99 stays within -p99 with no errors and no backlog;
//   - -mode place (the kitchen accepts orders on its own) or -mode
//     lifecycle (loadgen is also kitchen staff, courier and counter);
//   - time from order to the kitchen display (followed live), lost and
//     duplicated orders (both must be 0), the backlog left at the end;
//   - CPU per order by process, from each process's
//     process_cpu_seconds_total before and after (the drain included).
//
// A progress line goes to stderr every second; -report PREFIX writes
// PREFIX.json (every figure) and PREFIX.html (charts).
//
//	loadgen -rate 100 -duration 30s -mode lifecycle -report bin/load
//	loadgen -ramp -rate 50 -ramp-step 50 -p99 50ms
//	loadgen bench-capacity -bin bin          # baseline against the real path
//	loadgen baseline-order -addr 127.0.0.1:9292
//
// Addresses follow `pizzashop run`: the gateway on PIZZASHOP_HTTP_ADDR, the
// metrics on PIZZASHOP_BASE_PORT+100 (the launcher) and +101..+104 (the
// services; replica R of each on +10(R-1) more, with PIZZASHOP_REPLICAS). Credentials are signed with AUTH_SECRET, the development key
// when it is unset.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK     = 0
	exitError  = 1
	exitUsage  = 2
	exitOrders = 3 // lost, duplicated or unfinished orders
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var err error
	code := exitOK
	switch {
	case len(args) > 0 && args[0] == "baseline-order":
		err = runBaselineOrder(ctx, args[1:], stderr)
	case len(args) > 0 && args[0] == "bench-capacity":
		err = runBench(ctx, args[1:], stdout, stderr)
	default:
		code, err = load(ctx, args, stdout, stderr)
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, new(usageError)):
		fmt.Fprintln(stderr, "loadgen:", err)
		return exitUsage
	case err != nil:
		fmt.Fprintln(stderr, "loadgen:", err)
		return exitError
	}
	return code
}

// usageError is bad flags or arguments.
type usageError struct{ error }

func load(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	o, err := parseOptions(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, err
		}
		return exitUsage, usageError{err}
	}
	rep, err := runLoad(ctx, o, stdout, stderr)
	if err != nil {
		return exitError, err
	}
	if o.jsonOut {
		if err := rep.writeJSON(stdout); err != nil {
			return exitError, err
		}
	} else {
		rep.print(stdout)
	}
	if o.report != "" {
		if err := rep.writeFiles(o.report); err != nil {
			return exitError, err
		}
		fmt.Fprintf(stderr, "loadgen: report in %s.json and %s.html\n", o.report, o.report)
	}
	if why := rep.failed(); why != "" {
		fmt.Fprintln(stderr, "loadgen:", why)
		return exitOrders, nil
	}
	return exitOK, nil
}
