package e2e

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
	"github.com/ovs-sdn/ovs-sdn/pkg/sdnctl"
)

// mcRealize bounds the wait for a policy, pod or node change to reach the
// datagrams (sdnctl's enable/disable waits for the flows itself).
const mcRealize = 15 * time.Second

// TestMulticastLab: real UDP multicast between pod network namespaces on a
// 3-node networkpolicy lab (SPEC §4.8). mc-a has a1 and a1b on node1, a2 on
// node2, a3 on node3; mc-b and mc-c one pod per node; every pod listens to
// the same group and port.
func TestMulticastLab(t *testing.T) {
	l := startLab(t, "e2emc", networkv1.NetworkPolicyPluginName)
	c := newMCCluster(l)
	n := l.Nodes()
	pod := func(ns, name string, node *lab.Node, role string) mcPod {
		return mcPod{ns: ns, name: name, node: node.Name, labels: map[string]string{"pod": name, "role": role}}
	}
	a := c.addPods(t, pod("mc-a", "a1", n[0], "sender"), pod("mc-a", "a1b", n[0], "other"),
		pod("mc-a", "a2", n[1], "other"), pod("mc-a", "a3", n[2], "other"))
	b := c.addPods(t, pod("mc-b", "b1", n[0], ""), pod("mc-b", "b2", n[1], ""), pod("mc-b", "b3", n[2], ""))
	off := c.addPods(t, pod("mc-c", "c1", n[0], ""), pod("mc-c", "c2", n[1], ""), pod("mc-c", "c3", n[2], ""))
	a1, a1b, a2, a3 := a[0], a[1], a[2], a[3]

	c.expect(t, "no namespace enabled yet", a1, nil, 0)
	took := setMulticast(t, l, true, "mc-a", "mc-b")
	t.Logf("enable-multicast mc-a mc-b: applied on every node in %v", took.Round(time.Millisecond))

	t.Run("delivery", func(t *testing.T) {
		c.expect(t, "a1 (node1)", a1, except(a, a1), 0)
		c.expect(t, "a2 (node2)", a2, except(a, a2), 0)
		c.expect(t, "b2 (node2)", b[1], except(b, b[1]), 0)
		c.expect(t, "c1: mc-c has no annotation", off[0], nil, 0)
	})
	t.Run("ingress policy", func(t *testing.T) { testMulticastIngressPolicy(t, c, a1, a1b, a2, a3) })
	t.Run("egress policy", func(t *testing.T) { testMulticastEgressPolicy(t, c, a1, a1b, a2, a3) })
	t.Run("disable and enable", func(t *testing.T) {
		took := setMulticast(t, l, false, "mc-a")
		c.expect(t, "mc-a disabled", a1, nil, 0)
		c.expect(t, "mc-b still enabled", b[0], except(b, b[0]), 0)
		took2 := setMulticast(t, l, true, "mc-a")
		c.expect(t, "mc-a enabled again", a1, except(a, a1), 0)
		t.Logf("disable-multicast mc-a: %v, enable-multicast mc-a: %v", took.Round(time.Millisecond), took2.Round(time.Millisecond))
	})
	t.Run("pod added and removed", func(t *testing.T) {
		a4 := c.addPods(t, pod("mc-a", "a4", n[1], "other"))[0]
		c.expect(t, "a4 added on node2", a1, append(except(a, a1), a4), mcRealize)
		ip := c.ips[a4]
		c.deletePod(t, a4)
		waitFlows(t, []*lab.Node{n[1]}, func(node *lab.Node) (bool, string) {
			var left []string
			for _, line := range flowLines(dumpFlows(t, node)) {
				if mentionsPod(line, ip) {
					left = append(left, line)
				}
			}
			return len(left) == 0, fmt.Sprintf("flows of deleted pod a4 (%s):\n%s", ip, strings.Join(left, "\n"))
		})
		c.expect(t, "a4 deleted", a1, except(a, a1), 0)
	})
	t.Run("node added and removed", func(t *testing.T) { testMulticastNodeChurn(t, c, a) })
}

