//go:build !linux

package stack

import "syscall"

// sysProcAttr: only Linux can tie a child's life to its parent.
func sysProcAttr() *syscall.SysProcAttr { return nil }
