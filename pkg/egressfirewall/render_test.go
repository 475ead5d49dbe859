package egressfirewall_test

import (
	"net/netip"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	fw "github.com/ovs-sdn/ovs-sdn/pkg/egressfirewall"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovstest"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// The test node: cluster network 10.128.0.0/14, subnet 10.128.0.0/23, node
// IP 198.18.0.11; pods a (proj1, VNID 11), b (proj2, VNID 12) and g
// (default, VNID 0); a remote node with 10.128.2.0/23.
var (
	clusterCIDR = netip.MustParsePrefix("10.128.0.0/14")
	nodeIP      = netip.MustParseAddr("198.18.0.11")
	service     = netip.MustParseAddr("172.30.0.10")
	podA        = pipeline.PodInfo{Namespace: "proj1", Name: "a", IP: netip.MustParseAddr("10.128.0.2"), OFPort: 3, VNID: 11}
	podB        = pipeline.PodInfo{Namespace: "proj2", Name: "b", IP: netip.MustParseAddr("10.128.0.3"), OFPort: 4, VNID: 12}
	podG        = pipeline.PodInfo{Namespace: "default", Name: "g", IP: netip.MustParseAddr("10.128.0.4"), OFPort: 5, VNID: 0}
	remote      = pipeline.RemoteNode{Name: "node2", UID: "uid2", HostIP: netip.MustParseAddr("198.18.0.12"), Subnet: netip.MustParsePrefix("10.128.2.0/23")}
	remotePod   = netip.MustParseAddr("10.128.2.5")
)

func config(m clusternetwork.Mode) pipeline.FlowConfig {
	return pipeline.FlowConfig{Mode: m, ClusterNetworks: []netip.Prefix{clusterCIDR}, ServiceNetwork: netip.MustParsePrefix("172.30.0.0/16"),
		LocalSubnet: netip.MustParsePrefix("10.128.0.0/23"), NodeIP: nodeIP}
}

func ext(last byte) netip.Addr { return netip.AddrFrom4([4]byte{203, 0, 113, last}) }

func rule(typ networkv1.EgressNetworkPolicyRuleType, cidr, dns string) networkv1.EgressNetworkPolicyRule {
	return networkv1.EgressNetworkPolicyRule{Type: typ, To: networkv1.EgressNetworkPolicyPeer{CIDRSelector: cidr, DNSName: dns}}
}

const (
	allow = networkv1.EgressNetworkPolicyRuleAllow
	deny  = networkv1.EgressNetworkPolicyRuleDeny
)

func policy(ns, name string, rules ...networkv1.EgressNetworkPolicyRule) *networkv1.EgressNetworkPolicy {
	return &networkv1.EgressNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkv1.EgressNetworkPolicySpec{Egress: rules}}
}

func netns(name string, id uint32) *networkv1.NetNamespace {
	n := &networkv1.NetNamespace{NetName: name, NetID: id}
	n.Name = name
	return n
}

var vnids = []*networkv1.NetNamespace{netns("proj1", 11), netns("proj2", 12), netns("default", 0), netns("proj3", 13), netns("proj4", 13)}

// addrs is the fake resolver: www.lab.example has two addresses,
// gone.lab.example none.
func addrs(name string) []netip.Addr {
	if name == "www.lab.example" {
		return []netip.Addr{ext(12), ext(11), ext(12)}
	}
	return nil
}

// decisionFlows renders every decision of policies, as the agent does.
func decisionFlows(policies ...*networkv1.EgressNetworkPolicy) []ovs.Flow {
	var flows []ovs.Flow
	for _, d := range fw.Evaluate(fw.BuildInput(policies, vnids)) {
		flows = append(flows, fw.Flows(d, addrs)...)
	}
	return flows
}

