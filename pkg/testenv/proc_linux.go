package testenv

import (
	"os"
	"syscall"
)

const (
	termSignal = syscall.SIGTERM
	killSignal = syscall.SIGKILL
)

// childSysProcAttr puts the child in its own process group (so Stop can signal everything
// it forked) and asks the kernel to SIGKILL it when the forking thread — and so the test
// binary — dies, so a kill -9'd test leaves no control plane behind.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup sends sig to the process group led by p.
func signalGroup(p *os.Process, sig syscall.Signal) error {
	return syscall.Kill(-p.Pid, sig)
}
