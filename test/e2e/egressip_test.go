package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
)

// TestEgressIPLab (issue 13 acceptance, SPEC §4.7) on a 3-node
// networkpolicy lab with an external host: egressCIDRs on node1 and node2;
// six namespaces with one egress IP each are spread 3/3 by the controller;
// a namespace with two IPs gets one on each node and uses both; pods on
// every node of an egress-IP namespace are seen with its IP, other
// namespaces with their node's IP; cutting the underlay of the node that
// holds an IP moves everything to the survivor without one packet leaving
// with another source.
func TestEgressIPLab(t *testing.T) {
	l := startLab(t, "e2eeip", networkv1.NetworkPolicyPluginName)
	ctx := context.Background()
	e, err := newEIPLab(l)
	if err != nil {
		t.Fatal(err)
	}
	single := make([]string, 6)
	for i := range single {
		single[i] = fmt.Sprintf("e2e-eip-%d", i+1)
	}
	// eip-1 has a pod on every node; eip-2 … eip-6 one on node3 (not an
	// egress node); "two" (two IPs) and "plain" (none) a pod on every node.
	pods := e.createPods(t, map[string][]string{
		single[0]: {"node1", "node2", "node3"}, single[1]: {"node3"}, single[2]: {"node3"},
		single[3]: {"node3"}, single[4]: {"node3"}, single[5]: {"node3"},
		"e2e-eip-two": {"node1", "node2", "node3"}, "e2e-eip-plain": {"node1", "node2", "node3"},
	})
	for _, n := range []string{"node1", "node2"} {
		if err := e.setEgressCIDRs(ctx, n, eipCIDR); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("six namespaces spread 3/3", func(t *testing.T) {
		for i, ns := range single {
			if err := e.setNamespaceEgressIPs(ctx, ns, eipAddr(i+1)); err != nil {
				t.Fatal(err)
			}
		}
		a, err := e.waitAssignment(ctx, 30*time.Second, func(a assignment) bool {
			return len(a.ips["node1"]) == 3 && len(a.ips["node2"]) == 3
		})
		t.Logf("assignment: %v", a)
		if err != nil {
			t.Fatal(err)
		}
		if len(a.ips["node3"]) != 0 {
			t.Errorf("node3 has no egressCIDRs but holds %v", a.ips["node3"])
		}
	})

	t.Run("sources seen by the external host", func(t *testing.T) {
		for i, ns := range single {
			for node, pns := range pods[ns] {
				if err := e.waitSource(pns, eipAddr(i+1), 15*time.Second); err != nil {
					t.Errorf("%s pod on %s: %v", ns, node, err)
				}
			}
		}
		for node, pns := range pods["e2e-eip-plain"] {
			if err := e.waitSource(pns, l.Node(node).IP, 5*time.Second); err != nil {
				t.Errorf("namespace without egress IPs, pod on %s: %v", node, err)
			}
		}
	})

	two := []netip.Addr{eipAddr(7), eipAddr(8)}
	t.Run("a namespace with two IPs on two nodes uses both", func(t *testing.T) {
		if err := e.setNamespaceEgressIPs(ctx, "e2e-eip-two", two...); err != nil {
			t.Fatal(err)
		}
		a, err := e.waitAssignment(ctx, 30*time.Second, func(a assignment) bool {
			h1, h2 := a.holder(two[0]), a.holder(two[1])
			return h1 != "" && h2 != "" && h1 != h2
		})
		t.Logf("assignment: %v", a)
		if err != nil {
			t.Fatal(err)
		}
		// A pod on an egress node leaves with that node's IP; a pod on
		// node3 is balanced over both (the select group hashes each new
		// connection).
		for _, ip := range two {
			if err := e.waitSource(pods["e2e-eip-two"][a.holder(ip)], ip, 15*time.Second); err != nil {
				t.Error(err)
			}
		}
		seen := e.sourcesOver(t, pods["e2e-eip-two"]["node3"], 40)
		t.Logf("40 connections from node3's pod seen as %v", seen)
		if len(seen) != 2 || seen[two[0]] == 0 || seen[two[1]] == 0 {
			t.Errorf("connections from node3's pod of a two-IP namespace seen as %v, want both %v", seen, two)
		}
	})

	t.Run("sdnctl trace names the egress node and source", func(t *testing.T) {
		a, err := e.assignment(ctx)
		if err != nil {
			t.Fatal(err)
		}
		dst := e.ext.Addrs[0].String()
		for _, c := range []struct{ pod, want string }{
			{single[0] + "/p-node3", "source " + eipAddr(1).String() + " via node " + a.holder(eipAddr(1))},
			{"e2e-eip-plain/p-node3", "requests no egress IP: the packet leaves through tun0 of node node3"},
		} {
			args := []string{"trace", "--state-dir", l.Config().StateDir, c.pod, dst, "--port", "80"}
			out, err := exec.Command(filepath.Join(binDir, "sdn-lab"), args...).CombinedOutput()
			t.Logf("$ sdn-lab %s\n%s", strings.Join(args, " "), out)
			if err != nil || !strings.Contains(string(out), c.want) {
				t.Errorf("sdn-lab %s: %v; output lacks %q", strings.Join(args, " "), err, c.want)
			}
		}
	})

	t.Run("node lost: the survivor carries all, never a wrong source", func(t *testing.T) {
		e.testNodeLost(t, pods, single, two)
	})
}

// createPods creates a pod per namespace and node and returns their
// network namespaces by namespace and node.
func (e *eipLab) createPods(t *testing.T, where map[string][]string) map[string]map[string]netlab.NetNS {
	t.Helper()
	ctx := context.Background()
	var keys []types.NamespacedName
	node := map[types.NamespacedName]string{}
	for ns, nodes := range where {
		if err := e.l.EnsureNamespaces(ctx, nil, ns); err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			k := key(ns, "p-"+n)
			if err := e.l.CreatePod(ctx, lab.PodSpec{Namespace: ns, Name: k.Name, Node: n}); err != nil {
				t.Fatal(err)
			}
			keys, node[k] = append(keys, k), n
		}
	}
	if _, err := e.l.WaitPodsRunning(ctx, 3*time.Minute, keys...); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]netlab.NetNS{}
	for _, k := range keys {
		pns, err := e.podNetNS(node[k], k)
		if err != nil {
			t.Fatal(err)
		}
		if out[k.Namespace] == nil {
			out[k.Namespace] = map[string]netlab.NetNS{}
		}
		out[k.Namespace][node[k]] = pns
	}
	return out
}

