package controller_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/controller"
	"github.com/ovs-sdn/ovs-sdn/pkg/egressip"
)

// fakeNet is the egress health-check seam: every host answers with a RST
// (alive) unless it is down, then the dial hangs until its timeout.
type fakeNet struct {
	mu   sync.Mutex
	down map[string]bool // host IP
}

func (f *fakeNet) setDown(host string, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down[host] = down
}

func (f *fakeNet) dial(ctx context.Context, network, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	down := f.down[host]
	f.mu.Unlock()
	if down {
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
	}
	return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
}

// egressCluster is a networkpolicy-mode cluster with a controller using fn.
func egressCluster(t *testing.T, fn *fakeNet, nodes ...string) (*cluster, *runningController) {
	t.Helper()
	c := startCluster(t)
	c.createClusterNetwork(t, networkv1.NetworkPolicyPluginName, networkv1.ClusterNetworkEntry{CIDR: "10.128.0.0/14", HostSubnetLength: 9})
	rc := c.startController(t, "egress", func(o *controller.Options) { o.EgressDial = fn.dial })
	for i, n := range nodes {
		c.createNode(t, n, fmt.Sprintf("192.168.0.%d", i+1))
	}
	eventually(t, 20*time.Second, func() string {
		if hss := c.hostSubnets(t); len(hss) != len(nodes) {
			return fmt.Sprintf("%d HostSubnets, want %d", len(hss), len(nodes))
		}
		return ""
	})
	return c, rc
}

// editHostSubnet and editNetNamespace change an object with retries on
// conflict (the controller writes them too).
func (c *cluster) editHostSubnet(t *testing.T, name string, edit func(*networkv1.HostSubnet)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		hs, err := c.net.NetworkV1().HostSubnets().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		edit(hs)
		_, err = c.net.NetworkV1().HostSubnets().Update(context.Background(), hs, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("editing HostSubnet %s: %v", name, err)
	}
}

func (c *cluster) setEgressIPs(t *testing.T, namespace string, ips ...string) {
	t.Helper()
	eventually(t, 10*time.Second, func() string {
		if c.netNamespace(t, namespace) == nil {
			return "no NetNamespace " + namespace
		}
		return ""
	})
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		nn, err := c.net.NetworkV1().NetNamespaces().Get(context.Background(), namespace, metav1.GetOptions{})
		if err != nil {
			return err
		}
		nn.EgressIPs = nil
		for _, ip := range ips {
			nn.EgressIPs = append(nn.EgressIPs, networkv1.NetNamespaceEgressIP(ip))
		}
		_, err = c.net.NetworkV1().NetNamespaces().Update(context.Background(), nn, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("setting egressIPs of %s: %v", namespace, err)
	}
}

func egressCIDRs(cidrs ...string) func(*networkv1.HostSubnet) {
	return func(hs *networkv1.HostSubnet) {
		hs.EgressCIDRs = nil
		for _, c := range cidrs {
			hs.EgressCIDRs = append(hs.EgressCIDRs, networkv1.HostSubnetEgressCIDR(c))
		}
	}
}

func manualEgressIPs(ips ...string) func(*networkv1.HostSubnet) {
	return func(hs *networkv1.HostSubnet) {
		hs.EgressIPs = nil
		for _, ip := range ips {
			hs.EgressIPs = append(hs.EgressIPs, networkv1.HostSubnetEgressIP(ip))
		}
	}
}

// agentView evaluates the API objects exactly as a node agent does.
func (c *cluster) agentView(t *testing.T) egressip.State {
	t.Helper()
	var hss []*networkv1.HostSubnet
	for _, hs := range c.hostSubnets(t) {
		hss = append(hss, &hs)
	}
	var netnss []*networkv1.NetNamespace
	for _, nn := range c.netNamespaces(t) {
		netnss = append(netnss, &nn)
	}
	return egressip.Evaluate(egressip.FromAPI(hss, netnss))
}

// egressOf returns "node:ip,..." of the automatic assignment, by node.
func (c *cluster) egressOf(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for name, hs := range c.hostSubnets(t) {
		for _, ip := range hs.EgressIPs {
			out[name] = append(out[name], string(ip))
		}
		sort.Strings(out[name])
	}
	return out
}

