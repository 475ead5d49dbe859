package controller_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
)

func (c *cluster) createHostSubnet(t *testing.T, name, subnet string, annotations map[string]string) {
	t.Helper()
	hs := &networkv1.HostSubnet{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Host: name, HostIP: "192.168.9.9", Subnet: subnet}
	if _, err := c.net.NetworkV1().HostSubnets().Create(context.Background(), hs, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating HostSubnet %s: %v", name, err)
	}
}

// TestHostSubnetReconcile walks the cases of reference §9.2 against a real
// API server: hostIP change in place, re-annotation, orphans with and
// without node-uid, invalid subnets, recreated Nodes, assign-subnet hosts,
// Nodes without an InternalIP.
func TestHostSubnetReconcile(t *testing.T) {
	c := startCluster(t)
	c.createClusterNetwork(t, networkv1.SingleTenantPluginName, networkv1.ClusterNetworkEntry{CIDR: "10.128.0.0/14", HostSubnetLength: 9})
	// Objects that exist before the controller starts.
	c.createHostSubnet(t, "f5", "10.200.0.0/23", nil)                                                       // manual, left alone
	c.createHostSubnet(t, "ghost", "10.128.0.0/23", map[string]string{networkv1.NodeUIDAnnotation: "gone"}) // Node gone: deleted
	c.createHostSubnet(t, "n2", "10.200.2.0/23", nil)                                                       // invalid subnet for node n2
	c.createHostSubnet(t, "ext", "", map[string]string{networkv1.AssignHostSubnetAnnotation: "", networkv1.FixedVNIDHostAnnotation: "42"})
	n2 := c.createNode(t, "n2", "192.168.0.2")
	c.startController(t, "lifecycle", nil)
	n1 := c.createNode(t, "n1", "192.168.0.1")
	c.createNode(t, "noip", "")

	hs := func(name string) *networkv1.HostSubnet {
		h, ok := c.hostSubnets(t)[name]
		if !ok {
			return nil
		}
		return &h
	}
	eventually(t, 20*time.Second, func() string {
		switch {
		case hs("n1") == nil || hs("n1").HostIP != "192.168.0.1":
			return fmt.Sprintf("n1: %+v", hs("n1"))
		case hs("ghost") != nil:
			return "ghost HostSubnet not deleted"
		case hs("n2") == nil || hs("n2").Annotations[networkv1.NodeUIDAnnotation] != string(n2.UID) || !isClusterSubnet(hs("n2").Subnet):
			return fmt.Sprintf("n2 not recreated valid: %+v", hs("n2"))
		case hs("ext") == nil || !isClusterSubnet(hs("ext").Subnet):
			return fmt.Sprintf("ext not assigned: %+v", hs("ext"))
		}
		return ""
	})
	if f5 := hs("f5"); f5 == nil || f5.Subnet != "10.200.0.0/23" {
		t.Errorf("manual HostSubnet f5 was touched: %+v", f5)
	}
	ext := hs("ext")
	if _, ok := ext.Annotations[networkv1.AssignHostSubnetAnnotation]; ok || ext.Annotations[networkv1.FixedVNIDHostAnnotation] != "42" {
		t.Errorf("ext annotations %v: want assign-subnet removed, fixed-vnid-host kept", ext.Annotations)
	}
	c.waitEvent(t, "Node", "n2", "Warning InvalidHostSubnet", "10.200.2.0/23")

	// Node IP change: hostIP updated in place, same object and subnet.
	before := *hs("n1")
	c.setNodeIP(t, n1, "192.168.0.11")
	eventually(t, 10*time.Second, func() string {
		if h := hs("n1"); h.HostIP != "192.168.0.11" {
			return "hostIP not updated: " + h.HostIP
		}
		return ""
	})
	if h := hs("n1"); h.UID != before.UID || h.Subnet != before.Subnet {
		t.Errorf("IP change replaced the HostSubnet: %+v -> %+v", before, h)
	}

	// Annotation removed by someone: put back.
	h := hs("n1")
	delete(h.Annotations, networkv1.NodeUIDAnnotation)
	if _, err := c.net.NetworkV1().HostSubnets().Update(context.Background(), h, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() string {
		if hs("n1").Annotations[networkv1.NodeUIDAnnotation] != string(n1.UID) {
			return "node-uid annotation not restored"
		}
		return ""
	})

	// Node recreated under the same name: the HostSubnet follows the new UID.
	c.deleteNode(t, "n1")
	n1b := c.createNode(t, "n1", "192.168.0.21")
	eventually(t, 10*time.Second, func() string {
		h := hs("n1")
		if h == nil || h.Annotations[networkv1.NodeUIDAnnotation] != string(n1b.UID) || h.HostIP != "192.168.0.21" {
			return fmt.Sprintf("n1 HostSubnet not recreated for the new Node: %+v", h)
		}
		return ""
	})

	// A Node without an InternalIP gets no HostSubnet and an Event.
	c.waitEvent(t, "Node", "noip", "Warning NodeInternalIPMissing")
	if _, err := c.net.NetworkV1().HostSubnets().Get(context.Background(), "noip", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("node without InternalIP got a HostSubnet (err %v)", err)
	}

	// No duplicates among everything the controller allocated.
	seen := map[string]string{}
	for name, h := range c.hostSubnets(t) {
		if other, dup := seen[h.Subnet]; dup {
			t.Errorf("DUPLICATE subnet %s on %s and %s", h.Subnet, other, name)
		}
		seen[h.Subnet] = name
	}
}

func isClusterSubnet(s string) bool {
	p, err := netip.ParsePrefix(s)
	return err == nil && p.Bits() == 23 && netip.MustParsePrefix("10.128.0.0/14").Contains(p.Addr())
}
