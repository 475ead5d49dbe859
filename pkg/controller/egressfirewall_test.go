package controller_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/egressfirewall"
)

func (c *cluster) createEgressPolicy(t *testing.T, ns, name string, rules ...networkv1.EgressNetworkPolicyRule) {
	t.Helper()
	enp := &networkv1.EgressNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkv1.EgressNetworkPolicySpec{Egress: rules}}
	if _, err := c.net.NetworkV1().EgressNetworkPolicies(ns).Create(context.Background(), enp, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating EgressNetworkPolicy %s/%s: %v", ns, name, err)
	}
}

func (c *cluster) deleteEgressPolicy(t *testing.T, ns, name string) {
	t.Helper()
	if err := c.net.NetworkV1().EgressNetworkPolicies(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

var denyAll = networkv1.EgressNetworkPolicyRule{Type: networkv1.EgressNetworkPolicyRuleDeny, To: networkv1.EgressNetworkPolicyPeer{CIDRSelector: "0.0.0.0/0"}}

// waitEvents waits until the policy has exactly n Events with all parts.
func (c *cluster) waitEvents(t *testing.T, name string, n int, parts ...string) {
	t.Helper()
	eventually(t, 15*time.Second, func() string {
		ev := c.eventsFor(t, "EgressNetworkPolicy", name)
		if got := countEvents(ev, parts...); got != n {
			return fmt.Sprintf("%d Events %q on EgressNetworkPolicy %s, want %d: %q", got, parts, name, n, ev)
		}
		return ""
	})
}

// TestEgressFirewallEvents: in multitenant mode the controller records one
// Warning Event per policy for each case SPEC §4.6 names — two policies in
// a namespace, a policy in a VNID a join shares, a policy in a global
// namespace — also across a leader change, and the gauge follows the fixes.
func TestEgressFirewallEvents(t *testing.T) {
	c := startCluster(t)
	c.createClusterNetwork(t, networkv1.MultiTenantPluginName, networkv1.ClusterNetworkEntry{CIDR: "10.128.0.0/14", HostSubnetLength: 9})
	for _, ns := range []string{"one", "two", "joiner"} {
		c.createNamespace(t, ns)
	}
	rc := c.startController(t, "fw", nil)
	eventually(t, 20*time.Second, func() string { return c.converged(t, defaultCIDR, 9, true) })
	invalid := func(want float64) {
		t.Helper()
		eventually(t, 15*time.Second, func() string {
			if v, _ := rc.metricIfRegistered(t, "ovs_sdn_controller_egress_network_policies_invalid"); v != want {
				return fmt.Sprintf("egress_network_policies_invalid = %v, want %v", v, want)
			}
			return ""
		})
	}
	c.createEgressPolicy(t, "one", "fw", denyAll)
	c.createEgressPolicy(t, "two", "a", denyAll)
	c.createEgressPolicy(t, "two", "b", denyAll)
	c.createEgressPolicy(t, "default", "global", denyAll)
	invalid(3)
	c.waitEvents(t, "a", 1, "Warning "+egressfirewall.ReasonMultiple, "namespace two has 2 EgressNetworkPolicies (two/a, two/b)", "dropped")
	c.waitEvents(t, "b", 1, "Warning "+egressfirewall.ReasonMultiple)
	c.waitEvents(t, "global", 1, "Warning "+egressfirewall.ReasonGlobalVNID, "VNID 0")
	c.waitEvents(t, "fw", 0, "Warning")

	// joiner joins one's VNID: one/fw is now in a shared NetNamespace.
	c.request(t, "joiner", "join:one")
	c.waitEvents(t, "fw", 1, "Warning "+egressfirewall.ReasonSharedVNID, "shared by namespaces joiner, one")
	invalid(4)

	// A new leader repeats nothing.
	rc.stop(t)
	rc = c.startController(t, "fw-2", nil)
	invalid(4)
	time.Sleep(time.Second)
	for _, name := range []string{"a", "b", "global", "fw"} {
		c.waitEvents(t, name, 1, "Warning")
	}

	// Fixed: isolate joiner, delete the second policy; the gauge follows.
	c.request(t, "joiner", "isolate")
	c.deleteEgressPolicy(t, "two", "b")
	invalid(1) // default/global stays ignored
	c.deleteEgressPolicy(t, "default", "global")
	invalid(0)
	rc.running(t)
}

// TestEgressFirewallEventsSubnetMode: no VNIDs, so every policy gets
// EgressNetworkPolicyNotEnforced.
func TestEgressFirewallEventsSubnetMode(t *testing.T) {
	c := startCluster(t)
	c.createClusterNetwork(t, networkv1.SingleTenantPluginName, networkv1.ClusterNetworkEntry{CIDR: "10.128.0.0/14", HostSubnetLength: 9})
	c.createNamespace(t, "one")
	rc := c.startController(t, "fw", nil)
	c.createEgressPolicy(t, "one", "fw", denyAll)
	c.waitEvents(t, "fw", 1, "Warning "+egressfirewall.ReasonNotEnforced, networkv1.SingleTenantPluginName)
	eventually(t, 5*time.Second, func() string {
		if v := rc.metric(t, "ovs_sdn_controller_egress_network_policies_invalid"); v != 1 {
			return fmt.Sprintf("egress_network_policies_invalid = %v, want 1", v)
		}
		return ""
	})
}
