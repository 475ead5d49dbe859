package node

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned/fake"
	"github.com/ovs-sdn/ovs-sdn/pkg/dnsresolver"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// fakeDNS is the egress firewall's DNS on fakes: answers by name, changed by
// the test, with a query count per name and an optional delay.
type fakeDNS struct {
	mu      sync.Mutex
	answers map[string][]netip.Addr
	queries map[string]int
	delay   time.Duration
}

func newFakeDNS() *fakeDNS {
	return &fakeDNS{answers: map[string][]netip.Addr{}, queries: map[string]int{}}
}

func (d *fakeDNS) LookupA(ctx context.Context, name string) (dnsresolver.Answer, error) {
	d.mu.Lock()
	d.queries[name]++
	addrs, delay := slices.Clone(d.answers[name]), d.delay
	d.mu.Unlock()
	select {
	case <-time.After(delay):
	case <-ctx.Done():
		return dnsresolver.Answer{}, ctx.Err()
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return dnsresolver.Answer{Addrs: addrs, TTL: time.Second, Queries: 1}, nil
}

func (d *fakeDNS) set(name string, addrs ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.answers[name] = nil
	for _, a := range addrs {
		d.answers[name] = append(d.answers[name], netip.MustParseAddr(a))
	}
}

func (d *fakeDNS) count(name string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries[name]
}

func enp(ns, name string, rules ...networkv1.EgressNetworkPolicyRule) *networkv1.EgressNetworkPolicy {
	return &networkv1.EgressNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkv1.EgressNetworkPolicySpec{Egress: rules}}
}

func fwRule(typ networkv1.EgressNetworkPolicyRuleType, cidr, dns string) networkv1.EgressNetworkPolicyRule {
	return networkv1.EgressNetworkPolicyRule{Type: typ, To: networkv1.EgressNetworkPolicyPeer{CIDRSelector: cidr, DNSName: dns}}
}

const (
	fwAllow = networkv1.EgressNetworkPolicyRuleAllow
	fwDeny  = networkv1.EgressNetworkPolicyRuleDeny
)

// firewallEnv is the standard agent (multitenant, pods a in ns1/VNID 11 and
// b in ns2/VNID 12) with a fake DNS and a bridge that records bundles.
func firewallEnv(t *testing.T, dns *fakeDNS, objs ...runtime.Object) (*agentEnv, *gatedBridge) {
	t.Helper()
	gb := &gatedBridge{FakeBridge: ovs.NewFakeBridge()}
	sw := newFakeSwitch(podPort("ns1", "a", "10.128.0.2", 3), podPort("ns2", "b", "10.128.0.3", 4))
	objs = append(objs, testClusterNetwork(), hostSubnet("node1", "10.0.0.1", "10.128.0.0/23"),
		netNamespace("ns1", 11), netNamespace("ns2", 12), netNamespace("global", 0))
	e := newAgentEnvWithClient(t, gb.FakeBridge, sw, fake.NewSimpleClientset(objs...), func(c *Config) {
		c.Bridge, c.DNSLookuper = gb, dns
	})
	e.start()
	return e, gb
}

// table100 returns the bridge's per-VNID flows of table 100, as
// "priority=P,reg0=V[,nw_dst=D] actions=A" lines.
func table100(br *ovs.FakeBridge) []string {
	var out []string
	for _, f := range br.Flows() {
		if f.Table != ovs.TableEgressFirewall || !strings.Contains(f.MatchString(), "reg0=") {
			continue
		}
		_, actions, _ := strings.Cut(f.String(), " actions=")
		_, match, _ := strings.Cut(f.MatchString(), ",ip,")
		out = append(out, fmt.Sprintf("priority=%d,%s actions=%s", f.Priority, match, actions))
	}
	slices.Sort(out)
	return out
}

func (e *agentEnv) expectTable100(what string, want ...string) {
	e.t.Helper()
	slices.Sort(want)
	e.eventually(what, func() string {
		if got := table100(e.br); !slices.Equal(got, want) {
			return "table 100:\n  " + strings.Join(got, "\n  ") + "\nwant:\n  " + strings.Join(want, "\n  ")
		}
		return ""
	})
}

