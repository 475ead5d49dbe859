package controller_test

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
)

var defaultCIDR = []netip.Prefix{netip.MustParsePrefix("10.128.0.0/14")}

// TestScale50Nodes200Namespaces: 50 Nodes and 200 Namespaces created
// concurrently yield 50 HostSubnets whose subnets are exactly the first 50
// of OpenShift's documented order, and 200 NetNamespaces with distinct
// VNIDs (default = 0). Reports how long the controller took.
func TestScale50Nodes200Namespaces(t *testing.T) {
	c := startCluster(t)
	c.createClusterNetwork(t, networkv1.NetworkPolicyPluginName, networkv1.ClusterNetworkEntry{CIDR: "10.128.0.0/14", HostSubnetLength: 9})
	rc := c.startController(t, "scale", nil)
	eventually(t, 30*time.Second, func() string {
		if err := rc.status.Ready(); err != nil || !rc.status.Leading() {
			return fmt.Sprintf("controller not leading and ready: %v", err)
		}
		return ""
	})
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 200; i += 5 {
				if i < 50 {
					c.createNode(t, fmt.Sprintf("node-%02d", i), fmt.Sprintf("192.168.1.%d", i+1))
				}
				c.createNamespace(t, fmt.Sprintf("ns-%03d", i))
			}
		}()
	}
	wg.Wait()
	created := time.Since(start)
	eventually(t, 60*time.Second, func() string { return c.converged(t, defaultCIDR, 9, true) })
	total := time.Since(start)
	t.Logf("MEASURED: 50 nodes + 200 namespaces created in %v; all HostSubnets and NetNamespaces present %v after the first create", created, total)

	var got, want []string
	for _, hs := range c.hostSubnets(t) {
		got = append(got, hs.Subnet)
		if !strings.HasPrefix(hs.HostIP, "192.168.1.") {
			t.Errorf("HostSubnet %s hostIP %s", hs.Name, hs.HostIP)
		}
	}
	for i := range 50 {
		want = append(want, documentedSubnet(i))
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("subnets\n got %v\nwant %v", got, want)
	}
	if n := len(c.netNamespaces(t)); n < 200 {
		t.Errorf("%d NetNamespaces, want >= 200", n)
	}
	rc.waitMetric(t, "ovs_sdn_controller_hostsubnets_allocated", equals(50))
	rc.waitMetric(t, "ovs_sdn_controller_hostsubnets_free", equals(512-50))
	rc.waitMetric(t, "ovs_sdn_controller_is_leader", equals(1))
	rc.running(t)
}

// TestInvalidClusterNetwork: Run refuses to start on a ClusterNetwork the
// API server accepts but that is invalid (overlapping cluster networks),
// with an error naming the field.
func TestInvalidClusterNetwork(t *testing.T) {
	c := startCluster(t)
	c.createClusterNetwork(t, "",
		networkv1.ClusterNetworkEntry{CIDR: "10.128.0.0/14", HostSubnetLength: 9},
		networkv1.ClusterNetworkEntry{CIDR: "10.128.0.0/15", HostSubnetLength: 9})
	rc := c.startController(t, "invalid", nil)
	select {
	case err := <-rc.done:
		rc.done <- nil // the cleanup expects a result
		want := `clusternetwork "default": clusterNetworks[1].CIDR "10.128.0.0/15" overlaps clusterNetworks[0].CIDR "10.128.0.0/14"`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Run = %v, want an error containing %s", err, want)
		}
		if !errorsIsInvalid(err) {
			t.Errorf("error does not wrap clusternetwork.ErrInvalid: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not refuse the invalid ClusterNetwork within 15s")
	}
	if leases, err := c.kube.CoordinationV1().Leases(leaseNamespace).List(context.Background(), metavListAll); err != nil || len(leases.Items) != 0 {
		t.Errorf("an invalid configuration must not take the Lease: %v %v", leases, err)
	}
	if hs := c.hostSubnets(t); len(hs) != 0 {
		t.Errorf("HostSubnets created: %v", hs)
	}
}
