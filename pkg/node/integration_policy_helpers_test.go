package node_test

// NetworkPolicy on real OVS: two netlab nodes, in-process agents in
// networkpolicy mode with a Kubernetes client, a real API server holding
// Namespaces, Pods and NetworkPolicies. Every verdict is a TCP connection
// between pod network namespaces through the agents' flows; "blocked"
// always means the connect timed out (a silent drop), never a refusal.

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

const (
	polNSA, polVNIDA = "np-a", 21
	polNSB, polVNIDB = "np-b", 22
	// polProbeTimeout bounds one probe; a connect not answered within it
	// counts as dropped. Cross-node connects take ~1 ms here.
	polProbeTimeout = 150 * time.Millisecond
	// polConverge bounds how long realization may take in the checks.
	polConverge = 3 * time.Second
)

// verdict is the outcome of one TCP connect.
type verdict int

const (
	vOpen        verdict = iota // connected
	vRefused                    // RST: the SYN got through, nothing listens
	vTimeout                    // silently dropped
	vUnreachable                // EHOSTUNREACH (no ARP answer) or another error
)

func (v verdict) String() string {
	return [...]string{"open", "refused", "timeout", "unreachable"}[v]
}

// probe connects from pod from to dst:itEchoPort once.
func probe(from *netlab.Pod, dst netip.Addr, timeout time.Duration) verdict {
	var conn net.Conn
	err := ns.WithNetNSPath(from.NetNS.Path, func(ns.NetNS) (err error) {
		conn, err = net.DialTimeout("tcp4", netip.AddrPortFrom(dst, itEchoPort).String(), timeout)
		return err
	})
	var ne net.Error
	switch {
	case err == nil:
		conn.Close()
		return vOpen
	case errors.Is(err, syscall.ECONNREFUSED):
		return vRefused
	case errors.As(err, &ne) && ne.Timeout():
		return vTimeout
	}
	return vUnreachable
}

// polPair is one probe direction.
type polPair struct{ from, to *netlab.Pod }

func (p polPair) String() string { return p.from.Name + " → " + p.to.Name }