// TestFlowsGolden: the flows of enforced, drop-all and ignored VNIDs and the
// static flows, compared with testdata/egressfirewall.flows (checked by
// eye against reference §7.1).
func TestFlowsGolden(t *testing.T) {
	flows := append(fw.StaticFlows(config(clusternetwork.ModeNetworkPolicy)), decisionFlows(
		policy("proj1", "fw", rule(allow, "203.0.113.0/24", ""), rule(deny, "203.0.113.8/29", ""), rule(allow, "", "www.lab.example"),
			rule(deny, "", "gone.lab.example"), rule(deny, "0.0.0.0/0", "")),
		policy("proj3", "fw", rule(deny, "0.0.0.0/0", "")),   // VNID 13 is shared by proj3 and proj4: drop all
		policy("default", "fw", rule(deny, "0.0.0.0/0", "")), // VNID 0: ignored
	)...)
	ovstest.AssertGolden(t, "egressfirewall", flows)
	if err := pipeline.CheckFlowBands(pipeline.StageEgressFirewall, flows); err != nil {
		t.Error(err)
	}
	for _, f := range flows {
		if ovs.CookieCategoryOf(f.Cookie) != ovs.CookieEgress {
			t.Errorf("flow %s: cookie category %d, want egress", f.StringNamed(), ovs.CookieCategoryOf(f.Cookie))
		}
	}
}

// TestFlowsPriorities: rule i of n at priority n-i; the rule count bounds the
// band; a flow per distinct resolved address.
func TestFlowsPriorities(t *testing.T) {
	var rules []networkv1.EgressNetworkPolicyRule
	for range networkv1.MaxEgressNetworkPolicyRules - 1 {
		rules = append(rules, rule(allow, "192.0.2.0/24", ""))
	}
	rules = append(rules, rule(deny, "", "www.lab.example"))
	flows := decisionFlows(policy("proj1", "fw", rules...))
	if len(flows) != networkv1.MaxEgressNetworkPolicyRules+1 {
		t.Fatalf("%d flows, want %d (the last rule has two addresses)", len(flows), networkv1.MaxEgressNetworkPolicyRules+1)
	}
	seen := map[uint16]int{}
	for _, f := range flows {
		seen[f.Priority]++
	}
	if seen[1000] != 1 || seen[2] != 1 || seen[1] != 2 || seen[0] != 0 {
		t.Errorf("priorities: first %d, second-last %d, last %d", seen[1000], seen[2], seen[1])
	}
	if err := pipeline.CheckFlowBands(pipeline.StageEgressFirewall, flows); err != nil {
		t.Error(err)
	}
}

// node renders everything an agent of mode m installs with policies.
func node(m clusternetwork.Mode, policies ...*networkv1.EgressNetworkPolicy) []ovs.Flow {
	c := config(m)
	iso := c.Isolation()
	flows := append(pipeline.BaseFlows(c), iso.StaticFlows(c)...)
	for _, p := range []pipeline.PodInfo{podA, podB, podG} {
		flows = append(flows, pipeline.PodFlows(c, p)...)
		flows = append(flows, iso.TenantFlows(p.VNID)...)
	}
	flows = append(flows, pipeline.RemoteNodeFlows(c, remote)...)
	flows = append(flows, pipeline.MulticastRemoteFlow(c, []netip.Addr{remote.HostIP}))
	if iso.EnforcesNetworkPolicy() {
		flows = append(flows, pipeline.PolicyAllowAllFlows()...)
	}
	flows = append(flows, fw.StaticFlows(c)...)
	flows = append(flows, decisionFlows(policies...)...)
	return append(flows, pipeline.VersionFlow(c))
}

type traceCase struct {
	name   string
	packet ovs.Packet
	want   string
}

func tcp(from pipeline.PodInfo, to netip.Addr, port uint16) ovs.Packet {
	return ovs.Packet{InPort: from.OFPort, Proto: ovs.ProtoTCP, Src: from.IP, Dst: to, TpSrc: 40000, TpDst: port}
}

