package egressfirewall_test

import (
	"net/netip"
	"strings"
	"testing"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	fw "github.com/ovs-sdn/ovs-sdn/pkg/egressfirewall"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// TestExplainTraces: the table-100 flow that decides each traced packet is
// explained with the policy and rule that rendered it (what sdnctl trace
// prints), from decisions computed apart from the flows.
func TestExplainTraces(t *testing.T) {
	enps := []*networkv1.EgressNetworkPolicy{
		policy("proj1", "fw", rule(deny, "203.0.113.8/29", ""), rule(allow, "203.0.113.0/24", ""),
			rule(deny, "", "www.lab.example"), rule(deny, "0.0.0.0/0", "")),
		policy("proj3", "fw"), policy("default", "fw"),
	}
	flows := node(clusternetwork.ModeNetworkPolicy, enps...)
	decisions := fw.Evaluate(fw.BuildInput(enps, vnids))
	for _, tc := range []struct {
		packet ovs.Packet
		vnid   uint32
		want   string
	}{
		{tcp(podA, ext(9), 80), 11, "denied by EgressNetworkPolicy proj1/fw egress[0]: Deny 203.0.113.8/29"},
		{tcp(podA, ext(20), 80), 11, "allowed by EgressNetworkPolicy proj1/fw egress[1]: Allow 203.0.113.0/24"},
		{tcp(podA, netip.MustParseAddr("192.0.2.12"), 80), 11, "denied by EgressNetworkPolicy proj1/fw egress[3]: Deny 0.0.0.0/0"},
		{reply(tcp(podA, ext(9), 80)), 11, "allowed: a reply of a connection opened from outside"},
		{tcp(podB, ext(9), 80), 12, "allowed: no EgressNetworkPolicy applies to VNID 12"},
		{tcp(podG, ext(9), 80), 0, "allowed: EgressNetworkPolicy default/fw is in a global namespace"},
	} {
		tr, err := ovs.TraceFlows(flows, tc.packet)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, f := range tr.Flows {
			if w := fw.Explain(decisions, tc.vnid, f); w != "" {
				got = w
			}
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("%s → %s: %q, want %q; trace:\n%s", tc.packet.Src, tc.packet.Dst, got, tc.want, tr)
		}
	}
}

// TestExplainDNSAndDropAll: a dnsName flow names the rule and the address;
// a drop-all flow says why; a flow no rule renders is called stale.
func TestExplainDNSAndDropAll(t *testing.T) {
	enps := []*networkv1.EgressNetworkPolicy{
		policy("proj1", "fw", rule(allow, "", "www.lab.example"), rule(deny, "0.0.0.0/0", "")),
		policy("proj3", "fw", rule(allow, "0.0.0.0/0", "")),
	}
	decisions := fw.Evaluate(fw.BuildInput(enps, vnids))
	var got []string
	for _, f := range decisionFlows(enps...) {
		got = append(got, fw.Explain(decisions, 0, f))
	}
	want := []string{
		"allowed by EgressNetworkPolicy proj1/fw egress[0]: Allow dnsName www.lab.example (203.0.113.11 is an address the node resolved www.lab.example to)",
		"denied: EgressNetworkPolicy proj3/fw is not allowed in a shared NetNamespace",
	}
	for _, w := range want {
		if !containsPrefix(got, w) {
			t.Errorf("no explanation %q in %q", w, got)
		}
	}
	stale := ovs.NewFlow(ovs.TableEgressFirewall, 7).MatchIPv4().MatchReg(ovs.SrcVNIDField, 11).Action(ovs.DropAction())
	if w := fw.Explain(decisions, 11, stale); !strings.Contains(w, "stale") {
		t.Errorf("stale flow: %q", w)
	}
	if _, _, ok := fw.RuleOf(decisions, stale); ok {
		t.Error("RuleOf found a rule for a stale flow")
	}
	wrongDst := ovs.NewFlow(ovs.TableEgressFirewall, 1).MatchIPv4().MatchReg(ovs.SrcVNIDField, 11).MatchNwDst(netip.MustParsePrefix("10.0.0.0/8")).Action(ovs.DropAction())
	if _, _, ok := fw.RuleOf(decisions, wrongDst); ok {
		t.Error("RuleOf matched a flow whose nw_dst is not the rule's")
	}
}

func containsPrefix(ss []string, p string) bool {
	for _, s := range ss {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
