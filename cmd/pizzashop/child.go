package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// child is one service process started by the launcher.
type child struct {
	name string
	cmd  *exec.Cmd
	log  *logSink

	done chan struct{} // closed once the process has exited and its output is written
	err  error         // what Wait returned; read only after done

	reported bool // its exit and last lines have been shown on the terminal
}

// startChild starts path with args and env, its output going to sink. The child stays
// in the launcher's process group, so a Ctrl-C in the terminal reaches it
// directly too.
func startChild(name, path string, env []string, sink *logSink, args ...string) (*child, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = env
	// One writer for both streams: os/exec then uses one pipe and one
	// goroutine, so lines of stdout and stderr never interleave mid-line.
	cmd.Stdout, cmd.Stderr = sink, sink
	// Stop waiting for output once the process is gone, even if something
	// it started still holds the pipe.
	cmd.WaitDelay = 2 * time.Second
	cmd.SysProcAttr = childSysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, log: sink, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// exited reports whether the process has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to timeout for the process to exit, then
// kills it. A closed force kills it at once. It reports whether the process
// had to be killed.
func (c *child) stop(timeout time.Duration, force <-chan struct{}) (killed bool) {
	if c.exited() {
		return false
	}
	// An error here means the process is already gone; done will tell.
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
		return false
	case <-t.C:
	case <-force:
	}
	_ = c.cmd.Process.Kill()
	<-c.done
	return true
}

// describeExit says how the process ended, for the terminal.
func (c *child) describeExit() string {
	var ee *exec.ExitError
	switch {
	case c.err == nil:
		return "exited with status 0"
	case errors.As(c.err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Sprintf("was killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
		}
		return fmt.Sprintf("exited with status %d", ee.ExitCode())
	default:
		return c.err.Error()
	}
}

// stoppedCleanly reports whether the process exited with status 0 or from
// the signal sent to stop it.
func (c *child) stoppedCleanly() bool {
	var ee *exec.ExitError
	if c.err == nil {
		return true
	}
	if errors.As(c.err, &ee) {
		ws, ok := ee.Sys().(syscall.WaitStatus)
		return ok && ws.Signaled() && (ws.Signal() == syscall.SIGTERM || ws.Signal() == syscall.SIGINT)
	}
	return false
}

// executable reports whether path is a regular file with an execute bit.
func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
