package main

import "syscall"

// childSysProcAttr asks the kernel to send SIGTERM to a child when the
// launcher dies without cleaning up (kill -9, a crash), so no service is
// left running with nobody watching it. The kernel ties this to the thread
// that started the child; Go retires a thread only when a goroutine exits
// while locked to it, which nothing in the launcher does.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
