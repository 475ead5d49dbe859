package controller_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
)

// TestClusterNetworkRecreated: updates are refused by the API server, but a
// ClusterNetwork deleted and recreated with other values gets one Warning
// Event saying the running controller keeps its configuration; recreating
// it with the values in use says nothing; the controller keeps working.
func TestClusterNetworkRecreated(t *testing.T) {
	c := startCluster(t)
	entry := networkv1.ClusterNetworkEntry{CIDR: "10.128.0.0/14", HostSubnetLength: 9}
	c.createClusterNetwork(t, networkv1.NetworkPolicyPluginName, entry)
	c.startController(t, "cn-watch", nil)
	c.createNode(t, "n1", "192.168.0.1")
	eventually(t, 15*time.Second, func() string {
		if len(c.hostSubnets(t)) != 1 {
			return "no HostSubnet for n1"
		}
		return ""
	})
	recreate := func(mtu uint32) {
		t.Helper()
		if err := c.net.NetworkV1().ClusterNetworks().Delete(context.Background(), networkv1.ClusterNetworkDefault, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		cn := &networkv1.ClusterNetwork{ObjectMeta: metav1.ObjectMeta{Name: networkv1.ClusterNetworkDefault},
			ClusterNetworks: []networkv1.ClusterNetworkEntry{entry}, ServiceNetwork: "172.30.0.0/16",
			PluginName: networkv1.NetworkPolicyPluginName, MTU: &mtu}
		if _, err := c.net.NetworkV1().ClusterNetworks().Create(context.Background(), cn, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	recreate(9000)
	changed := func() int {
		return countEvents(c.eventsFor(t, "ClusterNetwork", networkv1.ClusterNetworkDefault), "Warning ClusterNetworkChanged", "mtu=1450")
	}
	eventually(t, 10*time.Second, func() string {
		if n := changed(); n != 1 {
			return fmt.Sprintf("%d ClusterNetworkChanged Events, want 1: %q", n, c.eventsFor(t, "ClusterNetwork", networkv1.ClusterNetworkDefault))
		}
		return ""
	})
	recreate(1450)
	c.createNode(t, "n2", "192.168.0.2")
	eventually(t, 15*time.Second, func() string {
		if len(c.hostSubnets(t)) != 2 {
			return "no HostSubnet for n2: the controller stopped working"
		}
		return ""
	})
	if n := changed(); n != 1 {
		t.Errorf("recreating with the running values added an Event: %d", n)
	}
}
