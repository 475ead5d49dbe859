package node_test

// Helpers of the node-agent integration tests (integration_*_test.go): a
// real etcd + kube-apiserver (pkg/testenv) holding the network objects,
// 2–3 node network namespaces with a private Open vSwitch each on the
// userspace datapath (pkg/lab/netlab), one node.Agent per node running
// in-process, and test pods wired into br0 the way the CNI server will.
//
// The agents run as goroutines of the test binary in the root network
// namespace: they reach OVSDB and br0 through the node's unix sockets
// (db.sock, br0.mgmt) and the API server on 127.0.0.1; tun0's address,
// routes, ip_forward and iptables are set inside the node namespace
// (Config.HostNetNS). "Killing" an agent is cancelling its context: the
// agent keeps no state outside OVS (pods are read back from OVSDB, flows
// from the store it rebuilds), so a fresh agent in the same process is what
// a kill -9 and a restart of sdn-node would give.

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
	"github.com/ovs-sdn/ovs-sdn/pkg/node"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb"
	"github.com/ovs-sdn/ovs-sdn/pkg/testenv"
)

const (
	itClusterCIDR = "10.128.0.0/14"
	itServiceCIDR = "172.30.0.0/16"
	itMTU         = 1450
	itEchoPort    = 8080
)

// itCluster is one integration lab: control plane, nodes, agents, pods.
type itCluster struct {
	t testing.TB
	// env is the control plane: env.Kubeconfig for out-of-process agents,
	// env.Dir to find (and stop) its processes.
	env  *testenv.Env
	cs   versioned.Interface
	kube kubernetes.Interface // Namespaces, Pods, NetworkPolicies; given to the agents
	// plugin is the ClusterNetwork's pluginName (the agents' mode).
	plugin string
	lab    *netlab.Lab
	nodes  []*itNode
	// fullSyncPeriod is given to every agent started (0: default).
	fullSyncPeriod time.Duration
	opts           itOptions
}

// itNode is a lab node with its HostSubnet and its current agent.
type itNode struct {
	*netlab.Node
	c      *itCluster
	name   string // HostSubnet / node name "node-<lab node>"
	subnet netip.Prefix

	// ungated: the node's agents use the test's own clients, without the
	// apigate of node.NewClients (client-go's back-off alone: the
	// baseline of BenchmarkAPIServerCatchUp).
	ungated bool

	mu    sync.Mutex
	agent *itAgent
	pods  int
}

// itAgent is one running node.Agent.
type itAgent struct {
	*node.Agent
	reg    *prometheus.Registry
	br     *countingBridge
	cancel context.CancelFunc
	done   chan error
	// ready is how long the agent took from Run to Ready.
	ready time.Duration
}

// countingBridge records the flow changes the agent applies.
type countingBridge struct {
	ovs.Bridge
	mu       sync.Mutex
	bundles  int
	changes  int
	replaces int
}

func (b *countingBridge) Bundle(ctx context.Context, changes []ovs.Change) error {
	err := b.Bridge.Bundle(ctx, changes)
	if err == nil && len(changes) > 0 {
		b.mu.Lock()
		b.bundles++
		b.changes += len(changes)
		b.mu.Unlock()
	}
	return err
}

func (b *countingBridge) ReplaceFlows(ctx context.Context, flows []ovs.Flow) error {
	err := b.Bridge.ReplaceFlows(ctx, flows)
	if err == nil {
		b.mu.Lock()
		b.replaces++
		b.mu.Unlock()
	}
	return err
}

// ReplaceAll is what the flow store's full sync calls (flows and groups);
// it counts like ReplaceFlows.
func (b *countingBridge) ReplaceAll(ctx context.Context, groups []ovs.GroupEntry, flows []ovs.Flow) error {
	err := b.Bridge.ReplaceAll(ctx, groups, flows)
	if err == nil {
		b.mu.Lock()
		b.replaces++
		b.mu.Unlock()
	}
	return err
}

// itTransport is the OpenFlow transport of the agents the integration
// tests start: the agent's default (openflow), or ofctl when the
// environment sets OVS_SDN_IT_TRANSPORT=ofctl.
func itTransport() string {
	if os.Getenv("OVS_SDN_IT_TRANSPORT") == node.TransportOfctl {
		return node.TransportOfctl
	}
	return node.TransportOpenFlow
}