// activeIPs returns the active IPs of namespace as "ip@node", sorted.
func activeIPs(st egressip.State, netns *networkv1.NetNamespace) []string {
	e := st.Egress[netns.NetID]
	if e == nil {
		return nil
	}
	var out []string
	for _, a := range e.Active {
		out = append(out, a.IP.String()+"@"+a.Node)
	}
	sort.Strings(out)
	return out
}

// TestEgressIPAutomatic: six namespaces with one IP each over two nodes'
// egressCIDRs spread 3/3; a namespace with two IPs uses both nodes; a node
// declared down (health check) is emptied onto the survivor within a few
// seconds — the IP that cannot join its sibling on the survivor becomes
// unassigned with an Event — and when it comes back nothing moves back.
func TestEgressIPAutomatic(t *testing.T) {
	fn := &fakeNet{down: map[string]bool{}}
	c, rc := egressCluster(t, fn, "n1", "n2")
	for _, n := range []string{"n1", "n2"} {
		c.editHostSubnet(t, n, egressCIDRs("192.0.2.0/24"))
	}
	for i := range 6 {
		ns := fmt.Sprintf("ns%d", i)
		c.createNamespace(t, ns)
		c.setEgressIPs(t, ns, fmt.Sprintf("192.0.2.%d", 10+i))
	}
	eventually(t, 15*time.Second, func() string {
		if got := c.egressOf(t); len(got["n1"]) != 3 || len(got["n2"]) != 3 {
			return fmt.Sprintf("egress IPs %v, want 3/3", got)
		}
		return ""
	})
	rc.waitMetric(t, "ovs_sdn_controller_egress_ips_active", equals(6))
	c.waitEvent(t, "NetNamespace", "ns0", "Normal EgressIPAssigned", "192.0.2.10 assigned to node")

	c.createNamespace(t, "two")
	c.setEgressIPs(t, "two", "192.0.2.100", "192.0.2.101")
	eventually(t, 10*time.Second, func() string {
		got := activeIPs(c.agentView(t), c.netNamespace(t, "two"))
		if len(got) != 2 || got[0][len(got[0])-2:] == got[1][len(got[1])-2:] {
			return fmt.Sprintf("namespace two active %v, want one IP on each node", got)
		}
		return ""
	})

	// n2 stops answering: everything that can moves to n1.
	before := c.egressOf(t)
	downAt := time.Now()
	fn.setDown("192.168.0.2", true)
	eventually(t, 15*time.Second, func() string {
		got := c.egressOf(t)
		if len(got["n2"]) != 0 || len(got["n1"]) != 7 {
			return fmt.Sprintf("egress IPs %v, want all 7 movable ones on n1", got)
		}
		return ""
	})
	t.Logf("MEASURED: health-check failure -> HostSubnets rewritten in %v (probe 1s, timeout 1s, 2 failures)", time.Since(downAt).Round(10*time.Millisecond))
	hs2 := c.hostSubnets(t)["n2"]
	if hs2.Annotations[networkv1.EgressUnreachableAnnotation] == "" {
		t.Errorf("n2 not annotated unreachable: %v", hs2.Annotations)
	}
	moved := len(before["n2"]) - 1 // one of namespace two's IPs has nowhere to go
	rc.waitMetric(t, "ovs_sdn_controller_egress_ip_failovers_total", equals(float64(moved)))
	c.waitEvent(t, "NetNamespace", "two", "Warning EgressIPUnassigned", "n2 unreachable", "n1 already hosting another egress IP")
	c.waitEvent(t, "HostSubnet", "n2", "Warning EgressNodeUnreachable", "192.168.0.2:9")
	if got := activeIPs(c.agentView(t), c.netNamespace(t, "two")); len(got) != 1 {
		t.Errorf("namespace two active %v, want its one IP on n1", got)
	}

	// n2 back: nothing moves back, the unassigned IP goes to n2.
	onN1 := c.egressOf(t)["n1"]
	fn.setDown("192.168.0.2", false)
	eventually(t, 10*time.Second, func() string {
		got := c.egressOf(t)
		if len(got["n2"]) != 1 || c.hostSubnets(t)["n2"].Annotations[networkv1.EgressUnreachableAnnotation] != "" {
			return fmt.Sprintf("egress IPs %v, annotations %v: want the unassigned IP on n2 and no mark", got, c.hostSubnets(t)["n2"].Annotations)
		}
		return ""
	})
	if got := c.egressOf(t)["n1"]; !slices.Equal(got, onN1) {
		t.Errorf("n1's IPs changed when n2 came back: %v -> %v", onN1, got)
	}
}

