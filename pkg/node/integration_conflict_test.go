package node_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
)

// TestIntegrationHostSubnetConflict (issue 17 item 6, SPEC §11 "conflicting
// objects … resolved deterministically, never by arrival order"): a
// HostSubnet made by hand for a host that is not a node, with node-b's
// subnet, never takes node-b's traffic on any agent — created while the
// agents run, and after agent restarts that list both objects in whatever
// order, also when it was created while the agent was down. It gets no
// flows (tables 10, 50, 90) and no place in the table-111 replication.
// Deleting node-b's HostSubnet promotes it (the subnet is then its).
func TestIntegrationHostSubnetConflict(t *testing.T) {
	c := newITCluster(t, "itconf", networkv1.MultiTenantPluginName, 2, 0)
	a, b := c.nodes[0], c.nodes[1]
	c.netNamespace("proj1", 11)
	a1 := a.addPod("proj1", "a1")
	b1 := b.addPod("proj1", "b1")
	if _, err := b1.ServeTCP(itEchoPort); err != nil {
		t.Fatal(err)
	}
	const squatterIP = "198.18.0.13" // no node there
	api := c.cs.NetworkV1().HostSubnets()
	ctx := context.Background()
	// "a-squatter" sorts before node-b: a list or a render in name order
	// would meet it first. creationTimestamp has a resolution of one
	// second and equal timestamps are ordered by name, so the squatter is
	// created in a later second than node-b, or it would win.
	waitNextSecond(t, c, b.name)
	squatter := &networkv1.HostSubnet{ObjectMeta: metav1.ObjectMeta{Name: "a-squatter"},
		Host: "a-squatter", HostIP: squatterIP, Subnet: b.subnet.String()}
	if _, err := api.Create(ctx, squatter, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A sentinel created after the squatter: once an agent has its flows,
	// it has seen the squatter (one informer, events in order).
	sentinel := &networkv1.HostSubnet{ObjectMeta: metav1.ObjectMeta{Name: "sentinel"},
		Host: "sentinel", HostIP: "198.18.0.14", Subnet: "10.131.0.0/23"}
	if _, err := api.Create(ctx, sentinel, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		a.waitFlow("table=90,ip,nw_dst=10.131.0.0/23", true, 10*time.Second)
		b.waitFlow("table=90,ip,nw_dst=10.131.0.0/23", true, 10*time.Second)
		routesTo(t, a, b.subnet.String(), b.IP.Addr().String(), when)
		for _, n := range []*itNode{a, b} {
			out, err := n.Ofctl("dump-flows", netlab.PodBridge)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out, squatterIP) {
				t.Errorf("%s: node %s has flows naming the squatter's hostIP %s:\n%s", when, n.name, squatterIP, grepLines(out, squatterIP))
			}
		}
		if err := reachable(a1, b1, 3*time.Second); err != nil {
			t.Errorf("%s: a1 → b1: %v", when, err)
		}
	}
	check("squatter created while the agents run")

	for i := 0; i < 3; i++ {
		a.stopAgent()
		if a.startAgent() == nil {
			t.FailNow()
		}
		check("after agent a restarted")
	}

	// Created while agent a is down (it learns both from its first list).
	a.stopAgent()
	if err := api.Delete(ctx, squatter.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Create(ctx, squatter, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if a.startAgent() == nil {
		t.FailNow()
	}
	check("squatter recreated while agent a was down")

	// The winner goes: the squatter is now the subnet's only owner.
	if err := api.Delete(ctx, b.name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(a.flowText(t, "table=90,ip,nw_dst="+b.subnet.String()), squatterIP) {
		if time.Now().After(deadline) {
			t.Fatalf("node-b's HostSubnet deleted: agent a does not route %s to the squatter %s:\n%s",
				b.subnet, squatterIP, a.flowText(t, "table=90"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitNextSecond waits until the clock is past the creation second of
// HostSubnet name.
func waitNextSecond(t *testing.T, c *itCluster, name string) {
	t.Helper()
	hs, err := c.cs.NetworkV1().HostSubnets().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(hs.CreationTimestamp.Add(time.Second + 10*time.Millisecond)); d > 0 {
		time.Sleep(d)
	}
}

// routesTo checks that n has exactly one table-90 flow for subnet and that
// it tunnels to hostIP.
func routesTo(t *testing.T, n *itNode, subnet, hostIP, when string) {
	t.Helper()
	flows := n.dumpFlows("table=90,ip,nw_dst=" + subnet)
	if len(flows) != 1 || !strings.Contains(flows[0].String(), hostIP) {
		t.Errorf("%s: node %s table-90 flows for %s = %v, want one tunnelling to %s", when, n.name, subnet, flows, hostIP)
	}
}

// flowText is the dump-flows text of n's br0 for filter.
func (n *itNode) flowText(t *testing.T, filter string) string {
	t.Helper()
	out, err := n.Ofctl("dump-flows", netlab.PodBridge, filter)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