// newITBridge returns a counting bridge over the integration transport to
// n's br0.
func (n *itNode) newITBridge() *countingBridge {
	target := "unix:" + n.RunDir + "/br0.mgmt"
	if itTransport() == node.TransportOfctl {
		return &countingBridge{Bridge: &ovs.OfctlBridge{Name: target}}
	}
	br := node.NewOpenFlowBridge(target, target)
	n.c.t.Cleanup(br.(interface{ Close() }).Close)
	return &countingBridge{Bridge: br}
}

func (b *countingBridge) counts() (bundles, changes, replaces int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bundles, b.changes, b.replaces
}

// newITCluster starts the control plane, creates ClusterNetwork "default"
// (pluginName), a lab with the given nodes (198.18.0.11, .12, …) and their
// HostSubnets (10.128.0.0/23, 10.129.0.0/23, …), and starts an agent per
// node, waiting until all are Ready. Everything is removed at test end, in
// reverse order, also when the test fails.
func newITCluster(t testing.TB, prefix, pluginName string, nodes int, fullSync time.Duration) *itCluster {
	t.Helper()
	return newITClusterWith(t, prefix, pluginName, nodes, fullSync, itOptions{})
}

// itOptions are the less common settings of an integration lab.
type itOptions struct {
	// labNeighbors: netlab writes the tunnel neighbours between the nodes
	// and the underlay is warmed with pings, as before the agents kept
	// them (issue 17). By default neither happens: the agents keep
	// ovs-vswitchd's tunnel neighbours alone, as on a real node
	// (netlab.WithoutTunnelNeighbors).
	labNeighbors bool
}

