package controller_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned"
	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/controller"
	"github.com/ovs-sdn/ovs-sdn/pkg/testenv"
)

const leaseNamespace = "ovs-sdn"

// cluster is a real API server with clients for the test.
type cluster struct {
	env  *testenv.Env
	kube kubernetes.Interface
	net  versioned.Interface
}

// startCluster runs etcd + kube-apiserver (skipped under -short) and creates
// the Lease namespace.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("acceptance test against a real kube-apiserver; skipped with -short")
	}
	env := testenv.StartT(t, testenv.Options{})
	c := &cluster{env: env, kube: kubernetes.NewForConfigOrDie(fastConfig(env.Config)), net: versioned.NewForConfigOrDie(fastConfig(env.Config))}
	c.createNamespace(t, leaseNamespace)
	return c
}

func fastConfig(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 200, 400
	return cfg
}

func (c *cluster) createClusterNetwork(t *testing.T, plugin string, entries ...networkv1.ClusterNetworkEntry) {
	t.Helper()
	cn := &networkv1.ClusterNetwork{
		ObjectMeta:      metav1.ObjectMeta{Name: networkv1.ClusterNetworkDefault},
		ClusterNetworks: entries,
		ServiceNetwork:  "172.30.0.0/16",
		PluginName:      plugin,
	}
	if _, err := c.net.NetworkV1().ClusterNetworks().Create(context.Background(), cn, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating ClusterNetwork: %v", err)
	}
}

// runningController is an in-process controller.Run.
type runningController struct {
	registry *prometheus.Registry
	status   *controller.Status
	done     chan error
	cancel   context.CancelFunc
}

// startController runs controller.Run with short leases until the test ends.
func (c *cluster) startController(t *testing.T, identity string, mutate func(*controller.Options)) *runningController {
	t.Helper()
	rc := &runningController{registry: prometheus.NewRegistry(), status: &controller.Status{}, done: make(chan error, 1)}
	opts := controller.Options{
		Kube: c.kube, Network: c.net, Identity: identity,
		LeaseNamespace: leaseNamespace, LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second,
		Registry: rc.registry, Status: rc.status, Rand: rand.New(rand.NewPCG(1, 2)), MaxRetryDelay: 2 * time.Second,
	}
	if mutate != nil {
		mutate(&opts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc.cancel = cancel
	go func() { rc.done <- controller.Run(ctx, opts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-rc.done:
			if err != nil {
				t.Errorf("controller.Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("controller.Run did not return within 15s of cancellation")
		}
	})
	return rc
}

// stop cancels Run and waits for it to return (a controller restart in one
// test); the cleanup registered by startController then finds it stopped.
func (rc *runningController) stop(t *testing.T) {
	t.Helper()
	rc.cancel()
	select {
	case err := <-rc.done:
		if err != nil {
			t.Errorf("controller.Run: %v", err)
		}
		rc.done <- nil
	case <-time.After(15 * time.Second):
		t.Fatalf("controller.Run did not return within 15s of cancellation")
	}
}

// running fails the test if Run has returned.
func (rc *runningController) running(t *testing.T) {
	t.Helper()
	select {
	case err := <-rc.done:
		rc.done <- err
		t.Fatalf("controller.Run returned: %v", err)
	default:
	}
}

// metric returns the value of a gauge or counter (summed over labels).
func (rc *runningController) metric(t *testing.T, name string) float64 {
	t.Helper()
	v, ok := rc.metricIfRegistered(t, name)
	if !ok {
		t.Fatalf("metric %s not registered", name)
	}
	return v
}

// metricIfRegistered is metric for a controller that may still be starting
// (metrics are registered once the ClusterNetwork has been read).
func (rc *runningController) metricIfRegistered(t *testing.T, name string) (float64, bool) {
	t.Helper()
	families, err := rc.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		sum := 0.0
		for _, m := range f.GetMetric() {
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
		return sum, true
	}
	return 0, false
}

func (c *cluster) createNode(t testing.TB, name, ip string) *corev1.Node {
	t.Helper()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	n, err := c.kube.CoreV1().Nodes().Create(context.Background(), node, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating node %s: %v", name, err)
	}
	if ip == "" {
		return n
	}
	return c.setNodeIP(t, n, ip)
}

func (c *cluster) setNodeIP(t testing.TB, n *corev1.Node, ip string) *corev1.Node {
	t.Helper()
	n = n.DeepCopy()
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: n.Name}, {Type: corev1.NodeInternalIP, Address: ip}}
	n, err := c.kube.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("setting node %s InternalIP: %v", n.Name, err)
	}
	return n
}

