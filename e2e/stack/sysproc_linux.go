package stack

import "syscall"

// sysProcAttr has the kernel kill a service when the test binary dies
// without cleaning up (a timeout panic, kill -9), so no process outlives
// its test. The kernel ties this to the thread that started the child; Go
// retires a thread only when a goroutine exits while locked to it, which
// nothing here does.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