func udp(from pipeline.PodInfo, to netip.Addr, port uint16) ovs.Packet {
	p := tcp(from, to, port)
	p.Proto = ovs.ProtoUDP
	return p
}

func reply(p ovs.Packet) ovs.Packet { p.CtReply = true; return p }

var (
	out      = ovs.Verdict{Kind: ovs.VerdictOutput, Port: pipeline.OFPortTun0}.String()
	dropped  = ovs.Verdict{Kind: ovs.VerdictDrop, Table: ovs.TableEgressFirewall}.String()
	toPod    = func(p pipeline.PodInfo) string { return ovs.Verdict{Kind: ovs.VerdictOutput, Port: p.OFPort}.String() }
	toRemote = func(vnid uint32) string {
		return ovs.Verdict{Kind: ovs.VerdictTunnel, TunDst: remote.HostIP, TunID: uint64(vnid)}.String()
	}
	vnidModes = []clusternetwork.Mode{clusternetwork.ModeMultitenant, clusternetwork.ModeNetworkPolicy}
)

func runTraces(t *testing.T, flows []ovs.Flow, cases []traceCase) {
	t.Helper()
	if err := ovs.ValidatePipeline(flows); err != nil {
		t.Fatalf("ValidatePipeline: %v", err)
	}
	for _, tc := range cases {
		tr, err := ovs.TraceFlows(flows, tc.packet)
		if err != nil {
			t.Fatalf("%s: %v\n%s", tc.name, err, tr)
		}
		if got := tr.Verdict.String(); got != tc.want {
			t.Errorf("%s: %s, want %s; trace:\n%s", tc.name, got, tc.want, tr)
		}
	}
}

// TestTraceFirstMatch: allow 203.0.113.0/24, deny 203.0.113.8/29, allow
// 203.0.113.9/32 in every order gives exactly the first match, in both VNID
// modes; proj2 (no policy) is never affected.
func TestTraceFirstMatch(t *testing.T) {
	a24, d29, a32 := rule(allow, "203.0.113.0/24", ""), rule(deny, "203.0.113.8/29", ""), rule(allow, "203.0.113.9/32", "")
	orders := [][]networkv1.EgressNetworkPolicyRule{{a24, d29, a32}, {a24, a32, d29}, {d29, a24, a32}, {d29, a32, a24}, {a32, a24, d29}, {a32, d29, a24}}
	for _, m := range vnidModes {
		for _, order := range orders {
			flows := node(m, policy("proj1", "fw", order...))
			var cases []traceCase
			for _, last := range []byte{1, 8, 9, 10, 15, 16, 200} {
				want := firstMatch(order, ext(last))
				cases = append(cases, traceCase{name: string(m) + " " + describe(order) + " → " + ext(last).String(), packet: tcp(podA, ext(last), 80), want: want},
					traceCase{name: "proj2 → " + ext(last).String(), packet: tcp(podB, ext(last), 80), want: out})
			}
			runTraces(t, flows, cases)
		}
	}
}

// firstMatch is the oracle: the first rule containing dst decides; none:
// allowed.
func firstMatch(rules []networkv1.EgressNetworkPolicyRule, dst netip.Addr) string {
	for _, r := range rules {
		if netip.MustParsePrefix(r.To.CIDRSelector).Contains(dst) {
			if r.Type == allow {
				return out
			}
			return dropped
		}
	}
	return out
}

func describe(rules []networkv1.EgressNetworkPolicyRule) string {
	var s []string
	for _, r := range rules {
		s = append(s, string(r.Type)+" "+r.To.CIDRSelector)
	}
	return strings.Join(s, ", ")
}