// TestEgressIPConflicts: an IP on two HostSubnets, an IP requested by two
// NetNamespaces and two IPs of one namespace on one node each make the IP
// inactive with a Warning Event naming both objects; fixing restores it.
func TestEgressIPConflicts(t *testing.T) {
	fn := &fakeNet{down: map[string]bool{}}
	c, rc := egressCluster(t, fn, "n1", "n2")
	for _, ns := range []string{"a", "b"} {
		c.createNamespace(t, ns)
	}
	active := func(ns string, want int) func() string {
		return func() string {
			if got := activeIPs(c.agentView(t), c.netNamespace(t, ns)); len(got) != want {
				return fmt.Sprintf("%s active %v, want %d", ns, got, want)
			}
			return ""
		}
	}

	// One IP on two manual HostSubnets.
	c.setEgressIPs(t, "a", "192.0.2.1")
	c.editHostSubnet(t, "n1", manualEgressIPs("192.0.2.1"))
	c.editHostSubnet(t, "n2", manualEgressIPs("192.0.2.1"))
	eventually(t, 10*time.Second, func() string {
		for _, obj := range [][2]string{{"HostSubnet", "n1"}, {"HostSubnet", "n2"}, {"NetNamespace", "a"}} {
			if !hasEvent(c.eventsFor(t, obj[0], obj[1]), "Warning EgressIPConflict", "192.0.2.1", "HostSubnets n1, n2") {
				return fmt.Sprintf("no EgressIPConflict naming n1 and n2 on %s %s: %q", obj[0], obj[1], c.eventsFor(t, obj[0], obj[1]))
			}
		}
		return active("a", 0)()
	})
	c.editHostSubnet(t, "n2", manualEgressIPs())
	eventually(t, 10*time.Second, active("a", 1))

	// One IP requested by two namespaces.
	c.setEgressIPs(t, "b", "192.0.2.1")
	eventually(t, 10*time.Second, func() string {
		for _, ns := range []string{"a", "b"} {
			if !hasEvent(c.eventsFor(t, "NetNamespace", ns), "Warning EgressIPConflict", "requested by NetNamespaces a, b") {
				return fmt.Sprintf("no EgressIPConflict naming a and b on %s: %q", ns, c.eventsFor(t, "NetNamespace", ns))
			}
		}
		return active("a", 0)()
	})
	c.setEgressIPs(t, "b")
	eventually(t, 10*time.Second, active("a", 1))

	// Two IPs of one namespace on one node.
	c.setEgressIPs(t, "a", "192.0.2.1", "192.0.2.2")
	c.editHostSubnet(t, "n1", manualEgressIPs("192.0.2.1", "192.0.2.2"))
	eventually(t, 10*time.Second, func() string {
		if !hasEvent(c.eventsFor(t, "HostSubnet", "n1"), "Warning EgressIPConflict", "192.0.2.1, 192.0.2.2 of NetNamespace a are all on HostSubnet n1") {
			return fmt.Sprintf("no SameNode conflict Event on n1: %q", c.eventsFor(t, "HostSubnet", "n1"))
		}
		return active("a", 0)()
	})
	c.editHostSubnet(t, "n1", manualEgressIPs("192.0.2.1"))
	c.editHostSubnet(t, "n2", manualEgressIPs("192.0.2.2"))
	eventually(t, 10*time.Second, active("a", 2))
	eventually(t, 10*time.Second, func() string {
		if v, _ := rc.metricIfRegistered(t, "ovs_sdn_controller_egress_ips_active"); v != 2 {
			return fmt.Sprintf("egress_ips_active = %v, want 2", v)
		}
		return ""
	})
	// The controller never edits manual HostSubnets.
	if got := c.egressOf(t); !slices.Equal(got["n1"], []string{"192.0.2.1"}) || !slices.Equal(got["n2"], []string{"192.0.2.2"}) {
		t.Errorf("manual egressIPs changed: %v", got)
	}
}