func (c *cluster) deleteNode(t testing.TB, name string) {
	t.Helper()
	if err := c.kube.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting node %s: %v", name, err)
	}
}

func (c *cluster) createNamespace(t testing.TB, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := c.kube.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
}

// deleteNamespace deletes a namespace and, as there is no namespace
// controller here, finalizes it so that it is gone at once.
func (c *cluster) deleteNamespace(t testing.TB, name string) {
	t.Helper()
	ctx := context.Background()
	if err := c.kube.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting namespace %s: %v", name, err)
	}
	ns, err := c.kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		t.Fatalf("namespace %s: %v", name, err)
	}
	ns.Spec.Finalizers = nil
	if _, err := c.kube.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("finalizing namespace %s: %v", name, err)
	}
}

// eventually polls cond every 100ms until it returns "" or timeout passes,
// then fails with the last explanation.
func eventually(t testing.TB, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *cluster) hostSubnets(t testing.TB) map[string]networkv1.HostSubnet {
	t.Helper()
	list, err := c.net.NetworkV1().HostSubnets().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]networkv1.HostSubnet{}
	for _, hs := range list.Items {
		out[hs.Name] = hs
	}
	return out
}

func (c *cluster) netNamespaces(t testing.TB) map[string]networkv1.NetNamespace {
	t.Helper()
	list, err := c.net.NetworkV1().NetNamespaces().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]networkv1.NetNamespace{}
	for _, n := range list.Items {
		out[n.Name] = n
	}
	return out
}

func (c *cluster) netNamespace(t testing.TB, name string) *networkv1.NetNamespace {
	t.Helper()
	n, err := c.net.NetworkV1().NetNamespaces().Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// converged explains how HostSubnets and NetNamespaces differ from one per
// Node (with a distinct valid subnet in cidrs) and one per Namespace (with
// distinct netids >= 10 except "default" = 0), or returns "".
func (c *cluster) converged(t testing.TB, cidrs []netip.Prefix, hostBits int, withNetNamespaces bool) string {
	t.Helper()
	ctx := context.Background()
	nodes, err := c.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hss := c.hostSubnets(t)
	if why := checkHostSubnets(nodes.Items, hss, cidrs, hostBits); why != "" || !withNetNamespaces {
		return why
	}
	namespaces, err := c.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{FieldSelector: fields.Everything().String()})
	if err != nil {
		t.Fatal(err)
	}
	return checkNetNamespaces(namespaces.Items, c.netNamespaces(t))
}

func checkHostSubnets(nodes []corev1.Node, hss map[string]networkv1.HostSubnet, cidrs []netip.Prefix, hostBits int) string {
	if len(nodes) != len(hss) {
		return fmt.Sprintf("%d nodes but %d HostSubnets", len(nodes), len(hss))
	}
	seen := map[string]string{}
	for _, n := range nodes {
		hs, ok := hss[n.Name]
		if !ok {
			return fmt.Sprintf("node %s has no HostSubnet", n.Name)
		}
		if hs.Annotations[networkv1.NodeUIDAnnotation] != string(n.UID) || hs.Host != n.Name {
			return fmt.Sprintf("HostSubnet %s has node-uid %q host %q, want %q %q", hs.Name, hs.Annotations[networkv1.NodeUIDAnnotation], hs.Host, n.UID, n.Name)
		}
		if other, dup := seen[hs.Subnet]; dup {
			return fmt.Sprintf("DUPLICATE subnet %s on HostSubnets %s and %s", hs.Subnet, other, hs.Name)
		}
		seen[hs.Subnet] = hs.Name
		p, err := netip.ParsePrefix(hs.Subnet)
		inside := false
		for _, cidr := range cidrs {
			inside = inside || (err == nil && cidr.Contains(p.Addr()) && p.Bits() == 32-hostBits)
		}
		if !inside {
			return fmt.Sprintf("HostSubnet %s subnet %q is not a node subnet of %v", hs.Name, hs.Subnet, cidrs)
		}
	}
	return ""
}

