//go:build !linux

package testenv

import (
	"os"
	"syscall"
)

const (
	termSignal = syscall.SIGTERM
	killSignal = syscall.SIGKILL
)

// childSysProcAttr has no parent-death signal outside Linux: orphans are possible there.
func childSysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }

// signalGroup signals only the process itself outside Linux.
func signalGroup(p *os.Process, sig syscall.Signal) error { return p.Signal(sig) }
