package egressfirewall

import (
	"net/netip"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
)

func enp(ns, name string, rules ...networkv1.EgressNetworkPolicyRule) *networkv1.EgressNetworkPolicy {
	return &networkv1.EgressNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name)},
		Spec: networkv1.EgressNetworkPolicySpec{Egress: rules}}
}

func allowCIDR(c string) networkv1.EgressNetworkPolicyRule {
	return networkv1.EgressNetworkPolicyRule{Type: networkv1.EgressNetworkPolicyRuleAllow, To: networkv1.EgressNetworkPolicyPeer{CIDRSelector: c}}
}

func denyCIDR(c string) networkv1.EgressNetworkPolicyRule {
	return networkv1.EgressNetworkPolicyRule{Type: networkv1.EgressNetworkPolicyRuleDeny, To: networkv1.EgressNetworkPolicyPeer{CIDRSelector: c}}
}

func allowDNS(n string) networkv1.EgressNetworkPolicyRule {
	return networkv1.EgressNetworkPolicyRule{Type: networkv1.EgressNetworkPolicyRuleAllow, To: networkv1.EgressNetworkPolicyPeer{DNSName: n}}
}

func denyDNS(n string) networkv1.EgressNetworkPolicyRule {
	return networkv1.EgressNetworkPolicyRule{Type: networkv1.EgressNetworkPolicyRuleDeny, To: networkv1.EgressNetworkPolicyPeer{DNSName: n}}
}

func TestConvertValid(t *testing.T) {
	p := Convert(enp("proj1", "fw", allowCIDR("203.0.113.0/24"), denyDNS("WWW.Lab.Example."), allowCIDR("10.1.2.3/8"), denyCIDR("0.0.0.0/0")))
	if p.Err != nil {
		t.Fatal(p.Err)
	}
	want := []string{"egress[0]: Allow 203.0.113.0/24", "egress[1]: Deny dnsName www.lab.example",
		"egress[2]: Allow 10.0.0.0/8", "egress[3]: Deny 0.0.0.0/0"}
	if len(p.Rules) != len(want) {
		t.Fatalf("rules %v", p.Rules)
	}
	for i, r := range p.Rules {
		if r.String() != want[i] {
			t.Errorf("rule %d = %q, want %q", i, r, want[i])
		}
	}
	if len(p.Notes) != 0 || p.Key() != "proj1/fw" {
		t.Errorf("notes %v key %s", p.Notes, p.Key())
	}
}

func TestConvertCorrectsZeroHost(t *testing.T) {
	p := Convert(enp("proj1", "fw", denyCIDR("0.0.0.0/32")))
	if p.Err != nil || p.Rules[0].CIDR != netip.MustParsePrefix("0.0.0.0/0") {
		t.Fatalf("0.0.0.0/32: %+v", p)
	}
	if len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "spec.egress[0].to.cidrSelector: 0.0.0.0/32 read as 0.0.0.0/0") {
		t.Errorf("notes %v", p.Notes)
	}
}

// TestConvertInvalid: what the CRD refuses (objects stored before it did)
// gives an error naming the field, and no rules.
func TestConvertInvalid(t *testing.T) {
	both := allowCIDR("1.2.3.0/24")
	both.To.DNSName = "x.example"
	bad := allowCIDR("1.2.3.0/24")
	bad.Type = "Reject"
	many := make([]networkv1.EgressNetworkPolicyRule, networkv1.MaxEgressNetworkPolicyRules+1)
	for i := range many {
		many[i] = allowCIDR("1.2.3.0/24")
	}
	for _, tc := range []struct {
		rules []networkv1.EgressNetworkPolicyRule
		want  string
	}{
		{[]networkv1.EgressNetworkPolicyRule{allowCIDR("1.2.3.0/24"), both}, "spec.egress[1].to: exactly one of cidrSelector and dnsName"},
		{[]networkv1.EgressNetworkPolicyRule{{Type: networkv1.EgressNetworkPolicyRuleAllow}}, "spec.egress[0].to: exactly one"},
		{[]networkv1.EgressNetworkPolicyRule{bad}, `spec.egress[0].type: "Reject" is neither Allow nor Deny`},
		{[]networkv1.EgressNetworkPolicyRule{denyCIDR("300.1.1.0/24")}, `spec.egress[0].to.cidrSelector: "300.1.1.0/24" is not an IPv4 CIDR`},
		{[]networkv1.EgressNetworkPolicyRule{denyCIDR("2001:db8::/32")}, "spec.egress[0].to.cidrSelector"},
		{[]networkv1.EgressNetworkPolicyRule{denyDNS("*.example.com")}, "spec.egress[0].to.dnsName"},
		{many, "spec.egress: 1001 rules, at most 1000"},
	} {
		p := Convert(enp("proj1", "fw", tc.rules...))
		if p.Err == nil || !strings.Contains(p.Err.Error(), tc.want) || p.Rules != nil {
			t.Errorf("%v: err %v rules %v, want %q and no rules", tc.rules[0], p.Err, p.Rules, tc.want)
		}
	}
}

func TestBuildInput(t *testing.T) {
	nns := []*networkv1.NetNamespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "b"}, NetName: "b", NetID: 12},
		{ObjectMeta: metav1.ObjectMeta{Name: "a"}, NetID: 11}, // no netname: the name
	}
	in := BuildInput([]*networkv1.EgressNetworkPolicy{enp("b", "x"), enp("a", "z"), enp("a", "y")}, nns)
	var keys []string
	for _, p := range in.Policies {
		keys = append(keys, p.Key())
	}
	if strings.Join(keys, " ") != "a/y a/z b/x" {
		t.Errorf("policies %v, want sorted", keys)
	}
	if in.VNIDs["a"] != 11 || in.VNIDs["b"] != 12 || len(in.VNIDs) != 2 {
		t.Errorf("VNIDs %v", in.VNIDs)
	}
}
