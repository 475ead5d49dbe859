// Package testenv runs a real Kubernetes control plane — etcd, kube-apiserver and, on request,
// kube-controller-manager — on 127.0.0.1 for integration tests and for sdn-lab, with the
// network.openshift.io CRDs installed and established.
//
// Every process listens on loopback only, on ports picked at random, keeps its data and log
// in one directory, runs in its own process group and is SIGKILLed by the kernel if the
// test binary dies (Linux), so an interrupted test leaves nothing behind. Clients
// authenticate with client certificates from a CA the Env creates: Config is an admin in
// system:masters; ConfigFor mints any other identity, for RBAC tests.
//
// The binaries come from $TOOLS_BIN or <module root>/_output/tools/bin (`make tools`).
package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// Defaults for Options fields left zero.
const (
	DefaultStartTimeout = 90 * time.Second
	// ServiceClusterIPRange is the API server's --service-cluster-ip-range, OpenShift's
	// default service network.
	ServiceClusterIPRange = "172.30.0.0/16"
	// AdminUser is the user name of Config; it is in the system:masters group.
	AdminUser = "testenv-admin"
)

// stopGrace is how long Stop waits after SIGTERM before it SIGKILLs a process group.
const stopGrace = 5 * time.Second

// maxPortAttempts bounds how often Start retries when a randomly chosen port was taken
// between choosing it and the process binding it.
const maxPortAttempts = 3

// Options configure Start. The zero value runs etcd and kube-apiserver in a fresh
// temporary directory.
type Options struct {
	// ControllerManager also runs kube-controller-manager (namespace deletion, EndpointSlices,
	// ServiceAccounts, garbage collection). Without it the ServiceAccount admission plugin is
	// disabled, because nothing would create the "default" ServiceAccount pods need.
	ControllerManager bool
	// Dir, when set, holds the data, certificates and logs instead of a fresh temporary
	// directory; it is created if missing and left in place by Stop (the caller owns it).
	// Starting again on the same Dir keeps etcd's objects and appends to the logs; ports,
	// certificates and the service-account key are new, so old tokens stop working.
	Dir string
	// StartTimeout bounds the whole of Start (default DefaultStartTimeout); the context
	// passed to Start may shorten it.
	StartTimeout time.Duration
	// ExtraAPIServerArgs are appended to kube-apiserver's command line; a later flag
	// overrides an earlier one.
	ExtraAPIServerArgs []string
	// Scheduler also runs kube-scheduler, so that pods without spec.nodeName are bound.
	Scheduler bool
	// ServingIPs are more addresses the API server's serving certificate is valid for,
	// besides 127.0.0.1 and the kubernetes Service's: addresses of relays that forward to
	// its loopback port (sdn-lab's real nodes reach it through one). When set, the Env
	// issues the serving certificate from a CA of its own instead of letting
	// kube-apiserver sign one itself.
	ServingIPs []netip.Addr
}

// Timings records when each start phase completed, measured from the start of the
// (successful) start attempt.
type Timings struct {
	EtcdReady              time.Duration
	APIServerReady         time.Duration
	ControllerManagerReady time.Duration // zero when not run
	SchedulerReady         time.Duration // zero when not run
	CRDsEstablished        time.Duration // the whole Start
}

// String renders the timings for logs.
func (t Timings) String() string {
	s := fmt.Sprintf("etcd ready %v, kube-apiserver ready %v", t.EtcdReady.Round(time.Millisecond), t.APIServerReady.Round(time.Millisecond))
	if t.ControllerManagerReady > 0 {
		s += fmt.Sprintf(", kube-controller-manager ready %v", t.ControllerManagerReady.Round(time.Millisecond))
	}
	if t.SchedulerReady > 0 {
		s += fmt.Sprintf(", kube-scheduler ready %v", t.SchedulerReady.Round(time.Millisecond))
	}
	return s + fmt.Sprintf(", CRDs established %v", t.CRDsEstablished.Round(time.Millisecond))
}

// Env is a running control plane. Its fields are read-only after Start.
type Env struct {
	// Config authenticates as AdminUser in system:masters.
	Config *rest.Config
	// Kubeconfig is the path of an admin kubeconfig file in Dir.
	Kubeconfig string
	// URL is the API server's https URL on 127.0.0.1.
	URL string
	// Dir holds etcd data, certificates, keys, kubeconfigs and the processes' logs
	// (etcd.log, kube-apiserver.log, kube-controller-manager.log).
	Dir string
	// Timings of Start.
	Timings Timings

	ca        *clientCA
	servingCA []byte // PEM of the API server's serving certificate chain
	removeDir bool
	spawner   *spawner
	apiserver *process // for readiness checks after the API server is up

	mu      sync.Mutex
	procs   []*process // in start order
	stopped bool
	stopErr error
}

// Start runs the control plane and returns once the API server is ready and every CRD of
// network.openshift.io is Established and served by discovery. ctx bounds only the start;
// the processes run until Stop (or until the calling process dies). On error nothing is left
// running and a temporary directory is removed; the error quotes the end of the failing
// process's log and wraps ErrBinaryMissing when a binary is not built.
func Start(ctx context.Context, opts Options) (*Env, error) {
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	toolsDir, err := ToolsBin()
	if err != nil {
		return nil, err
	}
	bins, err := findBinaries(toolsDir, opts)
	if err != nil {
		return nil, err
	}
	e, err := newEnv(opts.Dir)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		err = e.start(ctx, bins, opts)
		if err == nil {
			return e, nil
		}
		if !errors.Is(err, errPortInUse) || attempt == maxPortAttempts {
			break
		}
		if err := e.stopProcesses(); err != nil {
			break
		}
		// A fresh etcd member for the next attempt: the old one may have recorded a
		// peer URL on the port that was taken.
		if err := os.RemoveAll(filepath.Join(e.Dir, "etcd")); err != nil {
			break
		}
	}
	if stopErr := e.Stop(); stopErr != nil {
		err = errors.Join(err, fmt.Errorf("cleaning up after failed start: %w", stopErr))
	}
	return nil, err
}