func newITClusterWith(t testing.TB, prefix, pluginName string, nodes int, fullSync time.Duration, o itOptions) *itCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs root, network namespaces, Open vSwitch and the control-plane binaries")
	}
	if os.Geteuid() != 0 {
		t.Skip("integration test: needs root")
	}
	env := testenv.StartT(t, testenv.Options{})
	cs, err := versioned.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	c := &itCluster{t: t, env: env, cs: cs, kube: kube, plugin: pluginName, fullSyncPeriod: fullSync, opts: o}
	ctx := context.Background()
	vx, mtu := uint32(4789), uint32(itMTU)
	_, err = cs.NetworkV1().ClusterNetworks().Create(ctx, &networkv1.ClusterNetwork{
		ObjectMeta:       metav1.ObjectMeta{Name: networkv1.ClusterNetworkDefault},
		Network:          itClusterCIDR,
		HostSubnetLength: 9,
		ServiceNetwork:   itServiceCIDR,
		PluginName:       pluginName,
		ClusterNetworks:  []networkv1.ClusterNetworkEntry{{CIDR: itClusterCIDR, HostSubnetLength: 9}},
		VXLANPort:        &vx,
		MTU:              &mtu,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create ClusterNetwork: %v", err)
	}

	if err := netlab.Sweep(prefix); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	var labOpts []netlab.Option
	if !o.labNeighbors {
		labOpts = append(labOpts, netlab.WithoutTunnelNeighbors())
	}
	lab, err := netlab.New(prefix, labOpts...)
	if err != nil {
		t.Fatalf("new lab: %v", err)
	}
	c.lab = lab
	t.Cleanup(func() {
		// Agents first (they hold OVSDB connections and exec ovs-ofctl
		// against the lab), then the lab; the control plane stops last
		// (registered first by StartT).
		for _, n := range c.nodes {
			n.stopAgent()
		}
		if t.Failed() {
			c.dumpState()
		}
		if err := lab.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	for i := 0; i < nodes; i++ {
		c.addNode()
	}
	// With labNeighbors, warm the underlay (ARP) between all nodes: the
	// userspace datapath drops the first tunnel packet towards a node it
	// has no neighbour for (the agents see to it otherwise).
	for _, a := range c.nodes {
		for _, b := range c.nodes {
			if a != b && o.labNeighbors {
				if err := a.Ping(b.IP.Addr(), 2); err != nil {
					t.Fatalf("underlay: %v", err)
				}
			}
		}
	}
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.startAgent() }()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, n := range c.nodes {
		t.Logf("agent %s: start → ready %v", n.name, n.currentAgent().ready.Round(time.Millisecond))
	}
	return c
}

// addNode adds the next lab node ("a", "b", … at 198.18.0.11, .12, …) and
// its HostSubnet (10.128.0.0/23, 10.129.0.0/23, …); it starts no agent.
func (c *itCluster) addNode() *itNode {
	c.t.Helper()
	i := len(c.nodes)
	ln := string(rune('a' + i))
	ip := netip.MustParsePrefix(fmt.Sprintf("198.18.0.%d/24", 11+i))
	nn, err := c.lab.AddNode(ln, ip)
	if err != nil {
		c.t.Fatalf("add node %s: %v", ln, err)
	}
	n := &itNode{Node: nn, c: c, name: "node-" + ln,
		subnet: netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/23", 128+i))}
	c.nodes = append(c.nodes, n)
	_, err = c.cs.NetworkV1().HostSubnets().Create(context.Background(), &networkv1.HostSubnet{
		ObjectMeta: metav1.ObjectMeta{Name: n.name},
		Host:       n.name, HostIP: ip.Addr().String(), Subnet: n.subnet.String(),
	}, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatalf("create HostSubnet %s: %v", n.name, err)
	}
	return n
}

// dumpState logs each node's flows and OVS logs (on failure).
func (c *itCluster) dumpState() {
	for _, n := range c.nodes {
		if out, err := n.Ofctl("dump-flows", netlab.PodBridge); err == nil {
			c.t.Logf("node %s flows:\n%s", n.Name, out)
		}
		c.t.Logf("node %s ovs-vswitchd.log (tail):\n%s", n.Name, n.LogTail(netlab.OVSVswitchd, 2000))
	}
}

// netNamespace creates (or updates) NetNamespace ns with netid, and creates
// Namespace ns (no labels) if it does not exist: the test pods' Pod objects
// live there.
func (c *itCluster) netNamespace(ns string, netid uint32) {
	c.t.Helper()
	ctx := context.Background()
	_, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		c.t.Fatalf("Namespace %s: %v", ns, err)
	}
	api := c.cs.NetworkV1().NetNamespaces()
	cur, err := api.Get(ctx, ns, metav1.GetOptions{})
	if err == nil {
		cur.NetID = netid
		_, err = api.Update(ctx, cur, metav1.UpdateOptions{})
	} else {
		_, err = api.Create(ctx, &networkv1.NetNamespace{
			ObjectMeta: metav1.ObjectMeta{Name: ns}, NetName: ns, NetID: netid}, metav1.CreateOptions{})
	}
	if err != nil {
		c.t.Fatalf("NetNamespace %s netid %d: %v", ns, netid, err)
	}
}

// agentConfig is the configuration of an agent on n. Its clients are
// built as sdn-node builds them (node.NewClients, behind an API gate
// living as long as ctx), unless n is ungated.
func (n *itNode) agentConfig(ctx context.Context, reg *prometheus.Registry, br ovs.Bridge) (node.Config, error) {
	network, kube := versioned.Interface(n.c.cs), kubernetes.Interface(n.c.kube)
	if !n.ungated {
		var err error
		if network, kube, err = node.NewClients(ctx, n.c.env.Config); err != nil {
			return node.Config{}, err
		}
	}
	return node.Config{
		NodeName:       n.name,
		NodeIP:         n.IP.Addr(),
		Network:        network,
		OVSDBEndpoint:  n.DBSock,
		Bridge:         br,
		DatapathType:   "netdev",
		HostNetNS:      n.NetNS.Path,
		FullSyncPeriod: n.c.fullSyncPeriod,
		Registry:       reg,
		// NetworkPolicy informers and Events (networkpolicy mode); the
		// recorder is the agent's own, through this client.
		Kube: kube,
	}, nil
}

// startAgent starts a new agent on n and waits until it is Ready (30 s).
func (n *itNode) startAgent() *itAgent {
	t := n.c.t
	reg := prometheus.NewRegistry()
	br := n.newITBridge()
	ctx, cancel := context.WithCancel(context.Background())
	cfg, err := n.agentConfig(ctx, reg, br)
	if err != nil {
		cancel()
		t.Errorf("agent %s: %v", n.name, err)
		return nil
	}
	a, err := node.New(cfg)
	if err != nil {
		cancel()
		t.Errorf("agent %s: %v", n.name, err)
		return nil
	}
	ag := &itAgent{Agent: a, reg: reg, br: br, cancel: cancel, done: make(chan error, 1)}
	start := time.Now()
	go func() { ag.done <- a.Run(ctx) }()
	deadline := time.After(30 * time.Second)
	for !a.Ready() {
		select {
		case err := <-ag.done:
			cancel()
			t.Errorf("agent %s exited before ready: %v", n.name, err)
			return nil
		case <-deadline:
			cancel()
			<-ag.done
			t.Errorf("agent %s not ready after 30 s", n.name)
			return nil
		case <-time.After(5 * time.Millisecond):
		}
	}
	ag.ready = time.Since(start)
	n.mu.Lock()
	n.agent = ag
	n.mu.Unlock()
	return ag
}

func (n *itNode) currentAgent() *itAgent {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.agent
}

// stopAgent cancels the agent's context and waits until Run returned.
func (n *itNode) stopAgent() {
	n.mu.Lock()
	a := n.agent
	n.agent = nil
	n.mu.Unlock()
	if a == nil {
		return
	}
	a.cancel()
	select {
	case err := <-a.done:
		if err != nil {
			n.c.t.Errorf("agent %s: Run: %v", n.name, err)
		}
	case <-time.After(15 * time.Second):
		n.c.t.Errorf("agent %s did not stop within 15 s", n.name)
	}
}

// addPod adds pod name of namespace ns (no labels) on n: addPodWith, then
// a wait until the agent has installed the pod's table-70 flow and, in
// networkpolicy mode, until the namespace's policy flows exist on n (the
// namespace default of PolicyEgress and PolicyIngress: without policies,
// that is what admits the pod's traffic).
func (n *itNode) addPod(ns, name string) *netlab.Pod {
	n.c.t.Helper()
	return n.addLabeledPod(ns, name, nil)
}

// addLabeledPod is addPod with Pod labels.
func (n *itNode) addLabeledPod(ns, name string, labels map[string]string) *netlab.Pod {
	n.c.t.Helper()
	p := n.addPodWith(ns, name, labels)
	n.waitFlow(fmt.Sprintf("table=70,ip,nw_dst=%s", p.IP.Addr()), true, 10*time.Second)
	if n.c.plugin == networkv1.NetworkPolicyPluginName {
		vnid := n.c.vnid(ns)
		n.waitFlow(fmt.Sprintf("table=%d,reg0=%d", ovs.TablePolicyEgress.ID, vnid), true, 10*time.Second)
		n.waitFlow(fmt.Sprintf("table=%d,reg1=%d", ovs.TablePolicyIngress.ID, vnid), true, 10*time.Second)
	}
	return p
}

// addPodWith creates Pod ns/name in the API (spec.nodeName n, labels,
// Running with status.podIP) and wires it into n's br0 with the next
// address of n's subnet (.2, .3, …), the pod identity the agent reads in
// the port's external_ids, and an on-link route for the cluster CIDR. It
// does not wait for any flow. The Pod object comes first, as with a
// kubelet: the agent's policy informer needs it for the labels (the
// agent takes a local pod's IP from its port, a remote pod's from
// status.podIPs).
func (n *itNode) addPodWith(ns, name string, labels map[string]string) *netlab.Pod {
	t := n.c.t
	t.Helper()
	ip := n.nextPodIP()
	n.c.createPod(ns, name, n.name, ip, labels)
	return n.plugPod(ns, name, ip)
}

// nextPodIP reserves the next pod address of n's subnet.
func (n *itNode) nextPodIP() netip.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.pods++
	ip := n.subnet.Addr().Next()
	for i := 0; i < n.pods; i++ {
		ip = ip.Next()
	}
	return ip
}