func TestEgressFirewallRules(t *testing.T) {
	e, _ := firewallEnv(t, newFakeDNS())
	ctx := context.Background()
	fw := e.client.NetworkV1().EgressNetworkPolicies("ns1")
	if _, err := fw.Create(ctx, enp("ns1", "fw", fwRule(fwAllow, "203.0.113.0/24", ""), fwRule(fwDeny, "203.0.113.8/29", ""),
		fwRule(fwAllow, "203.0.113.9/32", ""), fwRule(fwDeny, "0.0.0.0/0", "")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.expectTable100("policy created",
		"priority=4,reg0=0xb,nw_dst=203.0.113.0/24 actions=goto_table:101",
		"priority=3,reg0=0xb,nw_dst=203.0.113.8/29 actions=drop",
		"priority=2,reg0=0xb,nw_dst=203.0.113.9 actions=goto_table:101",
		"priority=1,reg0=0xb actions=drop")
	if _, err := fw.Update(ctx, enp("ns1", "fw", fwRule(fwDeny, "203.0.113.8/29", "")), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.expectTable100("policy changed", "priority=1,reg0=0xb,nw_dst=203.0.113.8/29 actions=drop")
	if err := fw.Delete(ctx, "fw", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.expectTable100("policy deleted")
}

// TestEgressFirewallInvalid: two policies in a namespace, a shared VNID and
// VNID 0 as SPEC §4.6 says; fixing each restores the rules.
func TestEgressFirewallInvalid(t *testing.T) {
	e, _ := firewallEnv(t, newFakeDNS(), enp("ns1", "fw", fwRule(fwDeny, "192.0.2.0/24", "")))
	ctx := context.Background()
	rules := "priority=1,reg0=0xb,nw_dst=192.0.2.0/24 actions=drop"
	e.expectTable100("start", rules)
	second, err := e.client.NetworkV1().EgressNetworkPolicies("ns1").Create(ctx, enp("ns1", "second"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.expectTable100("two policies in ns1: drop all", "priority=1,reg0=0xb actions=drop")
	if err := e.client.NetworkV1().EgressNetworkPolicies("ns1").Delete(ctx, second.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.expectTable100("second deleted", rules)
	// ns2 joins ns1's VNID: shared.
	if _, err := e.client.NetworkV1().NetNamespaces().Update(ctx, netNamespace("ns2", 11), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.expectTable100("VNID 11 shared by ns1 and ns2: drop all", "priority=1,reg0=0xb actions=drop")
	if _, err := e.client.NetworkV1().NetNamespaces().Update(ctx, netNamespace("ns2", 12), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.expectTable100("ns2 isolated again", rules)
	// A policy in a global namespace: ignored.
	if _, err := e.client.NetworkV1().EgressNetworkPolicies("global").Create(ctx, enp("global", "fw", fwRule(fwDeny, "0.0.0.0/0", "")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	e.expectTable100("VNID 0 ignored", rules)
}

// TestEgressFirewallDNSName: a dnsName rule renders one flow per address; a
// new answer replaces the flows in one bundle; a name no longer used is
// forgotten.
func TestEgressFirewallDNSName(t *testing.T) {
	dns := newFakeDNS()
	dns.set("www.lab.example", "203.0.113.9", "203.0.113.10")
	e, gb := firewallEnv(t, dns)
	ctx := context.Background()
	if _, err := e.client.NetworkV1().EgressNetworkPolicies("ns1").Create(ctx, enp("ns1", "fw",
		fwRule(fwAllow, "", "WWW.lab.example."), fwRule(fwAllow, "", "late.lab.example"), fwRule(fwDeny, "0.0.0.0/0", "")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deny := "priority=1,reg0=0xb actions=drop"
	e.expectTable100("resolved", deny,
		"priority=3,reg0=0xb,nw_dst=203.0.113.10 actions=goto_table:101",
		"priority=3,reg0=0xb,nw_dst=203.0.113.9 actions=goto_table:101")
	nb, ns := gb.mark()
	dns.set("www.lab.example", "203.0.113.11")
	dns.set("late.lab.example", "203.0.113.12")
	// The resolver's minimum refresh is 5 s; the late name's retry 2 s.
	e.eventuallyWithin(8*time.Second, "new answers", func() string {
		if got := table100(e.br); !slices.Contains(got, "priority=3,reg0=0xb,nw_dst=203.0.113.11 actions=goto_table:101") ||
			!slices.Contains(got, "priority=2,reg0=0xb,nw_dst=203.0.113.12 actions=goto_table:101") || len(got) != 3 {
			return strings.Join(got, "\n")
		}
		return ""
	})
	bundles, states := gb.since(nb, ns)
	for i, st := range states {
		var addrs []string
		for _, f := range st {
			if f.Table == ovs.TableEgressFirewall && f.Priority == 3 && strings.Contains(f.MatchString(), "reg0=") {
				addrs = append(addrs, f.MatchString())
			}
		}
		if len(addrs) != 2 && len(addrs) != 1 {
			t.Errorf("state %d after a bundle holds %d flows of the www rule: %v", i, len(addrs), addrs)
		}
	}
	t.Logf("%d bundles for the two changes", len(bundles))
	if err := e.client.NetworkV1().EgressNetworkPolicies("ns1").Delete(ctx, "fw", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.expectTable100("deleted")
	time.Sleep(100 * time.Millisecond)
	n := dns.count("www.lab.example")
	time.Sleep(6 * time.Second)
	if m := dns.count("www.lab.example"); m != n {
		t.Errorf("www.lab.example queried %d more times after its last policy went", m-n)
	}
	if got := testutil.ToFloat64(e.agent.m.flows); got == 0 {
		t.Error("no flows counted")
	}
}

// TestEgressFirewallStartWaitsForDNS: a restarted agent renders a policy's
// dnsName addresses in its first full sync (it waits for the first
// answers), so br0 never loses them.
func TestEgressFirewallStartWaitsForDNS(t *testing.T) {
	dns := newFakeDNS()
	dns.set("www.lab.example", "203.0.113.9")
	dns.delay = 300 * time.Millisecond
	e, gb := firewallEnv(t, dns, enp("ns1", "fw", fwRule(fwAllow, "", "www.lab.example"), fwRule(fwDeny, "0.0.0.0/0", "")))
	want := []string{"priority=1,reg0=0xb actions=drop", "priority=2,reg0=0xb,nw_dst=203.0.113.9 actions=goto_table:101"}
	e.expectTable100("started", want...)
	_, states := gb.since(0, 0)
	if len(states) == 0 {
		t.Fatal("no bridge state recorded")
	}
	first := ovs.NewFakeBridge()
	if err := first.ReplaceFlows(context.Background(), states[0]); err != nil {
		t.Fatal(err)
	}
	if got := table100(first); !slices.Equal(got, want) {
		t.Errorf("the start-up full sync wrote table 100:\n  %s\nwant the resolved address already:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// eventuallyWithin is eventually with another deadline.
func (e *agentEnv) eventuallyWithin(d time.Duration, what string, cond func() string) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: %s", what, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
