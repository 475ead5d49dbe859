package e2e

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/egressfirewall"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/dnsserver"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/kubelet"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
)

// realize bounds the wait for a policy change to show in probes.
const realize = 10 * time.Second

const (
	connected = kubelet.Connected
	dropped   = kubelet.TimedOut
	refused   = kubelet.Refused
)

// TestEgressFirewall runs the EgressNetworkPolicy suites on one 3-node
// networkpolicy lab: real TCP/UDP from pods on node1 and node2 to the
// external host (203.0.113.0/24 behind the underlay), names from the lab's
// DNS server.
func TestEgressFirewall(t *testing.T) {
	l := startLab(t, "e2efw", networkv1.NetworkPolicyPluginName)
	start := time.Now()
	f := newFWLab(t, l)
	t.Logf("egress-firewall pods ready in %v: %v", time.Since(start).Round(time.Millisecond), f.ips)
	t.Run("RuleOrder", func(t *testing.T) { testFWRuleOrder(t, f) })
	t.Run("DenyAll", func(t *testing.T) { testFWDenyAll(t, f) })
	t.Run("RepliesOfConnectionsFromOutside", func(t *testing.T) { testFWReplies(t, f) })
	t.Run("TraceAndFlows", func(t *testing.T) { testFWTrace(t, f) })
	t.Run("DNSNames", func(t *testing.T) { testFWDNS(t, f) })
	t.Run("Invalid", func(t *testing.T) { testFWInvalid(t, f) })
	t.Run("AgentRestart", func(t *testing.T) { testFWAgentRestart(t, f) })
	t.Run("OVSRestart", func(t *testing.T) { testFWOVSRestart(t, f) })
	t.Logf("egress-firewall suites took %v", time.Since(start).Round(time.Second))
}

// testFWRuleOrder: allow 203.0.113.0/24, deny 203.0.113.8/29, allow
// 203.0.113.9/32 in all six orders give exactly the first match, from pods
// on two nodes; fw2 (no policy) is never affected; no policy allows all.
func testFWRuleOrder(t *testing.T, f *fwLab) {
	addrs := []netip.Addr{ext(1), ext(8), ext(9), ext(10), ext(15), ext(16)}
	var none []fwCell
	for _, a := range addrs {
		none = append(none, tcpTo(fwA, a, connected), tcpTo(fwB, a, connected), tcpTo(fwC, a, connected))
	}
	expectCells(t, f.l, "no policy", realize, none...)
	a24, d29, a32 := allowTo("203.0.113.0/24"), denyTo("203.0.113.8/29"), allowTo("203.0.113.9/32")
	for _, order := range [][]networkv1.EgressNetworkPolicyRule{{a24, d29, a32}, {a24, a32, d29}, {d29, a24, a32}, {d29, a32, a24}, {a32, a24, d29}, {a32, d29, a24}} {
		setPolicy(t, f.l, "fw1", "fw", order...)
		var cells []fwCell
		for _, a := range addrs {
			want := firstMatchOutcome(order, a)
			cells = append(cells, tcpTo(fwA, a, want), tcpTo(fwB, a, want), tcpTo(fwC, a, connected))
		}
		took := expectCells(t, f.l, describeRules(order), realize, cells...)
		t.Logf("%s: as the first match says, %v after the update", describeRules(order), took.Round(time.Millisecond))
	}
	deletePolicy(t, f.l, "fw1", "fw")
	expectCells(t, f.l, "policy deleted", realize, none...)
}

func firstMatchOutcome(rules []networkv1.EgressNetworkPolicyRule, dst netip.Addr) kubelet.Outcome {
	for _, r := range rules {
		if netip.MustParsePrefix(r.To.CIDRSelector).Contains(dst) {
			if r.Type == networkv1.EgressNetworkPolicyRuleAllow {
				return connected
			}
			return dropped
		}
	}
	return connected
}

func describeRules(rules []networkv1.EgressNetworkPolicyRule) string {
	var s []string
	for _, r := range rules {
		s = append(s, string(r.Type)+" "+r.To.CIDRSelector+r.To.DNSName)
	}
	return strings.Join(s, ", ")
}

