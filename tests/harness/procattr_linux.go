package harness

import "syscall"

// sysProcAttr makes the kernel kill redis-server if the test binary dies (a test
// timeout, ^C), so no orphaned servers keep ports and CPU on a shared machine.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
