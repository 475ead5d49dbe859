package egressfirewall

import (
	"strings"
	"testing"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
)

func netns(name string, id uint32) *networkv1.NetNamespace {
	n := &networkv1.NetNamespace{NetName: name, NetID: id}
	n.Name = name
	return n
}

// TestEvaluate covers every decision of the package doc, in OpenShift's
// order of precedence.
func TestEvaluate(t *testing.T) {
	invalid := allowCIDR("1.2.3.0/24")
	invalid.Type = "Maybe"
	nns := []*networkv1.NetNamespace{netns("default", 0), netns("solo", 11), netns("two", 12),
		netns("joined-a", 13), netns("joined-b", 13), netns("lonely-joined", 14), netns("other-joined", 14),
		netns("bad", 15), netns("empty", 16)}
	in := BuildInput([]*networkv1.EgressNetworkPolicy{
		enp("default", "fw", denyCIDR("0.0.0.0/0")),
		enp("solo", "fw", allowDNS("www.lab.example"), denyCIDR("0.0.0.0/0")),
		enp("two", "a", denyCIDR("0.0.0.0/0")), enp("two", "b", allowCIDR("0.0.0.0/0")),
		enp("joined-a", "fw", allowCIDR("0.0.0.0/0")),
		enp("lonely-joined", "fw", allowCIDR("0.0.0.0/0")), // other-joined has none: still shared
		enp("bad", "fw", allowCIDR("1.2.3.0/24"), invalid),
		enp("empty", "fw"),
		enp("no-vnid-yet", "fw", denyCIDR("0.0.0.0/0")),
	}, nns)
	got := Evaluate(in)
	for _, tc := range []struct {
		vnid   uint32
		kind   Kind
		reason string
		msg    string
		rules  int
	}{
		{0, KindIgnored, ReasonGlobalVNID, "default/fw is in a global namespace (VNID 0)", 0},
		{11, KindEnforced, "", "", 2},
		{12, KindDropAll, ReasonMultiple, "namespace two has 2 EgressNetworkPolicies (two/a, two/b)", 0},
		{13, KindDropAll, ReasonSharedVNID, "VNID 13 is shared by namespaces joined-a, joined-b", 0},
		{14, KindDropAll, ReasonSharedVNID, "shared by namespaces lonely-joined, other-joined", 0},
		{15, KindDropAll, ReasonInvalid, `spec.egress[1].type: "Maybe" is neither Allow nor Deny`, 0},
		{16, KindEnforced, "", "", 0},
	} {
		d, ok := got[tc.vnid]
		if !ok {
			t.Errorf("VNID %d: no decision", tc.vnid)
			continue
		}
		if d.Kind != tc.kind || d.Reason != tc.reason || !strings.Contains(d.Message, tc.msg) || len(d.Rules) != tc.rules {
			t.Errorf("VNID %d: %s %q %q %d rules, want %s %q containing %q, %d rules", tc.vnid, d.Kind, d.Reason, d.Message, len(d.Rules), tc.kind, tc.reason, tc.msg, tc.rules)
		}
		if d.Kind == KindDropAll && !strings.Contains(d.Message, "is dropped until this is fixed") {
			t.Errorf("VNID %d: message %q does not say what happens", tc.vnid, d.Message)
		}
	}
	if len(got) != 7 {
		t.Errorf("%d decisions, want 7 (the namespace without a VNID has none)", len(got))
	}
	if names := got[11].Names(); len(names) != 1 || names[0] != "www.lab.example" {
		t.Errorf("names of VNID 11: %v", names)
	}
	if p, ok := got[11].Policy(); !ok || p.Key() != "solo/fw" {
		t.Errorf("policy of VNID 11: %v %v", p, ok)
	}
	if _, ok := got[12].Policy(); ok {
		t.Error("a drop-all decision has an enforced policy")
	}
}

// TestProblems: one Event per policy of a failed VNID, and the corrections
// of an enforced one; nothing for a clean policy.
func TestProblems(t *testing.T) {
	in := BuildInput([]*networkv1.EgressNetworkPolicy{
		enp("two", "a"), enp("two", "b"), enp("solo", "fw", denyCIDR("0.0.0.0/32")), enp("clean", "fw", denyCIDR("0.0.0.0/0")),
	}, []*networkv1.NetNamespace{netns("two", 12), netns("solo", 11), netns("clean", 10)})
	got := Evaluate(in)
	ps := got[12].Problems()
	if len(ps) != 2 || ps[0].Policy.Key() != "two/a" || ps[1].Policy.Key() != "two/b" || ps[0].Reason != ReasonMultiple {
		t.Errorf("problems of VNID 12: %+v", ps)
	}
	ps = got[11].Problems()
	if len(ps) != 1 || ps[0].Reason != ReasonCorrected || !strings.Contains(ps[0].Message, "0.0.0.0/32 read as 0.0.0.0/0") {
		t.Errorf("problems of VNID 11: %+v", ps)
	}
	if ps := got[10].Problems(); len(ps) != 0 {
		t.Errorf("problems of a clean policy: %+v", ps)
	}
}

func TestDecisionEqual(t *testing.T) {
	in := BuildInput([]*networkv1.EgressNetworkPolicy{enp("a", "fw", denyCIDR("0.0.0.0/0"))}, []*networkv1.NetNamespace{netns("a", 11)})
	d1 := Evaluate(in)[11]
	in.Policies[0].Rules = []Rule{{Index: 0, Type: networkv1.EgressNetworkPolicyRuleAllow, CIDR: d1.Rules[0].CIDR}}
	d2 := Evaluate(in)[11]
	if !d1.Equal(Evaluate(BuildInput([]*networkv1.EgressNetworkPolicy{enp("a", "fw", denyCIDR("0.0.0.0/0"))}, []*networkv1.NetNamespace{netns("a", 11)}))[11]) {
		t.Error("equal decisions differ")
	}
	if d1.Equal(d2) {
		t.Error("a rule's type change is not a difference")
	}
}