// testFWDenyAll: Deny 0.0.0.0/0 blocks all external traffic of fw1 (TCP,
// UDP, other nodes' IPs) and nothing else: pod-to-pod across nodes, DNS to
// the pod's own node IP, fw2.
func testFWDenyAll(t *testing.T, f *fwLab) {
	// A ClusterIP Service in front of fw1/s: pod-to-service traffic is
	// load-balanced in br0 before table 100 and never meets it.
	vip, err := f.l.EnsureService(context.Background(), "fw1", "s", map[string]string{"fw-pod": "s"}, int32(tcpPort))
	if err != nil {
		t.Fatal(err)
	}
	setPolicy(t, f.l, "fw1", "fw", denyTo("0.0.0.0/0"))
	defer deletePolicy(t, f.l, "fw1", "fw")
	node1, node2 := f.l.Node("node1").IP, f.l.Node("node2").IP
	udp := func(from types.NamespacedName, to netip.Addr, port uint16, want kubelet.Outcome) fwCell {
		return fwCell{from: from, to: to, port: port, proto: corev1.ProtocolUDP, want: want}
	}
	tcp := func(from types.NamespacedName, to netip.Addr, port uint16, want kubelet.Outcome) fwCell {
		return fwCell{from: from, to: to, port: port, proto: corev1.ProtocolTCP, want: want}
	}
	expectCells(t, f.l, "deny all", realize,
		tcpTo(fwA, ext(1), dropped), tcp(fwB, ext(16), 443, dropped), udp(fwA, ext(9), 53, dropped), udp(fwB, ext(9), 5353, dropped),
		tcp(fwA, node2, 22, dropped),                               // another node's IP is outside the cluster network
		tcp(fwA, node1, 22, dropped),                               // so is the own node's, but for DNS:
		udp(fwA, node1, 53, refused), tcp(fwA, node1, 53, refused), // DNS to the node IP reaches it (nothing listens)
		tcp(fwA, f.ips[fwS], tcpPort, connected), tcp(fwB, f.ips[fwS], tcpPort, connected), // pod to pod, across nodes
		udp(fwA, f.ips[fwS], udpPort, connected),
		tcp(fwA, vip, tcpPort, connected), tcp(fwB, vip, tcpPort, connected), // pod to service, both nodes
		tcpTo(fwC, ext(1), connected), udp(fwC, ext(9), 53, connected), // other namespaces
	)
	// Pod to service: the service network goes to the host from table 60,
	// never through table 100 (the lab runs no kube-proxy; the trace shows it).
	out := sdnLab(t, f.l, "trace", "fw1/a", "172.30.0.10", "--port", "443")
	if !strings.Contains(out, "=> delivered to tun0") || strings.Contains(out, "EgressFirewall(100)") || !strings.Contains(out, "Services(60)") {
		t.Errorf("pod to service went through the egress firewall or not to the host:\n%s", out)
	}
}

// testFWReplies: with Deny 0.0.0.0/0, a pod still serves connections
// opened from outside the cluster network: the external host connects to a
// NodePort-style DNAT on node3 (client address kept) and gets the pod's
// greeting; the pod's own connection to the host is still dropped.
func testFWReplies(t *testing.T, f *fwLab) {
	ctx := context.Background()
	n3 := f.l.Node("node3")
	dnat := []string{"-t", "nat", "-I", "PREROUTING", "-d", n3.IP.String() + "/32", "-p", "tcp", "--dport", "30080",
		"-j", "DNAT", "--to-destination", netip.AddrPortFrom(f.ips[fwS], tcpPort).String()}
	if out, err := n3.Net.NetNS.Exec(ctx, append([]string{"iptables"}, dnat...)...); err != nil {
		t.Fatalf("iptables DNAT on node3: %v: %s", err, out)
	}
	defer func() {
		dnat[2] = "-D"
		if out, err := n3.Net.NetNS.Exec(ctx, append([]string{"iptables"}, dnat...)...); err != nil {
			t.Errorf("removing the DNAT rule: %v: %s", err, out)
		}
	}()
	nodePort := netip.AddrPortFrom(n3.IP, 30080)
	hello := func() (string, error) { return f.l.Ext.NetNS.TCPHello(nodePort, 2*time.Second) }
	if got, err := hello(); err != nil {
		t.Fatalf("no policy: external host → %s → fw1/s: %v", nodePort, err)
	} else {
		t.Logf("external host → %s: %q", nodePort, got)
	}
	setPolicy(t, f.l, "fw1", "fw", denyTo("0.0.0.0/0"))
	defer deletePolicy(t, f.l, "fw1", "fw")
	expectCells(t, f.l, "deny all", realize, tcpTo(fwS, ext(1), dropped))
	for i := range 5 {
		if got, err := hello(); err != nil {
			t.Errorf("connection %d from outside to fw1/s with Deny 0.0.0.0/0: %v (its replies were blocked)", i, err)
		} else if i == 0 {
			t.Logf("with Deny 0.0.0.0/0: external host → %s: %q", nodePort, got)
		}
	}
	// Control: without table 100's reply flow on node3 the replies are denied, so the
	// connections above passed because of it. The flow is put back as it was.
	replies := "table=100,priority=2000,ip,ct_state=+rpl+trk"
	var dump []string
	for _, line := range flowLines(dumpFlows(t, n3, "table=100")) {
		if strings.Contains(line, "priority=2000,") {
			dump = append(dump, line)
		}
	}
	if len(dump) != 1 {
		t.Fatalf("node3's reply flow: %q", dump)
	}
	if out, err := n3.Ofctl("--strict", "del-flows", "br0", replies); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	_, err := hello()
	restore := strings.Replace(dump[0], " actions=", ",actions=", 1) // cookie=…, duration=…, table=100, … actions=…
	if out, err := n3.Ofctl("add-flow", "br0", stripCounters(restore)); err != nil {
		t.Fatalf("restoring the reply flow: %v: %s", err, out)
	}
	if err == nil {
		t.Error("control: a connection from outside still got through without the reply flow: the test proves nothing")
	}
	if _, err := hello(); err != nil {
		t.Errorf("reply flow restored, connection from outside: %v", err)
	}
}

