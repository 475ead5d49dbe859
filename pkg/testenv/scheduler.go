package testenv

import (
	"context"
	"fmt"
	"path/filepath"

	"k8s.io/client-go/rest"
)

const schedulerCertDir = "kube-scheduler-certs"

// startScheduler runs kube-scheduler with the admin kubeconfig on a loopback port and
// waits for its /healthz. Leader election is off: one scheduler per Env.
func (e *Env) startScheduler(ctx context.Context, bin string) error {
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + e.Kubeconfig,
		"--authentication-kubeconfig=" + e.Kubeconfig,
		"--authorization-kubeconfig=" + e.Kubeconfig,
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", ports[0]),
		"--cert-dir=" + filepath.Join(e.Dir, schedulerCertDir),
		"--leader-elect=false",
	}
	p, err := e.spawner.startProcess("kube-scheduler", bin, args, filepath.Join(e.Dir, "kube-scheduler.log"))
	if err != nil {
		return err
	}
	e.addProcess(p)
	ca, err := waitServingCert(ctx, p, "kube-scheduler", filepath.Join(e.Dir, schedulerCertDir, "kube-scheduler.crt"))
	if err != nil {
		return err
	}
	httpc, err := checkClient(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: ca}})
	if err != nil {
		return err
	}
	url := fmt.Sprintf("https://127.0.0.1:%d/healthz", ports[0])
	return waitReady(ctx, p, "kube-scheduler", func(ctx context.Context) error {
		return httpCheck(ctx, httpc, url, "ok")
	})
}
