package main

import "syscall"

// childSysProcAttr asks the kernel to kill a child when the launcher dies
// without stopping it (kill -9, a crash), so no service is left running with
// nobody watching it. The kill is SIGKILL, not a polite SIGTERM: NATS and
// the store died with the launcher, so a graceful stop has nothing to drain
// into and would only hold the ports for seconds (5 s idle, 17 s under load,
// measured) while a restarted launcher waits for them. Nothing is lost by
// it: every service survives kill -9 by design. The kernel ties this to the
// thread that started the child; Go retires a thread only when a goroutine
// exits while locked to it, which nothing in the launcher does.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