// plugPod creates the test pod's netns and its br0 port (netlab).
func (n *itNode) plugPod(ns, name string, ip netip.Addr) *netlab.Pod {
	t := n.c.t
	t.Helper()
	p, err := n.AddTestPod(name, netip.PrefixFrom(ip, n.subnet.Bits()), n.subnet.Addr().Next(), itMTU,
		netlab.WithRoutes(netip.MustParsePrefix(itClusterCIDR)),
		netlab.WithExternalIDs(map[string]string{
			ovsdb.ExternalIDPodNamespace: ns, ovsdb.ExternalIDPodName: name,
		}))
	if err != nil {
		t.Fatalf("add pod %s/%s: %v", ns, name, err)
	}
	return p
}

// createPod creates Pod ns/name on nodeName with labels and sets its
// status to Running with ip.
func (c *itCluster) createPod(ns, name, nodeName string, ip netip.Addr, labels map[string]string) {
	c.t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{NodeName: nodeName,
			Containers: []corev1.Container{{Name: "c", Image: "test.invalid/pause"}}},
	}
	pod, err := c.kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatalf("create Pod %s/%s: %v", ns, name, err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip.String(), PodIPs: []corev1.PodIP{{IP: ip.String()}}}
	if _, err := c.kube.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		c.t.Fatalf("Pod %s/%s status: %v", ns, name, err)
	}
}

// vnid is the NetID of NetNamespace ns.
func (c *itCluster) vnid(ns string) uint32 {
	c.t.Helper()
	nn, err := c.cs.NetworkV1().NetNamespaces().Get(context.Background(), ns, metav1.GetOptions{})
	if err != nil {
		c.t.Fatalf("NetNamespace %s: %v", ns, err)
	}
	return nn.NetID
}

