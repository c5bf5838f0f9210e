//go:build !linux

package main

import "syscall"

// childSysProcAttr has nothing to add outside Linux: there, children of a
// launcher that was killed keep running and must be stopped by hand.
func childSysProcAttr() *syscall.SysProcAttr { return nil }
