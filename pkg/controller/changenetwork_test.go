package controller_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
)

// request sets the change-network annotation on a NetNamespace, as
// `oc adm pod-network` does, and waits until the controller removed it.
func (c *cluster) request(t *testing.T, name, value string) *networkv1.NetNamespace {
	t.Helper()
	ctx := context.Background()
	eventually(t, 10*time.Second, func() string {
		netns := c.netNamespace(t, name)
		if netns == nil {
			return "no NetNamespace " + name
		}
		if netns.Annotations == nil {
			netns.Annotations = map[string]string{}
		}
		netns.Annotations[networkv1.ChangePodNetworkAnnotation] = value
		if _, err := c.net.NetworkV1().NetNamespaces().Update(ctx, netns, metav1.UpdateOptions{}); err != nil {
			return err.Error()
		}
		return ""
	})
	var netns *networkv1.NetNamespace
	eventually(t, 10*time.Second, func() string {
		netns = c.netNamespace(t, name)
		if _, ok := netns.Annotations[networkv1.ChangePodNetworkAnnotation]; ok {
			return fmt.Sprintf("annotation %s=%s on %s not processed", networkv1.ChangePodNetworkAnnotation, value, name)
		}
		return ""
	})
	return netns
}

// TestChangeNetworkMultitenant: join, global and isolate as
// `oc adm pod-network` documents them, refusals for "default" and for a
// missing join target, and VNIDs released only when unreferenced.
func TestChangeNetworkMultitenant(t *testing.T) {
	c := startCluster(t)
	c.createClusterNetwork(t, networkv1.MultiTenantPluginName, networkv1.ClusterNetworkEntry{CIDR: "10.128.0.0/14", HostSubnetLength: 9})
	rc := c.startController(t, "multitenant", nil)
	for _, ns := range []string{"a", "b", "c", "d", "e"} {
		c.createNamespace(t, ns)
	}
	eventually(t, 20*time.Second, func() string { return c.converged(t, defaultCIDR, 9, true) })
	vnids := func() float64 { return rc.metric(t, "ovs_sdn_controller_vnids_allocated") }
	waitVNIDs := func(want float64, why string) {
		t.Helper()
		eventually(t, 5*time.Second, func() string {
			if got := vnids(); got != want {
				return fmt.Sprintf("%s: vnids_allocated = %v, want %v", why, got, want)
			}
			return ""
		})
	}
	// The gauge follows the NetNamespace writes: start from the count they show.
	distinct := map[uint32]bool{}
	for _, n := range c.netNamespaces(t) {
		if n.NetID != 0 {
			distinct[n.NetID] = true
		}
	}
	m0 := float64(len(distinct))
	waitVNIDs(m0, "every NetNamespace's VNID counted")
	xa := c.netNamespace(t, "a").NetID

	if got := c.request(t, "b", "join:a").NetID; got != xa {
		t.Fatalf("b joined a: netid %d, want %d", got, xa)
	}
	waitVNIDs(m0-1, "b's own VNID released after join")

	if got := c.request(t, "c", "global").NetID; got != 0 {
		t.Fatalf("c made global: netid %d, want 0", got)
	}
	waitVNIDs(m0-2, "c's VNID released after global")

	for _, req := range []string{"isolate", "join:a"} {
		if got := c.request(t, "default", req).NetID; got != 0 {
			t.Fatalf("default after refused %s: netid %d, want 0", req, got)
		}
	}
	eventually(t, 5*time.Second, func() string {
		if ev := c.eventsFor(t, "NetNamespace", "default"); !hasEvent(ev, "Warning ChangeNetworkRefused", `namespace "default" is forbidden`) {
			return fmt.Sprintf("no refusal Event on NetNamespace default: %q", ev)
		}
		return ""
	})

	c.request(t, "e", "join:missing")
	eventually(t, 5*time.Second, func() string {
		if ev := c.eventsFor(t, "NetNamespace", "e"); !hasEvent(ev, "Warning ChangeNetworkFailed", `"missing"`) {
			return fmt.Sprintf("no failure Event on NetNamespace e: %q", ev)
		}
		return ""
	})

	c.deleteNamespace(t, "a")
	eventually(t, 10*time.Second, func() string {
		if c.netNamespace(t, "a") != nil {
			return "NetNamespace a not deleted"
		}
		return ""
	})
	time.Sleep(500 * time.Millisecond)
	waitVNIDs(m0-2, "a's VNID still used by b must stay allocated")

	if got := c.request(t, "b", "isolate").NetID; got != xa {
		t.Fatalf("isolating b, which alone holds %d now, changed it to %d", xa, got)
	}
	if got := c.request(t, "d", "join:b").NetID; got != xa {
		t.Fatalf("d joined b: netid %d, want %d", got, xa)
	}
	waitVNIDs(m0-3, "d's own VNID released after join")
	xe := c.request(t, "d", "isolate").NetID
	if xe == xa || xe < 10 {
		t.Fatalf("isolating d (sharing %d with b) gave netid %d", xa, xe)
	}
	waitVNIDs(m0-2, "isolate allocated a new VNID")
	if got := c.netNamespace(t, "b").NetID; got != xa {
		t.Fatalf("b changed to %d when d isolated", got)
	}
	c.deleteNamespace(t, "b")
	waitVNIDs(m0-3, "b's VNID released once unreferenced")
	rc.running(t)
}

// TestChangeNetworkRefusedInNetworkPolicyMode: the request annotation is
// removed, the netid kept, and a Warning Event says why.
func TestChangeNetworkRefusedInNetworkPolicyMode(t *testing.T) {
	c := startCluster(t)
	c.createClusterNetwork(t, networkv1.NetworkPolicyPluginName, networkv1.ClusterNetworkEntry{CIDR: "10.128.0.0/14", HostSubnetLength: 9})
	c.startController(t, "networkpolicy", nil)
	c.createNamespace(t, "p")
	c.createNamespace(t, "q")
	eventually(t, 20*time.Second, func() string { return c.converged(t, defaultCIDR, 9, true) })
	before := c.netNamespace(t, "p").NetID
	for _, req := range []string{"join:q", "global", "isolate"} {
		if got := c.request(t, "p", req).NetID; got != before {
			t.Fatalf("%s changed netid %d to %d in networkpolicy mode", req, before, got)
		}
	}
	eventually(t, 5*time.Second, func() string {
		if ev := c.eventsFor(t, "NetNamespace", "p"); !hasEvent(ev, "Warning ChangeNetworkRefused", "network plugin does not allow NetNamespace renumbering") {
			return fmt.Sprintf("no refusal Event: %q", ev)
		}
		return ""
	})
}
