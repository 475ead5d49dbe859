// Package lab runs sdn-lab: a cluster built from real components on one machine.
//
// Today the lab is the control plane only: real etcd + kube-apiserver +
// kube-controller-manager (pkg/testenv) with the network CRDs, the
// ClusterNetwork, the real sdn-controller (in process) and N registered Nodes,
// so that HostSubnet and NetNamespace allocation, `sdnctl get` and
// `sdnctl pod-network` can be tried against it with kubectl conventions. The
// node netns with their own Open vSwitch, the node agent, the CNI plugin and
// the kubelet stand-in (the pkg/lab/netlab building blocks exist) join the lab
// in a later step; Up says so when it starts.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned"
	"github.com/ovs-sdn/ovs-sdn/pkg/controller"
	"github.com/ovs-sdn/ovs-sdn/pkg/testenv"
)

// DefaultStateDir holds the running lab's data, logs, kubeconfig and pidfile.
const DefaultStateDir = "/run/sdn-lab"

// Config describes the lab to bring up.
type Config struct {
	Nodes      int
	PluginName string // one of the networkv1 plugin names
	StateDir   string
	Demo       bool
	Out        io.Writer // progress and instructions
}

// Lab is a running lab.
type Lab struct {
	Env     *testenv.Env
	Kube    kubernetes.Interface
	Network versioned.Interface
	cfg     Config
	stop    context.CancelFunc
	ctlDone chan error
}

// Up starts the lab and returns once every Node has its HostSubnet (and, with
// Demo, the demo namespaces their NetNamespaces). Close stops it.
func Up(ctx context.Context, cfg Config) (*Lab, error) {
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	if err := claimStateDir(cfg.StateDir); err != nil {
		return nil, err
	}
	env, err := testenv.Start(ctx, testenv.Options{ControllerManager: true, Dir: filepath.Join(cfg.StateDir, "control-plane")})
	if err != nil {
		os.Remove(pidFile(cfg.StateDir))
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	l := &Lab{Env: env, cfg: cfg, ctlDone: make(chan error, 1)}
	if err := l.start(ctx); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (l *Lab) start(ctx context.Context) error {
	var err error
	if l.Kube, err = kubernetes.NewForConfig(l.Env.Config); err != nil {
		return err
	}
	if l.Network, err = versioned.NewForConfig(l.Env.Config); err != nil {
		return err
	}
	if err := l.ensureNamespaces(ctx, controller.DefaultLeaseNamespace); err != nil {
		return err
	}
	if err := l.createClusterNetwork(ctx); err != nil {
		return err
	}
	ctlCtx, cancel := context.WithCancel(context.Background())
	l.stop = cancel
	go func() {
		l.ctlDone <- controller.Run(ctlCtx, controller.Options{
			Kube: l.Kube, Network: l.Network, Identity: "sdn-lab",
			LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
		})
	}()
	if err := l.registerNodes(ctx); err != nil {
		return err
	}
	if l.cfg.Demo {
		return l.createNamespaces(ctx, "proj1", "proj2")
	}
	return nil
}

func (l *Lab) createClusterNetwork(ctx context.Context) error {
	port, mtu := networkv1.DefaultVXLANPort, networkv1.DefaultMTU
	cn := &networkv1.ClusterNetwork{
		ObjectMeta:       metav1.ObjectMeta{Name: networkv1.ClusterNetworkDefault},
		Network:          "10.128.0.0/14",
		HostSubnetLength: 9,
		ServiceNetwork:   testenv.ServiceClusterIPRange,
		PluginName:       l.cfg.PluginName,
		ClusterNetworks:  []networkv1.ClusterNetworkEntry{{CIDR: "10.128.0.0/14", HostSubnetLength: 9}},
		VXLANPort:        &port,
		MTU:              &mtu,
	}
	_, err := l.Network.NetworkV1().ClusterNetworks().Create(ctx, cn, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating clusternetwork %q: %w", cn.Name, err)
	}
	return nil
}

// registerNodes creates the Node objects (node IPs from the lab underlay
// 198.18.0.0/24) and waits until each has a HostSubnet.
func (l *Lab) registerNodes(ctx context.Context) error {
	for i := 1; i <= l.cfg.Nodes; i++ {
		ip := netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)})
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "node" + strconv.Itoa(i)},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: ip.String()}}},
		}
		created, err := l.Kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("creating node %q: %w", node.Name, err)
		}
		// Addresses live in status, which create ignores; kube-controller-manager
		// may update the node meanwhile, hence the retry.
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := l.Kube.CoreV1().Nodes().Get(ctx, created.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur.Status.Addresses = node.Status.Addresses
			_, err = l.Kube.CoreV1().Nodes().UpdateStatus(ctx, cur, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			return fmt.Errorf("setting node %q address: %w", node.Name, err)
		}
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := l.Network.NetworkV1().HostSubnets().List(ctx, metav1.ListOptions{})
		return err == nil && len(list.Items) >= l.cfg.Nodes, nil
	})
}

func (l *Lab) createNamespaces(ctx context.Context, names ...string) error {
	if err := l.ensureNamespaces(ctx, names...); err != nil {
		return err
	}
	if l.cfg.PluginName == networkv1.SingleTenantPluginName {
		return nil
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, n := range names {
			if _, err := l.Network.NetworkV1().NetNamespaces().Get(ctx, n, metav1.GetOptions{}); err != nil {
				return false, nil
			}
		}
		return true, nil
	})
}

func (l *Lab) ensureNamespaces(ctx context.Context, names ...string) error {
	for _, n := range names {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"name": n}}}
		if _, err := l.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating namespace %q: %w", n, err)
		}
	}
	return nil
}

// Close stops the controller and the control plane and removes the state
// directory. It is idempotent.
func (l *Lab) Close() error {
	if l.stop != nil {
		l.stop()
		select {
		case <-l.ctlDone:
		case <-time.After(10 * time.Second):
		}
		l.stop = nil
	}
	err := l.Env.Stop()
	return errors.Join(err, os.RemoveAll(l.cfg.StateDir))
}

func pidFile(dir string) string { return filepath.Join(dir, "sdn-lab.pid") }

// claimStateDir records this process as the lab's owner, refusing when
// another live sdn-lab owns it.
func claimStateDir(dir string) error {
	if pid, ok := runningPID(dir); ok {
		return fmt.Errorf("an sdn-lab (pid %d) is already running with state in %s; run 'sdn-lab down' first", pid, dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(pidFile(dir), []byte(strconv.Itoa(os.Getpid())), 0o600)
}

func runningPID(dir string) (int, bool) {
	b, err := os.ReadFile(pidFile(dir))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(string(b))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, syscall.Kill(pid, 0) == nil
}

// Down stops the lab running with state in dir (SIGTERM, then SIGKILL after
// the timeout; its control-plane processes die with it) and removes the
// directory. A lab that is not running is not an error.
func Down(dir string, timeout time.Duration) error {
	if dir == "" {
		dir = DefaultStateDir
	}
	if pid, ok := runningPID(dir); ok {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(timeout)
		for time.Now().Before(deadline) && syscall.Kill(pid, 0) == nil {
			time.Sleep(100 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return os.RemoveAll(dir)
}