func checkNetNamespaces(namespaces []corev1.Namespace, netnss map[string]networkv1.NetNamespace) string {
	if len(namespaces) != len(netnss) {
		return fmt.Sprintf("%d namespaces but %d NetNamespaces", len(namespaces), len(netnss))
	}
	seen := map[uint32]string{}
	for _, ns := range namespaces {
		netns, ok := netnss[ns.Name]
		if !ok {
			return fmt.Sprintf("namespace %s has no NetNamespace", ns.Name)
		}
		if ns.Name == "default" {
			if netns.NetID != 0 {
				return fmt.Sprintf("NetNamespace default has netid %d, want 0", netns.NetID)
			}
			continue
		}
		if netns.NetID < 10 {
			return fmt.Sprintf("NetNamespace %s has netid %d < 10", ns.Name, netns.NetID)
		}
		if other, dup := seen[netns.NetID]; dup {
			return fmt.Sprintf("DUPLICATE netid %d on NetNamespaces %s and %s", netns.NetID, other, ns.Name)
		}
		seen[netns.NetID] = ns.Name
	}
	return ""
}

// eventsFor returns "reason: message" of the Events about the named object.
func (c *cluster) eventsFor(t testing.TB, kind, name string) []string {
	t.Helper()
	list, err := c.kube.CoreV1().Events("").List(context.Background(), metav1.ListOptions{
		FieldSelector: fields.AndSelectors(fields.OneTermEqualSelector("involvedObject.kind", kind),
			fields.OneTermEqualSelector("involvedObject.name", name)).String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		out = append(out, e.Type+" "+e.Reason+": "+e.Message)
	}
	sort.Strings(out)
	return out
}

// hasEvent reports whether some event of the object contains all parts.
func hasEvent(events []string, parts ...string) bool {
	for _, e := range events {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(e, p)
		}
		if all {
			return true
		}
	}
	return false
}

// documentedSubnet is the i-th node subnet of 10.128.0.0/14 with 9 host
// bits in OpenShift's order (reference §9.2), computed independently of
// pkg/subnet: the higher octet varies first.
func documentedSubnet(i int) string {
	return fmt.Sprintf("10.%d.%d.0/23", 128+i%4, (i/4)*2)
}

var errStop = errors.New("stop")

var metavListAll = metav1.ListOptions{}

func errorsIsInvalid(err error) bool { return errors.Is(err, clusternetwork.ErrInvalid) }

// waitMetric waits up to 10 s for the metric name to pass check. The controller updates
// its gauges and counters after the API writes a test observes, so a metric read right
// after a write may still be old.
func (rc *runningController) waitMetric(t *testing.T, name string, check metricCheck) {
	t.Helper()
	eventually(t, 10*time.Second, func() string {
		if v, _ := rc.metricIfRegistered(t, name); !check.ok(v) {
			return fmt.Sprintf("%s = %v, want %s", name, v, check.want)
		}
		return ""
	})
}

// metricCheck is a condition on a metric's value, described for failure messages.
type metricCheck struct {
	want string
	ok   func(float64) bool
}

func equals(want float64) metricCheck {
	return metricCheck{fmt.Sprint(want), func(v float64) bool { return v == want }}
}

func atLeast(min float64) metricCheck {
	return metricCheck{fmt.Sprintf(">= %v", min), func(v float64) bool { return v >= min }}
}

// waitEvent waits up to 10 s for an Event about kind/name whose "reason: message"
// contains every part (the event broadcaster writes Events asynchronously).
func (c *cluster) waitEvent(t *testing.T, kind, name string, parts ...string) {
	t.Helper()
	eventually(t, 10*time.Second, func() string {
		if ev := c.eventsFor(t, kind, name); !hasEvent(ev, parts...) {
			return fmt.Sprintf("no Event on %s %s with %q: %q", kind, name, parts, ev)
		}
		return ""
	})
}