// waitVerdict waits until p gives want and returns the start time of the
// first probe that did; it fails the test after polConverge. A timeout
// must repeat in the next probe (one slow connect is not a drop).
func waitVerdict(t *testing.T, p polPair, want verdict) time.Time {
	t.Helper()
	if want == vOpen {
		return waitOpen(t, p)
	}
	deadline := time.Now().Add(polConverge)
	var first time.Time
	streak := 0
	last := vUnreachable
	for time.Now().Before(deadline) {
		start := time.Now()
		last = probe(p.from, p.to.IP.Addr(), polProbeTimeout)
		if last != want {
			streak = 0
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if streak++; streak == 1 {
			first = start
		}
		if streak == 2 {
			return first
		}
	}
	t.Errorf("%s: still %v after %v, want %v", p, last, polConverge, want)
	return time.Time{}
}

// waitOpen starts a probe every 10 ms, without waiting for the previous
// one, until one connects, and returns the earliest start of a connected
// probe. A probe waiting out its timeout would otherwise hide the moment
// the path opened by up to polProbeTimeout.
func waitOpen(t *testing.T, p polPair) time.Time {
	t.Helper()
	type result struct {
		start time.Time
		v     verdict
	}
	results := make(chan result, 2*int(polConverge/(10*time.Millisecond)))
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(polConverge)
	var first time.Time
	inflight := 0
	last := vUnreachable
	for {
		select {
		case <-tick.C:
			if first.IsZero() && time.Now().Before(deadline) {
				inflight++
				go func() {
					start := time.Now()
					results <- result{start, probe(p.from, p.to.IP.Addr(), polProbeTimeout)}
				}()
			}
		case r := <-results:
			inflight--
			last = r.v
			if r.v == vOpen && (first.IsZero() || r.start.Before(first)) {
				first = r.start
			}
		}
		if inflight == 0 && (!first.IsZero() || time.Now().After(deadline)) {
			break
		}
	}
	if first.IsZero() {
		t.Errorf("%s: still %v after %v, want open", p, last, polConverge)
	}
	return first
}

// waitCounted waits until counter() exceeds before: OVS folds datapath
// statistics into flow counters only every few hundred milliseconds.
func waitCounted(t *testing.T, what string, before uint64, counter func() uint64) uint64 {
	t.Helper()
	deadline := time.Now().Add(polConverge)
	for {
		after := counter()
		if after > before {
			return after
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: counter still %d after %v", what, after, polConverge)
			return after
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkVerdict probes p once and fails unless it gives want. A timeout is
// confirmed with a second probe with a longer timeout (a loaded machine).
func checkVerdict(t *testing.T, p polPair, want verdict) {
	t.Helper()
	got := probe(p.from, p.to.IP.Addr(), polProbeTimeout)
	if got != want && got == vTimeout {
		got = probe(p.from, p.to.IP.Addr(), time.Second)
	}
	if got != want {
		t.Errorf("%s: %v, want %v", p, got, want)
	}
}

// polCluster is the policy lab: namespaces np-a (team=a) and np-b
// (team=b); on node a the target web (np-a, app=web) and the sources aLocal
// (np-a) and bLocal (np-b); on node b the sources aRemote (np-a) and
// bRemote (np-b). Every pod runs the echo server.
type polCluster struct {
	*itCluster
	a, b                                  *itNode
	web, aLocal, bLocal, aRemote, bRemote *netlab.Pod
}

func newPolCluster(t *testing.T) *polCluster {
	c := &polCluster{itCluster: newITCluster(t, "itpol", networkv1.NetworkPolicyPluginName, 2, 0)}
	c.a, c.b = c.nodes[0], c.nodes[1]
	c.netNamespace(polNSA, polVNIDA)
	c.netNamespace(polNSB, polVNIDB)
	c.labelNamespace(polNSA, `{"metadata":{"labels":{"team":"a"}}}`)
	c.labelNamespace(polNSB, `{"metadata":{"labels":{"team":"b"}}}`)
	client := map[string]string{"app": "client"}
	c.web = c.a.addLabeledPod(polNSA, "web", map[string]string{"app": "web"})
	c.aLocal = c.a.addLabeledPod(polNSA, "alocal", client)
	c.bLocal = c.a.addLabeledPod(polNSB, "blocal", client)
	c.aRemote = c.b.addLabeledPod(polNSA, "aremote", client)
	c.bRemote = c.b.addLabeledPod(polNSB, "bremote", client)
	for _, p := range []*netlab.Pod{c.web, c.aLocal, c.bLocal, c.aRemote, c.bRemote} {
		if _, err := p.ServeTCP(itEchoPort); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// toWeb is every source → web: same node and across nodes, same and other
// namespace.
func (c *polCluster) toWeb() []polPair {
	return []polPair{{c.aLocal, c.web}, {c.bLocal, c.web}, {c.aRemote, c.web}, {c.bRemote, c.web}}
}

// labelNamespace merge-patches Namespace ns.
func (c *itCluster) labelNamespace(ns, patch string) {
	c.t.Helper()
	_, err := c.kube.CoreV1().Namespaces().Patch(context.Background(), ns, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		c.t.Fatalf("patch Namespace %s: %v", ns, err)
	}
}

// patchPod merge-patches Pod ns/name.
func (c *itCluster) patchPod(t *testing.T, ns, name, patch string) {
	t.Helper()
	_, err := c.kube.CoreV1().Pods(ns).Patch(context.Background(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("patch Pod %s/%s: %v", ns, name, err)
	}
}

// createPolicy creates np and returns the time just before the call.
func (c *itCluster) createPolicy(t *testing.T, np *networkingv1.NetworkPolicy) time.Time {
	t.Helper()
	t0 := time.Now()
	if _, err := c.kube.NetworkingV1().NetworkPolicies(np.Namespace).Create(context.Background(), np, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create NetworkPolicy %s/%s: %v", np.Namespace, np.Name, err)
	}
	return t0
}

// deletePolicy deletes ns/name and returns the time just before the call.
func (c *itCluster) deletePolicy(t *testing.T, ns, name string) time.Time {
	t.Helper()
	t0 := time.Now()
	if err := c.kube.NetworkingV1().NetworkPolicies(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete NetworkPolicy %s/%s: %v", ns, name, err)
	}
	return t0
}

// ingressPolicy selects pods matching podLabels (nil: all) in ns for
// ingress and allows the peers (none: deny).
func ingressPolicy(ns, name string, podLabels map[string]string, peers ...networkingv1.NetworkPolicyPeer) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: podLabels},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
	if len(peers) > 0 {
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: peers}}
	}
	return np
}

func nsPeer(l map[string]string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: l}}
}

func podPeer(l map[string]string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: l}}
}

// flowPackets sums n_packets of n's flows that match filter (dump-flows
// syntax) and keep, and returns how many there were.
func (n *itNode) flowPackets(t *testing.T, filter string, keep func(ovs.DumpedFlow) bool) (uint64, int) {
	t.Helper()
	out, err := n.Ofctl("dump-flows", netlab.PodBridge, filter)
	if err != nil {
		t.Fatalf("node %s: %v", n.Name, err)
	}
	flows, err := ovs.ParseDump(out)
	if err != nil {
		t.Fatalf("node %s: parse dump: %v", n.Name, err)
	}
	var sum uint64
	found := 0
	for _, f := range flows {
		if keep == nil || keep(f) {
			sum += f.Stats.Packets
			found++
		}
	}
	return sum, found
}

// isNamespaceDrop is the namespace-default drop of PolicyIngress (p60).
func isNamespaceDrop(f ovs.DumpedFlow) bool {
	return f.Priority == 60 && strings.HasSuffix(f.String(), "actions=drop")
}

// waitFlows waits until n has a flow matching filter and keep.
func (n *itNode) waitFlows(t *testing.T, filter string, keep func(ovs.DumpedFlow) bool) {
	t.Helper()
	deadline := time.Now().Add(polConverge)
	for {
		if _, found := n.flowPackets(t, filter, keep); found > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s: no flow %q after %v", n.Name, filter, polConverge)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
