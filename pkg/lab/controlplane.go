package lab

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned"
	"github.com/ovs-sdn/ovs-sdn/pkg/controller"
	"github.com/ovs-sdn/ovs-sdn/pkg/testenv"
)

// The lab's address plan. Underlay and node IPs stay inside the lab's
// namespaces; the cluster and service CIDRs exist only inside them too.
const (
	ClusterCIDR      = "10.128.0.0/14"
	HostSubnetLength = 9 // /23 per node
	ServiceCIDR      = testenv.ServiceClusterIPRange
	// controllerHost names the netns the controller's egress probes dial
	// from (Lab.ControllerNetNS).
	controllerHost = "ctl"
)

// ControllerUnderlayIP is the address of the controller's probe host on the
// underlay: above the node range (.11 … .210), below the external host (.254).
var ControllerUnderlayIP = netip.MustParsePrefix("198.18.0.250/24")

func (l *Lab) startControlPlane(ctx context.Context) error {
	env, err := testenv.Start(ctx, l.controlPlaneOptions())
	if err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	l.Env = env
	if l.Kube, err = kubernetes.NewForConfig(env.Config); err != nil {
		return err
	}
	if l.Network, err = versioned.NewForConfig(env.Config); err != nil {
		return err
	}
	if l.realRuntime() {
		return nil // the manifests create the namespace and ClusterNetwork
	}
	if err := l.EnsureNamespaces(ctx, nil, controller.DefaultLeaseNamespace); err != nil {
		return err
	}
	return l.createClusterNetwork(ctx)
}

func (l *Lab) createClusterNetwork(ctx context.Context) error {
	port, mtu := uint32(networkv1.DefaultVXLANPort), uint32(networkv1.DefaultMTU)
	cn := &networkv1.ClusterNetwork{
		ObjectMeta:       metav1.ObjectMeta{Name: networkv1.ClusterNetworkDefault},
		Network:          ClusterCIDR,
		HostSubnetLength: HostSubnetLength,
		ServiceNetwork:   ServiceCIDR,
		PluginName:       l.cfg.PluginName,
		ClusterNetworks:  []networkv1.ClusterNetworkEntry{{CIDR: ClusterCIDR, HostSubnetLength: HostSubnetLength}},
		VXLANPort:        &port,
		MTU:              &mtu,
	}
	_, err := l.Network.NetworkV1().ClusterNetworks().Create(ctx, cn, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating clusternetwork %q: %w", cn.Name, err)
	}
	return nil
}

// controllerRun is the in-process sdn-controller.
type controllerRun struct {
	cancel context.CancelFunc
	done   chan error
}

func (l *Lab) startController(context.Context) error {
	ctx, cancel := context.WithCancel(context.Background())
	c := &controllerRun{cancel: cancel, done: make(chan error, 1)}
	l.ctl = c
	go func() {
		c.done <- controller.Run(ctx, controller.Options{
			Kube: l.Kube, Network: l.Network, Identity: "sdn-lab",
			LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
			EgressDial: l.ControllerNetNS.DialContext,
		})
	}()
	return nil
}

func (c *controllerRun) stop(timeout time.Duration) error {
	c.cancel()
	select {
	case err := <-c.done:
		if err != nil {
			return fmt.Errorf("sdn-controller: %w", err)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("sdn-controller did not stop within %v", timeout)
	}
}

// EnsureNamespaces creates the namespaces (label name=<namespace>, as the
// demo's namespaceSelector expects, plus labels) unless they exist.
func (l *Lab) EnsureNamespaces(ctx context.Context, labels map[string]string, names ...string) error {
	for _, n := range names {
		lb := map[string]string{"name": n}
		for k, v := range labels {
			lb[k] = v
		}
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: lb}}
		_, err := l.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating namespace %q: %w", n, err)
		}
	}
	return nil
}

// UsesVNIDs reports whether the lab's mode gives namespaces NetNamespaces.
func (l *Lab) UsesVNIDs() bool { return l.cfg.PluginName != networkv1.SingleTenantPluginName }

// WaitNetNamespaces waits until every namespace has its NetNamespace and
// returns their VNIDs.
func (l *Lab) WaitNetNamespaces(ctx context.Context, names ...string) (map[string]uint32, error) {
	ids := map[string]uint32{}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, n := range names {
			nn, err := l.Network.NetworkV1().NetNamespaces().Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			ids[n] = nn.NetID
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for the NetNamespaces of %v: %w", names, err)
	}
	return ids, nil
}