// stripCounters removes the statistics fields of a dump-flows line, leaving
// what add-flow takes.
func stripCounters(line string) string {
	var keep []string
	for _, f := range strings.Split(line, ", ") {
		for _, part := range strings.Split(f, ",") {
			switch k, _, _ := strings.Cut(part, "="); k {
			case "duration", "n_packets", "n_bytes", "idle_age", "hard_age":
			default:
				keep = append(keep, part)
			}
		}
	}
	return strings.Join(keep, ",")
}

// testFWTrace: sdnctl trace names the rule that decided; sdnctl flows
// --egress-firewall labels the flows with their rules.
func testFWTrace(t *testing.T, f *fwLab) {
	setPolicy(t, f.l, "fw1", "fw", allowTo("203.0.113.0/28"), denyTo("0.0.0.0/0"))
	defer deletePolicy(t, f.l, "fw1", "fw")
	expectCells(t, f.l, "policy", realize, tcpTo(fwA, ext(9), connected), tcpTo(fwA, ext(16), dropped))
	out := sdnLab(t, f.l, "trace", "fw1/a", "203.0.113.16", "--port", "80")
	for _, w := range []string{"EgressFirewall(100)", "=> dropped in EgressFirewall(100) on node1: EgressNetworkPolicy: denied by EgressNetworkPolicy fw1/fw egress[1]: Deny 0.0.0.0/0"} {
		if !strings.Contains(out, w) {
			t.Errorf("trace to 203.0.113.16 lacks %q", w)
		}
	}
	out = sdnLab(t, f.l, "trace", "fw1/b", "203.0.113.9", "--port", "443")
	if w := "=> leaves the cluster network through tun0 (the node's routing and SNAT); EgressNetworkPolicy: allowed by EgressNetworkPolicy fw1/fw egress[0]: Allow 203.0.113.0/28"; !strings.Contains(out, w) {
		t.Errorf("trace to 203.0.113.9 lacks %q", w)
	}
	out = sdnLab(t, f.l, "exec", "node2", "--", "sdnctl", "flows", "--egress-firewall", "fw1")
	for _, w := range []string{"nw_dst=203.0.113.0/28 actions=goto_table:101  # egress[0]: Allow 203.0.113.0/28",
		"actions=drop  # egress[1]: Deny 0.0.0.0/0", "note: VNID "} {
		if !strings.Contains(out, w) {
			t.Errorf("sdnctl flows --egress-firewall fw1 lacks %q", w)
		}
	}
}

const (
	wwwName    = "www.lab.example"
	zeroName   = "zero.lab.example"
	oneName    = "one.lab.example"
	aliasName  = "alias.lab.example"
	targetName = "target.lab.example"
	lateName   = "late.lab.example"
)

