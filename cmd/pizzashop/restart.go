package main

import (
	"context"
	"fmt"
	"time"
)

// A service process that dies after the shop is ready is started again,
// after restartMinBackoff, doubling up to restartMaxBackoff while it keeps
// dying within restartHealthy of its start.
const (
	restartMinBackoff = 250 * time.Millisecond
	restartMaxBackoff = 30 * time.Second
	restartHealthy    = 30 * time.Second
)

// slot is one service process the launcher keeps running: how to start it,
// and its restarts so far.
type slot struct {
	name    string // process name: menu, or menu-2 among replicas
	service string // the binary
	path    string
	env     []string
	log     *logSink // shared by every run of the process, appended to

	started  time.Time
	backoff  time.Duration
	restarts int
}

// serviceOf names the service of a process, which decides its shutdown
// tier.
func (l *launcher) serviceOf(c *child) string {
	if s := l.slots[c]; s != nil {
		return s.service
	}
	return c.name
}

// width is the width of process names in the terminal.
func (l *launcher) width() int {
	if l.cfg.replicas == 1 {
		return nameWidth
	}
	return nameWidth + 1 + len(fmt.Sprint(l.cfg.replicas))
}

// exited handles a process that exited on its own after the shop was
// ready: a service process is started again after its backoff; anything
// else (the trace viewer) stops the shop as before. A Ctrl-C in the
// terminal reaches the children too, and one may exit before the launcher
// sees its own signal: that is a normal stop, not a death.
func (l *launcher) exited(ctx context.Context, c *child) error {
	s := l.slots[c]
	if s == nil {
		return l.died(ctx, c)
	}
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(100 * time.Millisecond):
	}
	ran := time.Since(s.started)
	s.backoff = nextBackoff(s.backoff, ran)
	s.restarts++
	c.reported = true
	l.term.Printf("\n%s %s after %s. Last lines of %s:\n", c.name, c.describeExit(), ran.Round(time.Millisecond), c.log.path)
	for _, line := range c.log.Tail() {
		l.term.Println("  " + line)
	}
	l.term.Printf("Starting %s again in %s (restart %d).\n", s.name, s.backoff, s.restarts)
	l.restartCount.WithLabelValues(s.name).Inc()
	go func(wait time.Duration) {
		select {
		case <-time.After(wait):
		case <-l.stopping:
			return
		}
		select {
		case l.restarts <- s:
		case <-l.stopping:
		}
	}(s.backoff)
	return nil
}

// nextBackoff is the wait before a restart, after the last wait and how
// long the process ran: the minimum after a healthy run (or the first
// death), else double the last, up to the maximum.
func nextBackoff(last, ran time.Duration) time.Duration {
	if ran >= restartHealthy || last == 0 {
		return restartMinBackoff
	}
	return min(2*last, restartMaxBackoff)
}

// restart starts the process of s again. Failing to start the binary at
// all (it was removed) stops the shop.
func (l *launcher) restart(s *slot) error {
	if err := l.run(s); err != nil {
		return fmt.Errorf("restart %s: %w", s.name, err)
	}
	l.term.Printf("%s started again (restart %d)\n", s.name, s.restarts)
	return nil
}
