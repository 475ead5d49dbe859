// Package controller is the sdn-controller: it allocates one pod subnet per
// Node (HostSubnet) and one VNID per Namespace (NetNamespace).
//
// Run reads and validates ClusterNetwork "default", then takes part in
// leader election on a coordination.k8s.io Lease. Only the leader starts
// informers; once the caches of Nodes, Namespaces, HostSubnets and
// NetNamespaces have synced it rebuilds the in-memory allocators by marking
// every subnet and netid already recorded in the API, and only then starts
// the reconcilers. The API objects are the only record of what is
// allocated, so a restarted or newly elected controller never hands out a
// subnet or VNID that is in use.
//
// The reconcilers are level-based: each takes a name, reads the caches,
// computes and writes, and returns an error to be retried with backoff.
// Allocations are released only when the deletion (or renumbering) of the
// object that held them is observed through the informer, and only when no
// other object still holds them.
package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
)

// ErrLeadershipLost is returned by Run when this replica stops holding the
// Lease while its context is still live; the process should exit non-zero
// so that it restarts as a standby.
var ErrLeadershipLost = errors.New("leader election lost")

// Run is the whole controller. It blocks until ctx is cancelled (returning
// nil), leadership is lost (ErrLeadershipLost), or the controller cannot
// work: an invalid ClusterNetwork (clusternetwork.ErrInvalid, naming the
// field), invalid options, or caches that never sync.
func Run(ctx context.Context, opts Options) error {
	opts, err := opts.complete()
	if err != nil {
		return err
	}
	cfg, err := waitForClusterNetwork(ctx, opts)
	if ctx.Err() != nil {
		return nil // cancelled while waiting: not a failure
	}
	if err != nil {
		return err
	}
	klog.InfoS("ClusterNetwork is valid", "clusterNetwork", networkv1.ClusterNetworkDefault, "config", cfg.String())
	opts.Status.setConfigured()
	m := newMetrics()
	if err := m.register(opts.Registry); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	return runElected(ctx, opts, cfg, m)
}

// waitForClusterNetwork polls ClusterNetwork "default" until it exists and
// returns its parsed Config. A missing object is logged (once, then every
// minute) and waited for; an invalid one is returned as an error at once.
func waitForClusterNetwork(ctx context.Context, opts Options) (*clusternetwork.Config, error) {
	var cfg *clusternetwork.Config
	var lastLog time.Time
	err := wait.PollUntilContextCancel(ctx, opts.ClusterNetworkPollInterval, true, func(ctx context.Context) (bool, error) {
		cn, err := opts.Network.NetworkV1().ClusterNetworks().Get(ctx, networkv1.ClusterNetworkDefault, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			if time.Since(lastLog) > time.Minute {
				klog.InfoS("Waiting for ClusterNetwork to be created; the controller allocates nothing until it exists",
					"clusterNetwork", networkv1.ClusterNetworkDefault)
				lastLog = time.Now()
			}
			return false, nil
		case err != nil:
			klog.ErrorS(err, "Reading ClusterNetwork failed; retrying", "clusterNetwork", networkv1.ClusterNetworkDefault)
			return false, nil
		}
		cfg, err = clusternetwork.Parse(cn)
		return err == nil, err
	})
	if err != nil && !errors.Is(err, clusternetwork.ErrInvalid) {
		return nil, fmt.Errorf("waiting for ClusterNetwork %q: %w", networkv1.ClusterNetworkDefault, err)
	}
	return cfg, err
}

// runElected campaigns for the Lease and runs the controller while leading.
func runElected(ctx context.Context, opts Options, cfg *clusternetwork.Config, m *metrics) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	term := &leaderTerm{}
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: opts.LeaseNamespace, Name: opts.LeaseName},
			Client:     opts.Kube.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: opts.Identity},
		},
		LeaseDuration:   opts.LeaseDuration,
		RenewDeadline:   opts.RenewDeadline,
		RetryPeriod:     opts.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            opts.LeaseNamespace + "/" + opts.LeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				term.run(lctx, cancel, func(lctx context.Context) error {
					klog.InfoS("Acquired leadership", "identity", opts.Identity, "lease", opts.LeaseNamespace+"/"+opts.LeaseName)
					opts.Status.setLeading(true)
					m.isLeader.Set(1)
					return newController(opts, cfg, m).run(lctx)
				})
			},
			OnStoppedLeading: func() {
				opts.Status.setLeading(false)
				m.isLeader.Set(0)
			},
			OnNewLeader: func(identity string) {
				klog.InfoS("Current leader", "leader", identity, "identity", opts.Identity)
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	elector.Run(ctx) // returns when ctx is done or the Lease could not be renewed
	if err := term.wait(); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	klog.ErrorS(ErrLeadershipLost, "Stopping: this replica no longer holds the Lease", "identity", opts.Identity)
	return fmt.Errorf("%s: %w", opts.Identity, ErrLeadershipLost)
}

// leaderTerm tracks the controller goroutine started on acquiring the Lease
// so runElected can wait for it to stop and collect its error.
type leaderTerm struct {
	mu   sync.Mutex
	done chan struct{}
	err  error
}

// run executes f; if f fails, stop is called so that the Lease is given up
// and runElected returns f's error.
func (t *leaderTerm) run(ctx context.Context, stop context.CancelFunc, f func(context.Context) error) {
	t.mu.Lock()
	t.done = make(chan struct{})
	t.mu.Unlock()
	err := f(ctx)
	t.mu.Lock()
	t.err = err
	close(t.done)
	t.mu.Unlock()
	if err != nil {
		stop()
	}
}

// wait blocks until a started term has ended and returns its error.
func (t *leaderTerm) wait() error {
	t.mu.Lock()
	done := t.done
	t.mu.Unlock()
	if done == nil {
		return nil
	}
	<-done
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}