// testFWDNS: dnsName rules from pods on two nodes, with the lab's DNS server.
func testFWDNS(t *testing.T, f *fwLab) {
	d := f.l.DNS
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(d.SetA(wwwName, 5, ext(9)))
	must(d.SetA(zeroName, 0, ext(11)))
	must(d.SetA(oneName, 1, ext(12)))
	must(d.SetA(targetName, 5, ext(14)))
	must(d.SetCNAME(aliasName, targetName+".", 5))
	d.Delete(lateName)
	d.ResetQueries()
	setPolicy(t, f.l, "fw1", "fw", allowName(wwwName), allowName(zeroName), allowName(oneName), allowName(aliasName),
		allowName(lateName), denyTo("0.0.0.0/0"))
	tracked := time.Now()
	defer deletePolicy(t, f.l, "fw1", "fw")
	both := func(to netip.Addr, want kubelet.Outcome) []fwCell {
		return []fwCell{tcpTo(fwA, to, want), tcpTo(fwB, to, want)}
	}
	cells := func(parts ...[]fwCell) []fwCell {
		var out []fwCell
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	took := expectCells(t, f.l, "names resolved", realize, cells(both(ext(9), connected), both(ext(11), connected),
		both(ext(12), connected), both(ext(14), connected), both(ext(10), dropped), both(ext(13), dropped))...)
	t.Logf("policy with 5 names enforced on both nodes %v after its creation (CNAME alias → target included)", took.Round(time.Millisecond))

	// A name that did not resolve at first: retried at 2 s, 6 s, 14 s, 30 s after it was
	// tracked; created 3 s after, it is found at the 6 s retry.
	time.Sleep(time.Until(tracked.Add(3 * time.Second)))
	must(d.SetA(lateName, 5, ext(13)))
	took = expectCells(t, f.l, "late name", 8*time.Second, both(ext(13), connected)...)
	t.Logf("late.lab.example allowed %v after its record appeared (next retry due ~3 s after it)", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("late name allowed %v after its record appeared; the retry due 3 s after it should have found it (+2 s)", took)
	}

	// The record changes: within TTL (5 s, the resolver's minimum) + 2 s the new address is
	// allowed and the old one denied.
	must(d.SetA(wwwName, 5, ext(10)))
	took = expectCells(t, f.l, "record changed", 10*time.Second, cells(both(ext(10), connected), both(ext(9), dropped))...)
	t.Logf("www.lab.example 203.0.113.9 → .10: enforced on both nodes %v after the change (bound: TTL 5 s + 2 s)", took.Round(time.Millisecond))
	if took > 7*time.Second {
		t.Errorf("record change enforced after %v, want ≤ 7 s (TTL 5 s + 2 s)", took)
	}

	// A server that answers with the CNAME alone: the resolver asks for the target itself.
	d.SetChaseCNAME(false)
	must(d.SetA(targetName, 5, ext(15)))
	took = expectCells(t, f.l, "CNAME followed by the resolver", 10*time.Second, cells(both(ext(15), connected), both(ext(14), dropped))...)
	t.Logf("alias → target changed to .15 without CNAME chasing: %v", took.Round(time.Millisecond))
	d.SetChaseCNAME(true)

	// TTL 0 and 1 never give more than one query per second per name, per node.
	checkQueryRates(t, d, f.l, zeroName, oneName)

	// The DNS server down: the last good addresses stay allowed.
	d.Stop()
	time.Sleep(12 * time.Second) // > TTL: several refreshes fail
	expectCells(t, f.l, "DNS server down for 12 s", time.Second, cells(both(ext(10), connected), both(ext(11), connected),
		both(ext(13), connected), both(ext(15), connected), both(ext(9), dropped))...)
	must(d.Start())
}

// checkQueryRates: for each name, the queries from each node never exceed
// one in any one-second window.
func checkQueryRates(t *testing.T, d *dnsserver.Server, l *lab.Lab, names ...string) {
	t.Helper()
	for _, name := range names {
		byNode := map[netip.Addr][]dnsserver.Query{}
		for _, q := range d.QueriesFor(name) {
			byNode[q.From.Addr()] = append(byNode[q.From.Addr()], q)
		}
		if len(byNode) != len(l.Nodes()) {
			t.Errorf("%s: queries from %d addresses, want one per node (%d)", name, len(byNode), len(l.Nodes()))
		}
		for from, qs := range byNode {
			peak := dnsserver.MaxQueriesPerWindow(qs, time.Second)
			span := qs[len(qs)-1].Time.Sub(qs[0].Time)
			t.Logf("%s from %s: %d queries over %v, at most %d in any second", name, from, len(qs), span.Round(time.Millisecond), peak)
			if peak > 1 {
				t.Errorf("%s from %s: %d queries within one second (TTL 0/1 must give at most 1)", name, from, peak)
			}
		}
	}
}

// testFWInvalid: two policies in a namespace drop all its external
// traffic, with one Event on each, and deleting one restores the rules; a
// policy in the global namespace default (VNID 0) is ignored, with an Event.
func testFWInvalid(t *testing.T, f *fwLab) {
	setPolicy(t, f.l, "fw1", "fw", allowTo("203.0.113.0/24"), denyTo("0.0.0.0/0"))
	defer deletePolicy(t, f.l, "fw1", "fw")
	expectCells(t, f.l, "one policy", realize, tcpTo(fwA, ext(1), connected), tcpTo(fwB, ext(2), connected))
	setPolicy(t, f.l, "fw1", "extra", allowTo("0.0.0.0/0"))
	expectCells(t, f.l, "two policies: drop all", realize, tcpTo(fwA, ext(1), dropped), tcpTo(fwB, ext(2), dropped),
		tcpTo(fwC, ext(1), connected))
	waitPolicyEvent(t, f.l, "fw1", "fw", egressfirewall.ReasonMultiple)
	waitPolicyEvent(t, f.l, "fw1", "extra", egressfirewall.ReasonMultiple)
	deletePolicy(t, f.l, "fw1", "extra")
	expectCells(t, f.l, "second policy deleted", realize, tcpTo(fwA, ext(1), connected), tcpTo(fwB, ext(2), connected),
		tcpTo(fwA, ext(16), connected))
	ids, err := f.l.WaitNetNamespaces(context.Background(), "default")
	if err != nil || ids["default"] != 0 {
		t.Fatalf("namespace default: VNID %v, %v; want 0", ids, err)
	}
	setPolicy(t, f.l, "default", "fw", denyTo("0.0.0.0/0"))
	defer deletePolicy(t, f.l, "default", "fw")
	waitPolicyEvent(t, f.l, "default", "fw", egressfirewall.ReasonGlobalVNID)
	for _, n := range f.l.Nodes() {
		for _, line := range flowLines(dumpFlows(t, n, "table=100")) {
			if strings.Contains(line, "reg0=0,") || strings.Contains(line, "reg0=0 ") {
				t.Errorf("node %s has a table-100 flow for VNID 0: %s", n.Name, line)
			}
		}
	}
}

// testFWAgentRestart: kill -9 of node1's agent and its restart change no
// flow on br0 and never let a denied address through or block an allowed
// one (dnsName included), probed every 100 ms throughout.
func testFWAgentRestart(t *testing.T, f *fwLab) {
	if err := f.l.DNS.SetA(wwwName, 5, ext(10)); err != nil {
		t.Fatal(err)
	}
	setPolicy(t, f.l, "fw1", "fw", allowName(wwwName), allowTo("203.0.113.1/32"), denyTo("0.0.0.0/0"))
	defer deletePolicy(t, f.l, "fw1", "fw")
	cells := []fwCell{tcpTo(fwA, ext(10), connected), tcpTo(fwA, ext(1), connected), tcpTo(fwA, ext(2), dropped), tcpTo(fwA, ext(9), dropped)}
	expectCells(t, f.l, "policy", realize, cells...)
	n1 := f.l.Node("node1")
	time.Sleep(500 * time.Millisecond)
	mon := startFlowMonitor(t, n1)
	w := watchCells(f.l, 50*time.Millisecond, cells...)
	t0 := time.Now()
	if err := f.l.KillAgent(context.Background(), n1); err != nil {
		t.Fatal(err)
	}
	ready := time.Since(t0)
	time.Sleep(3 * time.Second) // the restarted agent's full sync and a few DNS refreshes
	rounds, bad := w.finish()
	t.Logf("node1's agent SIGKILLed and restarted, ready after %v; %d probes of %d cells (one each per 50 ms)", ready.Round(time.Millisecond), rounds, len(cells))
	if len(bad) > 0 {
		t.Errorf("enforcement broke during the agent restart:\n  %s", strings.Join(bad, "\n  "))
	}
	if ev := mon.events(); len(ev) > 0 {
		t.Errorf("the agent restart changed %d flows on node1's br0:\n  %s", len(ev), strings.Join(ev, "\n  "))
	}
}

// testFWOVSRestart: ovs-vswitchd of node1 killed and restarted: a denied
// address is never reachable (br0 comes back fail-secure and empty, then the
// agent writes every flow at once), and the allowed ones, the dnsName's
// included, are back after the rebuild.
func testFWOVSRestart(t *testing.T, f *fwLab) {
	if err := f.l.DNS.SetA(wwwName, 5, ext(10)); err != nil {
		t.Fatal(err)
	}
	setPolicy(t, f.l, "fw1", "fw", allowName(wwwName), allowTo("203.0.113.1/32"), denyTo("0.0.0.0/0"))
	defer deletePolicy(t, f.l, "fw1", "fw")
	allowed := []fwCell{tcpTo(fwA, ext(10), connected), tcpTo(fwA, ext(1), connected)}
	denied := []fwCell{tcpTo(fwA, ext(2), dropped), tcpTo(fwA, ext(9), dropped)}
	expectCells(t, f.l, "policy", realize, append(allowed, denied...)...)
	w := watchCells(f.l, 50*time.Millisecond, denied...)
	t0 := time.Now()
	if err := f.l.Node("node1").Net.Restart(netlab.OVSVswitchd); err != nil {
		t.Fatal(err)
	}
	expectCells(t, f.l, "after the vswitchd restart", 30*time.Second, allowed...)
	back := time.Since(t0)
	time.Sleep(time.Second)
	rounds, bad := w.finish()
	t.Logf("node1's ovs-vswitchd restarted; allowed addresses back %v after the kill (%d probes of the denied ones, one each per 50 ms)",
		back.Round(time.Millisecond), rounds)
	if len(bad) > 0 {
		t.Errorf("a denied address was reachable during the OVS restart:\n  %s", strings.Join(bad, "\n  "))
	}
}

// TestEgressFirewallMultitenant: in multitenant mode the rules apply per
// VNID; a join that shares fw1's VNID drops all its external traffic (both
// namespaces), with an Event, and isolating again restores the rules; a
// policy in a namespace made global is ignored.
func TestEgressFirewallMultitenant(t *testing.T) {
	l := startLab(t, "e2efwmt", networkv1.MultiTenantPluginName)
	f := newFWLab(t, l)
	ctx := context.Background()
	// Multitenant mode commits nothing between pods; on the userspace datapath
	// the connections crossing the cluster's edge are committed (81, 30) so
	// that replies of connections from outside pass table 100.
	t.Run("RepliesOfConnectionsFromOutside", func(t *testing.T) { testFWReplies(t, f) })
	setPolicy(t, l, "fw1", "fw", denyTo("203.0.113.9/32"), allowTo("0.0.0.0/0"))
	expectCells(t, l, "policy", realize, tcpTo(fwA, ext(9), dropped), tcpTo(fwB, ext(9), dropped), tcpTo(fwA, ext(1), connected),
		tcpTo(fwC, ext(9), connected))
	change := func(verb, to string, projects ...string) {
		t.Helper()
		if err := changePodNetwork(ctx, l, verb, to, projects...); err != nil {
			t.Fatal(err)
		}
	}
	change("join", "fw1", "fw2")
	expectCells(t, l, "fw2 joined fw1: shared VNID, drop all", realize, tcpTo(fwA, ext(1), dropped), tcpTo(fwC, ext(1), dropped),
		tcpTo(fwB, ext(1), dropped))
	waitPolicyEvent(t, l, "fw1", "fw", egressfirewall.ReasonSharedVNID)
	change("isolate", "", "fw2")
	expectCells(t, l, "fw2 isolated again", realize, tcpTo(fwA, ext(1), connected), tcpTo(fwA, ext(9), dropped),
		tcpTo(fwC, ext(9), connected))
	change("global", "", "fw2")
	setPolicy(t, l, "fw2", "fw", denyTo("0.0.0.0/0"))
	waitPolicyEvent(t, l, "fw2", "fw", egressfirewall.ReasonGlobalVNID)
	expectCells(t, l, "policy of a global namespace ignored", realize, tcpTo(fwC, ext(1), connected), tcpTo(fwA, ext(9), dropped))
}