// TestTraceDenyAll: Deny 0.0.0.0/0 drops all traffic leaving the cluster
// network, and nothing else: pod-to-pod (local, remote), pod-to-service,
// DNS to the node, the replies of connections the pod serves, other VNIDs.
func TestTraceDenyAll(t *testing.T) {
	for _, m := range vnidModes {
		flows := node(m, policy("proj1", "fw", rule(deny, "0.0.0.0/0", "")))
		sameVNID := toPod(podB)
		if m == clusternetwork.ModeMultitenant {
			sameVNID = ovs.Verdict{Kind: ovs.VerdictDrop, Table: ovs.TablePolicyIngress}.String() // VNID 11 → 12: isolated
		}
		runTraces(t, flows, []traceCase{
			{"external TCP", tcp(podA, ext(9), 80), dropped},
			{"external UDP", udp(podA, ext(9), 5353), dropped},
			{"another node's IP", tcp(podA, remote.HostIP, 22), dropped},
			{"the node's IP, not DNS", tcp(podA, nodeIP, 22), dropped},
			{"DNS to the node's IP, UDP", udp(podA, nodeIP, 53), out},
			{"DNS to the node's IP, TCP", tcp(podA, nodeIP, 53), out},
			{"local pod of another VNID", tcp(podA, podB.IP, 8080), sameVNID},
			{"local global pod", tcp(podA, podG.IP, 8080), toPod(podG)},
			{"remote pod", tcp(podA, remotePod, 8080), toRemote(11)},
			{"service", tcp(podA, service, 443), out},
			{"the gateway", tcp(podA, netip.MustParseAddr("10.128.0.1"), 10250), out},
			{"reply of a connection from outside (the pod serves it)", reply(tcp(podA, ext(9), 80)), out},
			{"proj2: no policy", tcp(podB, ext(9), 80), out},
			{"default (VNID 0): no policy", tcp(podG, ext(9), 80), out},
			{"connection from outside through tun0 reaches the pod", ovs.Packet{InPort: pipeline.OFPortTun0, Proto: ovs.ProtoTCP,
				Src: ext(9), Dst: podA.IP, TpSrc: 40000, TpDst: 8080}, toPod(podA)},
		})
	}
}

// TestTraceDNSNames: a dnsName rule matches exactly the resolved addresses;
// an unresolved name matches nothing.
func TestTraceDNSNames(t *testing.T) {
	for _, m := range vnidModes {
		flows := node(m, policy("proj1", "fw", rule(allow, "", "www.lab.example"), rule(allow, "", "gone.lab.example"), rule(deny, "0.0.0.0/0", "")))
		runTraces(t, flows, []traceCase{
			{"first address", tcp(podA, ext(11), 80), out},
			{"second address", tcp(podA, ext(12), 443), out},
			{"another address", tcp(podA, ext(13), 80), dropped},
		})
	}
}

// TestTraceInvalid: a shared VNID drops all its external traffic, in both
// namespaces; a policy in VNID 0 is ignored.
func TestTraceInvalid(t *testing.T) {
	proj3 := pipeline.PodInfo{Namespace: "proj4", Name: "c", IP: podB.IP, OFPort: podB.OFPort, VNID: 13}
	c := config(clusternetwork.ModeMultitenant)
	flows := node(clusternetwork.ModeMultitenant, policy("proj3", "fw", rule(allow, "0.0.0.0/0", "")), policy("default", "fw", rule(deny, "0.0.0.0/0", "")))
	flows = append(flows, pipeline.PodFlows(c, proj3)...)
	flows = removeOwner(flows, pipeline.PodOwner(podB.Namespace, podB.Name))
	runTraces(t, flows, []traceCase{
		{"shared VNID: allow-all policy, all dropped", tcp(proj3, ext(1), 80), dropped},
		{"shared VNID: reply still passes", reply(tcp(proj3, ext(1), 80)), out},
		{"VNID 0: policy ignored", tcp(podG, ext(1), 80), out},
	})
}

func removeOwner(flows []ovs.Flow, o pipeline.Owner) []ovs.Flow {
	var out []ovs.Flow
	for _, f := range flows {
		if f.Cookie != o.Cookie() {
			out = append(out, f)
		}
	}
	return out
}
