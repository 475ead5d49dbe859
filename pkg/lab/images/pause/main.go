// Command pause is the sandbox ("infra") container of sdn-lab's real nodes, imported as
// registry.k8s.io/pause:3.10: it holds the pod's namespaces open and does nothing else. It
// exits 0 on SIGINT or SIGTERM, and reaps zombies when it is the pod's PID 1 in a shared
// process namespace, as Kubernetes' pause does. Static, so the image needs no base.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

// reap collects every exited child without blocking.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