// waitFlow waits until dump-flows with filter returns a flow (want) or
// none (!want).
func (n *itNode) waitFlow(filter string, want bool, timeout time.Duration) time.Duration {
	t := n.c.t
	t.Helper()
	start := time.Now()
	for {
		// A dump can fail for a moment after a test restarted
		// ovs-vswitchd (br0's management socket is refused until the
		// new daemon has re-created the bridge): that is "not yet",
		// reported only if it lasts the whole timeout.
		flows, err := n.tryDumpFlows(filter)
		if err == nil && (len(flows) > 0) == want {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			if err != nil {
				t.Fatalf("node %s: waiting %v for flows %q: %v", n.Name, timeout, filter, err)
			}
			t.Fatalf("node %s: flows %q present=%v after %v; want %v", n.Name, filter, !want, timeout, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tryDumpFlows is dumpFlows returning its error instead of failing the test.
func (n *itNode) tryDumpFlows(filter string) ([]ovs.DumpedFlow, error) {
	args := []string{"dump-flows", netlab.PodBridge}
	if filter != "" {
		args = append(args, filter)
	}
	out, err := n.Ofctl(args...)
	if err != nil {
		return nil, err
	}
	flows, err := ovs.ParseDump(out)
	if err != nil {
		return nil, fmt.Errorf("parse dump: %w\n%s", err, out)
	}
	return flows, nil
}

// dumpFlows dumps br0's flows (optionally filtered) parsed.
func (n *itNode) dumpFlows(filter string) []ovs.DumpedFlow {
	t := n.c.t
	t.Helper()
	flows, err := n.tryDumpFlows(filter)
	if err != nil {
		t.Fatalf("node %s: %v", n.Name, err)
	}
	return flows
}

// packets returns n_packets of the one flow on br0 with the table, priority
// and match of rule (ovs-ofctl syntax without actions, e.g.
// "table=20,priority=300,udp,tp_dst=4789").
func (n *itNode) packets(rule string) uint64 {
	t := n.c.t
	t.Helper()
	want, err := ovs.ParseDump(rule + " actions=drop")
	if err != nil || len(want) != 1 {
		t.Fatalf("parse %q: %v", rule, err)
	}
	var found []ovs.DumpedFlow
	for _, f := range n.dumpFlows(fmt.Sprintf("table=%d", want[0].Table.ID)) {
		if f.Key() == want[0].Key() {
			found = append(found, f)
		}
	}
	if len(found) != 1 {
		t.Fatalf("node %s: %d flows %q on br0, want 1", n.Name, len(found), rule)
	}
	return found[0].Stats.Packets
}

// fullSyncStats returns the count and total seconds of the agent's full
// syncs (ovs_sdn_sync_duration_seconds{kind="full"}).
func (a *itAgent) fullSyncStats(t *testing.T) (uint64, float64) {
	t.Helper()
	mfs, err := a.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ovs_sdn_sync_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelValue(m, "kind") == "full" {
				h := m.GetHistogram()
				return h.GetSampleCount(), h.GetSampleSum()
			}
		}
	}
	return 0, 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// reachable reports whether from reaches to: a TCP echo through the pod's
// ServeTCP server on itEchoPort (the server must run), within timeout.
func reachable(from, to *netlab.Pod, timeout time.Duration) error {
	got, err := from.TCPHello(to.IP.Addr(), itEchoPort, timeout)
	if err != nil {
		return err
	}
	if got != to.Name {
		return fmt.Errorf("tcp %s → %s: answered by %q", from.Name, to.Name, got)
	}
	return nil
}

// pingOK reports whether at least one of count pings is answered.
func pingOK(from, to *netlab.Pod, count int) bool {
	st, err := from.PingStats(to.IP.Addr(), count, 0)
	return err == nil && st.Received > 0
}

// median of durations.
func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// flowsByKey indexes a dump by flow key (table, priority, match).
func flowsByKey(flows []ovs.DumpedFlow) map[string]ovs.DumpedFlow {
	m := make(map[string]ovs.DumpedFlow, len(flows))
	for _, f := range flows {
		m[f.Key()] = f
	}
	return m
}

// joinLines is for messages.
func joinLines(ss []string) string { return strings.Join(ss, "\n") }

// histogram returns the count and sum of the agent's histogram name (its
// first series).
func (a *itAgent) histogram(t *testing.T, name string) (uint64, float64) {
	t.Helper()
	mfs, err := a.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	return 0, 0
}
