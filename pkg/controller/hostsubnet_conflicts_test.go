package controller_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
)

func (c *cluster) createHostSubnetAt(t *testing.T, name, subnet, hostIP string) {
	t.Helper()
	hs := &networkv1.HostSubnet{ObjectMeta: metav1.ObjectMeta{Name: name}, Host: name, HostIP: hostIP, Subnet: subnet}
	if _, err := c.net.NetworkV1().HostSubnets().Create(context.Background(), hs, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating HostSubnet %s: %v", name, err)
	}
}

// nextSecond sleeps until creationTimestamp (1 s resolution) of the next
// object is certainly later than that of the previous one.
func nextSecond() { time.Sleep(1100 * time.Millisecond) }

// conflictMarks returns the conflict annotation of every HostSubnet that has one.
func (c *cluster) conflictMarks(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, hs := range c.hostSubnets(t) {
		if v, ok := hs.Annotations[networkv1.HostSubnetConflictAnnotation]; ok {
			out[name] = v
		}
	}
	return out
}

func countEvents(events []string, parts ...string) int {
	n := 0
	for _, e := range events {
		if hasEvent([]string{e}, parts...) {
			n++
		}
	}
	return n
}

// TestHostSubnetConflicts: hand-made HostSubnets whose subnet duplicates a
// node's, or whose hostIP does, are marked (annotation + one Warning Event
// naming the older owner); the older object wins even when its name sorts
// last; ineligible objects (outside the cluster networks) make no one lose;
// fixing or deleting restores; a controller restart repeats no Event.
func TestHostSubnetConflicts(t *testing.T) {
	c := startCluster(t)
	c.createClusterNetwork(t, networkv1.NetworkPolicyPluginName, networkv1.ClusterNetworkEntry{CIDR: "10.128.0.0/14", HostSubnetLength: 9})
	rc := c.startController(t, "conflicts", nil)
	c.createNode(t, "zz-node", "192.168.0.1")
	eventually(t, 20*time.Second, func() string {
		if hs, ok := c.hostSubnets(t)["zz-node"]; !ok || hs.Subnet != documentedSubnet(0) {
			return fmt.Sprintf("zz-node HostSubnet not allocated: %+v", hs)
		}
		return ""
	})
	nextSecond()
	c.createHostSubnetAt(t, "a-dup-subnet", documentedSubnet(0), "192.168.9.1") // younger, name sorts first
	c.createHostSubnetAt(t, "b-dup-ip", documentedSubnet(5), "192.168.0.1")
	c.createHostSubnetAt(t, "c-outside", "10.200.0.0/23", "192.168.0.1")
	eventually(t, 15*time.Second, func() string {
		marks := c.conflictMarks(t)
		if len(marks) != 2 || marks["a-dup-subnet"] == "" || marks["b-dup-ip"] == "" {
			return fmt.Sprintf("conflict annotations %v, want a-dup-subnet and b-dup-ip", marks)
		}
		return ""
	})
	for name, parts := range map[string][]string{
		"a-dup-subnet": {"Warning HostSubnetConflict", "subnet 10.128.0.0/23 overlaps subnet 10.128.0.0/23 of the older HostSubnet zz-node"},
		"b-dup-ip":     {"Warning HostSubnetConflict", "hostIP 192.168.0.1 is also the hostIP of the older HostSubnet zz-node"},
	} {
		// Events are written by the recorder's broadcaster after the mark.
		eventually(t, 10*time.Second, func() string {
			if ev := c.eventsFor(t, "HostSubnet", name); countEvents(ev, parts...) != 1 {
				return fmt.Sprintf("%s: want exactly one Event %q, got %q", name, parts, ev)
			}
			return ""
		})
	}
	if ev := c.eventsFor(t, "HostSubnet", "zz-node"); countEvents(ev, "HostSubnetConflict") != 0 {
		t.Errorf("the older HostSubnet was marked: %q", ev)
	}
	rc.waitMetric(t, "ovs_sdn_controller_hostsubnet_conflicts", equals(2))

	// A restarted controller (a new leader) repeats no Event.
	rc.stop(t)
	rc = c.startController(t, "conflicts-2", nil)
	eventually(t, 15*time.Second, func() string {
		if v, _ := rc.metricIfRegistered(t, "ovs_sdn_controller_hostsubnet_conflicts"); v != 2 {
			return "new leader has not evaluated the conflicts"
		}
		return ""
	})
	time.Sleep(time.Second)
	if ev := c.eventsFor(t, "HostSubnet", "a-dup-subnet"); countEvents(ev, "HostSubnetConflict") != 1 {
		t.Errorf("after a restart: want still one HostSubnetConflict Event, got %q", ev)
	}

	// Fixing the subnet of one and deleting the winner of the other restores both.
	fixed := c.hostSubnets(t)["a-dup-subnet"]
	fixed.Subnet = documentedSubnet(9)
	if _, err := c.net.NetworkV1().HostSubnets().Update(context.Background(), &fixed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.deleteNode(t, "zz-node") // its HostSubnet (node-uid) is deleted by the controller
	eventually(t, 15*time.Second, func() string {
		if marks := c.conflictMarks(t); len(marks) != 0 {
			return fmt.Sprintf("conflict annotations left: %v", marks)
		}
		return ""
	})
	for _, name := range []string{"a-dup-subnet", "b-dup-ip"} {
		if ev := c.eventsFor(t, "HostSubnet", name); countEvents(ev, "Normal HostSubnetConflictResolved") != 1 {
			t.Errorf("%s: want one HostSubnetConflictResolved Event, got %q", name, ev)
		}
	}
}