// sourcesOver makes n connections from ns and counts the sources seen.
func (e *eipLab) sourcesOver(t *testing.T, ns netlab.NetNS, n int) map[netip.Addr]int {
	t.Helper()
	seen := map[netip.Addr]int{}
	for range n {
		src, err := e.sourceSeen(ns, 2*time.Second)
		if err != nil {
			t.Errorf("%s → external host: %v", ns.Name, err)
			continue
		}
		seen[src]++
	}
	return seen
}

// testNodeLost cuts the underlay of the node holding the first namespace's
// IP while its pods on the other nodes stream datagrams to the external
// host, then checks the assignment, the sources and the capture.
func (e *eipLab) testNodeLost(t *testing.T, pods map[string]map[string]netlab.NetNS, single []string, two []netip.Addr) {
	ctx := context.Background()
	before, err := e.assignment(ctx)
	if err != nil {
		t.Fatal(err)
	}
	eip := eipAddr(1)
	lost := before.holder(eip)
	survivor := map[string]string{"node1": "node2", "node2": "node1"}[lost]
	if survivor == "" {
		t.Fatalf("%s is on %q, want node1 or node2 (%v)", eip, lost, before)
	}
	streamers := map[string]netlab.NetNS{}
	for _, n := range []string{survivor, "node3"} {
		streamers[n] = pods[single[0]][n]
	}
	mark := e.ext.Packets.Mark()
	s := e.startStream(20*time.Millisecond, streamers)
	time.Sleep(500 * time.Millisecond)
	t0 := time.Now()
	if err := e.setUnderlay(lost, false); err != nil {
		s.stop()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.setUnderlay(lost, true) })
	a, err := e.waitAssignment(ctx, 30*time.Second, func(a assignment) bool {
		return a.unreachable[lost] && len(a.ips[lost]) == 0 && len(a.ips[survivor]) == 7
	})
	t.Logf("%s cut; assignment after %v: %v", lost, time.Since(t0).Round(time.Millisecond), a)
	if err != nil {
		t.Error(err)
	}
	time.Sleep(2 * time.Second)
	log := s.stop()
	worst, per, ok := recovered(log, t0, eip)
	t.Logf("traffic of %s through %s again after %v (per pod %v); %d datagrams", single[0], survivor, worst, per, len(log))
	if !ok {
		t.Errorf("the stream of some pod of %s never came back with source %s: %v", single[0], eip, per)
	}
	wrong, total := e.wrongSources(mark, 5353, eip)
	drops, _ := e.ext.CaptureDrops()
	t.Logf("captured %d datagrams of the stream (capture drops %d, lost %d)", total, drops, e.ext.Packets.Lost())
	if len(wrong) > 0 {
		var lines []string
		for _, p := range wrong {
			lines = append(lines, p.String())
		}
		t.Errorf("%d packets reached the external host with a source other than %s:\n%s", len(wrong), eip, strings.Join(lines, "\n"))
	}
	if total == 0 {
		t.Error("no datagram of the stream was captured: the check checked nothing")
	}
	for i, ns := range single {
		if h := a.holder(eipAddr(i + 1)); h != survivor {
			t.Errorf("%s of %s is on %q after %s was lost, want %s", eipAddr(i+1), ns, h, lost, survivor)
		}
		if err := e.waitSource(pods[ns]["node3"], eipAddr(i+1), 15*time.Second); err != nil {
			t.Errorf("%s after %s was lost: %v", ns, lost, err)
		}
	}
	// The two-IP namespace keeps only the survivor's IP (a node SNATs a
	// VNID to one address): node3's pod leaves with it alone.
	kept := slices.IndexFunc(two, func(ip netip.Addr) bool { return a.holder(ip) == survivor })
	if kept < 0 {
		t.Fatalf("no IP of e2e-eip-two on %s: %v", survivor, a)
	}
	if seen := e.sourcesOver(t, pods["e2e-eip-two"]["node3"], 10); len(seen) != 1 || seen[two[kept]] != 10 {
		t.Errorf("two-IP namespace with one node lost: node3's pod seen as %v, want only %s", seen, two[kept])
	}
	if err := e.setUnderlay(lost, true); err != nil {
		t.Fatal(err)
	}
	if a, err := e.waitAssignment(ctx, 30*time.Second, func(a assignment) bool { return !a.unreachable[lost] }); err != nil {
		t.Errorf("%s back on the underlay: %v (%v)", lost, err, a)
	}
}
