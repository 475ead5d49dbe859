package controller_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/controller"
)

// TestSubnetExhaustion: a /29 with hostSubnetLength 2 holds two node
// subnets. The third Node gets a Warning Event naming the exhausted cluster
// network, the controller keeps running, and deleting a Node hands its
// subnet to the waiting Node.
func TestSubnetExhaustion(t *testing.T) {
	c := startCluster(t)
	c.createClusterNetwork(t, networkv1.SingleTenantPluginName, networkv1.ClusterNetworkEntry{CIDR: "10.128.0.0/29", HostSubnetLength: 2})
	rc := c.startController(t, "exhaustion", nil)
	for i := range 3 {
		c.createNode(t, fmt.Sprintf("node-%d", i), fmt.Sprintf("192.168.0.%d", i+1))
		time.Sleep(200 * time.Millisecond) // deterministic: node-2 is the one left over
	}
	eventually(t, 20*time.Second, func() string {
		if n := len(c.hostSubnets(t)); n != 2 {
			return fmt.Sprintf("%d HostSubnets, want 2", n)
		}
		events := c.eventsFor(t, "Node", "node-2")
		if !hasEvent(events, "Warning SubnetAllocationFailed", "10.128.0.0/29", "exhausted") {
			return fmt.Sprintf("no exhaustion Warning on node-2; events: %q", events)
		}
		return ""
	})
	if _, ok := c.hostSubnets(t)["node-2"]; ok {
		t.Fatal("node-2 got a subnet although the network is exhausted")
	}
	rc.waitMetric(t, "ovs_sdn_controller_allocation_errors_total", atLeast(1))
	rc.waitMetric(t, "ovs_sdn_controller_hostsubnets_free", equals(0))
	rc.running(t)
	freed := c.hostSubnets(t)["node-0"].Subnet
	c.deleteNode(t, "node-0")
	eventually(t, 10*time.Second, func() string {
		hss := c.hostSubnets(t)
		if _, ok := hss["node-0"]; ok {
			return "HostSubnet node-0 not deleted"
		}
		if hss["node-2"].Subnet != freed {
			return fmt.Sprintf("node-2 has subnet %q, want the freed %s", hss["node-2"].Subnet, freed)
		}
		return c.converged(t, []netip.Prefix{netip.MustParsePrefix("10.128.0.0/29")}, 2, false)
	})
	if nn := c.netNamespaces(t); len(nn) != 0 {
		t.Errorf("subnet mode created NetNamespaces: %v", nn)
	}
	rc.running(t)
}

// TestVNIDExhaustion: with a VNID range that has room for two namespaces
// beyond the existing ones, the third new namespace gets a Warning Event
// naming the range; deleting a namespace releases its VNID to it.
func TestVNIDExhaustion(t *testing.T) {
	c := startCluster(t)
	c.createClusterNetwork(t, networkv1.NetworkPolicyPluginName, networkv1.ClusterNetworkEntry{CIDR: "10.128.0.0/14", HostSubnetLength: 9})
	existing, err := c.kube.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	maxID := uint32(10 + len(existing.Items) - 1 + 2 - 1) // existing minus "default", plus 2
	rc := c.startController(t, "vnids", func(o *controller.Options) { o.VNIDRange = controller.VNIDRange{Min: 10, Max: maxID} })
	for _, name := range []string{"a", "b", "c"} {
		c.createNamespace(t, name)
		time.Sleep(200 * time.Millisecond)
	}
	eventually(t, 20*time.Second, func() string {
		if c.netNamespace(t, "a") == nil || c.netNamespace(t, "b") == nil {
			return "a and b have no NetNamespaces yet"
		}
		events := c.eventsFor(t, "Namespace", "c")
		if !hasEvent(events, "Warning VNIDAllocationFailed", fmt.Sprintf("10..%d", maxID), "namespace c") {
			return fmt.Sprintf("no exhaustion Warning on namespace c; events %q", events)
		}
		return ""
	})
	if c.netNamespace(t, "c") != nil {
		t.Fatal("namespace c got a VNID beyond the range")
	}
	rc.running(t)
	freed := c.netNamespace(t, "a").NetID
	c.deleteNamespace(t, "a")
	eventually(t, 10*time.Second, func() string {
		n := c.netNamespace(t, "c")
		if n == nil || n.NetID != freed {
			return fmt.Sprintf("namespace c has NetNamespace %v, want netid %d", n, freed)
		}
		return c.converged(t, defaultCIDR, 9, true)
	})
	rc.waitMetric(t, "ovs_sdn_controller_vnids_allocated", equals(float64(maxID-10+1)))
}
