//go:build !linux

package harness

import "syscall"

// sysProcAttr: only Linux has Pdeathsig; elsewhere t.Cleanup is the only guard.
func sysProcAttr() *syscall.SysProcAttr { return nil }