// testMulticastIngressPolicy: a3 isolated for ingress, allowing UDP to the
// group's port from role=sender only, receives a1's datagrams and not a2's;
// pods no policy selects still receive both; without the policy a3 gets
// a2's again.
func testMulticastIngressPolicy(t *testing.T, c *mcCluster, a1, a1b, a2, a3 types.NamespacedName) {
	ctx := context.Background()
	udp, port := corev1.ProtocolUDP, intstr.FromInt32(int32(mcGroup.Port()))
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "mc-a", Name: "a3-from-senders"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a3"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "sender"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &port}},
			}},
		}}
	api := c.l.Kube.NetworkingV1().NetworkPolicies("mc-a")
	if _, err := api.Create(ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expect(t, "a2 is not an allowed sender of a3", a2, []types.NamespacedName{a1, a1b}, mcRealize)
	c.expect(t, "a1 is an allowed sender of a3", a1, []types.NamespacedName{a1b, a2, a3}, 0)
	if err := api.Delete(ctx, np.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expect(t, "policy deleted: a3 receives a2 again", a2, []types.NamespacedName{a1, a1b, a3}, mcRealize)
}

// testMulticastEgressPolicy: a2 isolated for egress sends no multicast; an
// egress rule to the groups' ipBlock lets it send again.
func testMulticastEgressPolicy(t *testing.T, c *mcCluster, a1, a1b, a2, a3 types.NamespacedName) {
	ctx := context.Background()
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "mc-a", Name: "a2-egress"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a2"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		}}
	api := c.l.Kube.NetworkingV1().NetworkPolicies("mc-a")
	created, err := api.Create(ctx, np, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.expect(t, "a2 isolated for egress", a2, nil, mcRealize)
	c.expect(t, "others unaffected", a1, []types.NamespacedName{a1b, a2, a3}, 0)
	created.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "239.0.0.0/8"}}}}}
	if _, err := api.Update(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expect(t, "a2 may send to 239.0.0.0/8", a2, []types.NamespacedName{a1, a1b, a3}, mcRealize)
	if err := api.Delete(ctx, np.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// testMulticastNodeChurn: a node added later replicates and receives; once
// its Node and HostSubnet are deleted, no other node replicates to it.
func testMulticastNodeChurn(t *testing.T, c *mcCluster, a []types.NamespacedName) {
	ctx := context.Background()
	l := c.l
	if err := l.AddNodes(ctx, "node4"); err != nil {
		t.Fatal(err)
	}
	n4 := l.Node("node4")
	a5 := c.addPods(t, mcPod{ns: "mc-a", name: "a5", node: n4.Name, labels: map[string]string{"pod": "a5"}})[0]
	c.expect(t, "a5 on the new node4 receives", a[0], append(except(a, a[0]), a5), mcRealize)
	c.expect(t, "a5 on node4 sends", a5, a, 0)
	if err := l.Kube.CoreV1().Nodes().Delete(ctx, n4.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := l.Network.NetworkV1().HostSubnets().Delete(ctx, n4.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	ip := n4.IP.String()
	others := l.Nodes()[:3]
	waitFlows(t, others, func(n *lab.Node) (bool, string) {
		dump := dumpFlows(t, n, "table=111")
		return !strings.Contains(dump, ip), "table 111 still replicates to node4 " + ip + ":\n" + dump
	})
	c.expect(t, "node4 removed", a[0], except(a, a[0]), 0)
}

// TestMulticastMultitenantLab: on a multitenant lab, joined projects share
// one group, a VNID has multicast only when every project sharing it has
// the annotation, and isolated projects do not hear each other.
func TestMulticastMultitenantLab(t *testing.T) {
	l := startLab(t, "e2emcmt", networkv1.MultiTenantPluginName)
	ctx := context.Background()
	c := newMCCluster(l)
	var keys [3][]types.NamespacedName
	for i, ns := range []string{"mt-a", "mt-b", "mt-c"} {
		var pods []mcPod
		for j, n := range l.Nodes() {
			pods = append(pods, mcPod{ns: ns, name: fmt.Sprintf("%c%d", 'a'+i, j+1), node: n.Name})
		}
		keys[i] = c.addPods(t, pods...)
	}
	a, b, cc := keys[0], keys[1], keys[2]
	clients := &sdnctl.Clients{Kube: l.Kube, Network: l.Network}
	change := func(verb, to string, projects ...string) {
		t.Helper()
		if err := sdnctl.ChangePodNetwork(ctx, clients, verb, to, projects, io.Discard); err != nil {
			t.Fatalf("pod-network %s %s %v: %v", verb, to, projects, err)
		}
	}
	setMulticast(t, l, true, "mt-a", "mt-b", "mt-c")
	c.expect(t, "isolated projects: a1 reaches mt-a only", a[0], except(a, a[0]), 0)
	c.expect(t, "isolated projects: b1 reaches mt-b only", b[0], except(b, b[0]), 0)

	change(sdnctl.PodNetworkJoin, "mt-a", "mt-b")
	joined := append(append([]types.NamespacedName{}, a...), b...)
	c.expect(t, "mt-b joined mt-a: one group", a[0], except(joined, a[0]), mcRealize)
	c.expect(t, "mt-b joined mt-a: from b2", b[1], except(joined, b[1]), 0)

	setMulticast(t, l, false, "mt-c")
	change(sdnctl.PodNetworkJoin, "mt-a", "mt-c")
	c.expect(t, "mt-c joined without the annotation: the shared VNID is off", a[0], nil, mcRealize)
	setMulticast(t, l, true, "mt-c")
	all := append(append([]types.NamespacedName{}, joined...), cc...)
	c.expect(t, "mt-c annotated too: one group of three projects", a[0], except(all, a[0]), 0)

	change(sdnctl.PodNetworkIsolate, "", "mt-b")
	c.expect(t, "mt-b isolated again: a1 reaches mt-a and mt-c", a[0], except(append(append([]types.NamespacedName{}, a...), cc...), a[0]), mcRealize)
	c.expect(t, "mt-b isolated again: b3 reaches mt-b only", b[2], except(b, b[2]), 0)
}