// StartT starts an Env for a test and stops it in t.Cleanup. When the binaries are missing
// it skips under -short and otherwise fails with instructions; any other start error fails
// the test.
func StartT(t testing.TB, opts Options) *Env {
	t.Helper()
	e, err := Start(context.Background(), opts)
	if errors.Is(err, ErrBinaryMissing) && testing.Short() {
		t.Skipf("testenv: %v", err)
	}
	if err != nil {
		t.Fatalf("testenv: starting control plane: %v", err)
	}
	t.Logf("testenv: control plane at %s in %s: %v", e.URL, e.Dir, e.Timings)
	t.Cleanup(func() {
		begin := time.Now()
		if err := e.Stop(); err != nil {
			t.Errorf("testenv: stopping control plane: %v", err)
		}
		t.Logf("testenv: stopped in %v", time.Since(begin))
	})
	return e
}

// newEnv prepares the directory and the client CA.
func newEnv(dir string) (*Env, error) {
	e := &Env{Dir: dir}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "ovs-sdn-testenv-")
		if err != nil {
			return nil, fmt.Errorf("creating temporary directory: %w", err)
		}
		e.Dir, e.removeDir = tmp, true
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating directory %s: %w", dir, err)
	}
	ca, err := newClientCA()
	if err != nil {
		e.removeTempDir()
		return nil, err
	}
	e.ca = ca
	e.spawner = newSpawner()
	return e, nil
}

// start runs one attempt: etcd, kube-apiserver, optionally kube-controller-manager, CRDs.
func (e *Env) start(ctx context.Context, bins binaries, opts Options) error {
	begin := time.Now()
	etcdURL, err := e.startEtcd(ctx, bins.etcd)
	if err != nil {
		return err
	}
	e.Timings.EtcdReady = time.Since(begin)
	if err := e.startAPIServer(ctx, bins.apiserver, etcdURL, opts); err != nil {
		return err
	}
	e.Timings.APIServerReady = time.Since(begin)
	if opts.ControllerManager {
		if err := e.startControllerManager(ctx, bins.controllerManager); err != nil {
			return err
		}
		e.Timings.ControllerManagerReady = time.Since(begin)
	}
	if opts.Scheduler {
		if err := e.startScheduler(ctx, bins.scheduler); err != nil {
			return err
		}
		e.Timings.SchedulerReady = time.Since(begin)
	}
	if err := e.installCRDs(ctx); err != nil {
		return err
	}
	e.Timings.CRDsEstablished = time.Since(begin)
	return nil
}

// ConfigFor returns a client configuration that authenticates as user in groups (the API
// server adds system:authenticated) with a freshly minted client certificate. To act as a
// ServiceAccount, pass "system:serviceaccount:<ns>:<name>" and the groups
// "system:serviceaccounts" and "system:serviceaccounts:<ns>". It panics only if the system's
// random source fails.
func (e *Env) ConfigFor(user string, groups ...string) *rest.Config {
	certPEM, keyPEM, err := e.ca.issue(user, groups)
	if err != nil {
		panic(fmt.Sprintf("testenv: issuing client certificate: %v", err))
	}
	return e.restConfig(certPEM, keyPEM)
}

// restConfig is the configuration of a client with the given certificate. Rate limits are
// raised far above client-go's defaults: tests create objects in bursts.
func (e *Env) restConfig(certPEM, keyPEM []byte) *rest.Config {
	return &rest.Config{
		Host: e.URL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   e.servingCA,
			CertData: certPEM,
			KeyData:  keyPEM,
		},
		QPS:   500,
		Burst: 1000,
	}
}

// Stop terminates every process (SIGTERM, then SIGKILL after a grace period, whole process
// groups, newest first) and removes the directory if Start created it. It is idempotent and
// safe for concurrent use; later calls return the first call's result.
func (e *Env) Stop() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return e.stopErr
	}
	e.stopped = true
	err := e.stopProcessesLocked()
	e.spawner.close()
	if rmErr := e.removeTempDir(); rmErr != nil {
		err = errors.Join(err, rmErr)
	}
	e.stopErr = err
	return err
}

// stopProcesses stops every process started so far, newest first, and forgets them.
func (e *Env) stopProcesses() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stopProcessesLocked()
}

func (e *Env) stopProcessesLocked() error {
	var errs []error
	for i := len(e.procs) - 1; i >= 0; i-- {
		if err := e.procs[i].stop(stopGrace); err != nil {
			errs = append(errs, err)
		}
	}
	e.procs = nil
	return errors.Join(errs...)
}

func (e *Env) removeTempDir() error {
	if !e.removeDir {
		return nil
	}
	if err := os.RemoveAll(e.Dir); err != nil {
		return fmt.Errorf("removing %s: %w", e.Dir, err)
	}
	return nil
}

// addProcess records p so Stop terminates it.
func (e *Env) addProcess(p *process) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.procs = append(e.procs, p)
}
