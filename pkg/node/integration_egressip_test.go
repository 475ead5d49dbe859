package node_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// Egress IPs on real OVS (issue 13): three nodes, an external host on the
// underlay, HostSubnet egressIPs set by the test (manual assignment; the
// controller's automatic assignment and failover are the lab's tests), the
// agents doing the rest.

var (
	egressIP1 = netip.MustParseAddr("198.18.0.100")
	egressIP2 = netip.MustParseAddr("198.18.0.101")
)

// setHostEgressIPs sets HostSubnet node's egressIPs.
func (c *itCluster) setHostEgressIPs(node string, ips ...netip.Addr) {
	c.t.Helper()
	ctx := context.Background()
	hs, err := c.cs.NetworkV1().HostSubnets().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	hs.EgressIPs = nil
	for _, ip := range ips {
		hs.EgressIPs = append(hs.EgressIPs, networkv1.HostSubnetEgressIP(ip.String()))
	}
	if _, err := c.cs.NetworkV1().HostSubnets().Update(ctx, hs, metav1.UpdateOptions{}); err != nil {
		c.t.Fatalf("HostSubnet %s egressIPs %v: %v", node, ips, err)
	}
}

// setNamespaceEgressIPs sets NetNamespace ns's egressIPs.
func (c *itCluster) setNamespaceEgressIPs(ns string, ips ...netip.Addr) {
	c.t.Helper()
	ctx := context.Background()
	nn, err := c.cs.NetworkV1().NetNamespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	nn.EgressIPs = nil
	for _, ip := range ips {
		nn.EgressIPs = append(nn.EgressIPs, networkv1.NetNamespaceEgressIP(ip.String()))
	}
	if _, err := c.cs.NetworkV1().NetNamespaces().Update(ctx, nn, metav1.UpdateOptions{}); err != nil {
		c.t.Fatalf("NetNamespace %s egressIPs %v: %v", ns, ips, err)
	}
}

// sourceSeen connects from p to the external host's first TCP service and
// returns the client address the host saw (its address only).
func sourceSeen(p *netlab.Pod, ext *netlab.ExternalHost, timeout time.Duration) (netip.Addr, error) {
	seen, err := p.NetNS.TCPHello(ext.Service(0, 80), timeout)
	if err != nil {
		return netip.Addr{}, err
	}
	ap, err := netip.ParseAddrPort(seen)
	return ap.Addr(), err
}

// waitSource waits until every pod is seen with source want (an invalid
// want: until every connection fails).
func waitSource(t *testing.T, what string, ext *netlab.ExternalHost, want netip.Addr, pods ...*netlab.Pod) time.Duration {
	t.Helper()
	start := time.Now()
	for _, p := range pods {
		for {
			got, err := sourceSeen(p, ext, 500*time.Millisecond)
			if want.IsValid() && err == nil && got == want || !want.IsValid() && err != nil {
				break
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%s: %s → external host: source %v (err %v) after 10 s, want %v", what, p.Name, got, err, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return time.Since(start)
}

func TestIntegrationEgressIP(t *testing.T) {
	c := newITCluster(t, "itegip", networkv1.NetworkPolicyPluginName, 3, 0)
	ext, err := c.lab.AddExternalHost("ext", netlab.ExternalConfig{})
	if err != nil {
		t.Fatal(err)
	}
	c.netNamespace("eg1", 21)
	c.netNamespace("plain", 22)
	var eg []*netlab.Pod
	for _, n := range c.nodes {
		eg = append(eg, n.addPod("eg1", "eg-"+n.Name))
	}
	plain := c.nodes[0].addPod("plain", "plain-a")
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]

	c.setNamespaceEgressIPs("eg1", egressIP1)
	c.setHostEgressIPs(b.name, egressIP1)

	t.Run("source is the egress IP from every node", func(t *testing.T) {
		took := waitSource(t, "egress IP on node b", ext, egressIP1, eg...)
		t.Logf("eg1 pods on all nodes seen as %s after %v", egressIP1, took.Round(time.Millisecond))
		if got, err := sourceSeen(plain, ext, 2*time.Second); err != nil || got != a.IP.Addr() {
			t.Errorf("a namespace without egress IPs: seen as %v (%v), want its node's %s", got, err, a.IP.Addr())
		}
		for _, p := range eg {
			got, err := p.NetNS.UDPHello(ext.Service(0, 53), 2*time.Second)
			if err != nil || !strings.HasPrefix(got, egressIP1.String()+":") {
				t.Errorf("UDP from %s seen as %q (%v), want %s", p.Name, got, err, egressIP1)
			}
		}
	})

	t.Run("inbound connections to the egress IP are refused", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn, err := ext.NetNS.DialTCP(ctx, netip.Addr{}, netip.AddrPortFrom(egressIP1, 80))
		if err == nil {
			conn.Close()
			t.Fatal("a new connection from outside to the egress IP was accepted")
		}
		if !strings.Contains(err.Error(), "refused") {
			t.Errorf("new connection to the egress IP: %v, want refused", err)
		}
	})

	t.Run("move to another node: never the wrong source", func(t *testing.T) {
		// A steady UDP stream from every eg1 pod while the IP moves b → c.
		mark := ext.Packets.Mark()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, p := range eg {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					_, _ = p.NetNS.UDPExchange(ext.Service(0, 5353), []byte("tick"), 100*time.Millisecond)
				}
			}()
		}
		time.Sleep(300 * time.Millisecond)
		c.setHostEgressIPs(b.name)
		c.setHostEgressIPs(cc.name, egressIP1)
		took := waitSource(t, "egress IP moved to node c", ext, egressIP1, eg...)
		time.Sleep(300 * time.Millisecond)
		close(stop)
		wg.Wait()
		var wrong []string
		from := map[netip.Addr]bool{}
		for _, p := range eg {
			from[p.IP.Addr()] = true
		}
		n := 0
		for _, pk := range ext.Packets.Since(mark) {
			if pk.Dst.Port() != 5353 {
				continue
			}
			n++
			if pk.Src.Addr() != egressIP1 {
				wrong = append(wrong, pk.String())
			}
		}
		drops, _ := ext.CaptureDrops()
		t.Logf("egress IP moved b → c: sources right again after %v; %d datagrams captured during the move (capture drops %d, lost %d)",
			took.Round(time.Millisecond), n, drops, ext.Packets.Lost())
		if len(wrong) > 0 {
			t.Errorf("%d packets reached the external host with another source than %s:\n%s", len(wrong), egressIP1, strings.Join(wrong, "\n"))
		}
		if n == 0 {
			t.Error("no datagram of the stream was captured: the check checked nothing")
		}
	})

	t.Run("no active egress IP: dropped, never the node IP", func(t *testing.T) {
		mark := ext.Packets.Mark()
		c.setHostEgressIPs(cc.name)
		waitSource(t, "egress IP on no node", ext, netip.Addr{}, eg...)
		for _, pk := range ext.Packets.Since(mark) {
			if slices.Contains([]netip.Addr{a.IP.Addr(), b.IP.Addr(), cc.IP.Addr()}, pk.Src.Addr()) && pk.Dst.Port() == 80 {
				t.Errorf("traffic of eg1 left with a node address: %s", pk)
			}
		}
		// A conflict (two namespaces ask for the IP) is inactive as well;
		// resolving it restores the traffic.
		c.setHostEgressIPs(a.name, egressIP1)
		waitSource(t, "egress IP on node a", ext, egressIP1, eg...)
		c.netNamespace("other", 23)
		c.setNamespaceEgressIPs("other", egressIP1)
		waitSource(t, "egress IP requested twice", ext, netip.Addr{}, eg...)
		c.setNamespaceEgressIPs("other")
		waitSource(t, "conflict resolved", ext, egressIP1, eg...)
	})

	t.Run("agent restart keeps flows and removes stale addresses", func(t *testing.T) {
		// A stale egress IP a previous agent held on node a.
		if _, err := a.NetNS.Exec(context.Background(), "ip", "route", "replace", egressIP2.String()+"/32", "via", "169.254.169.4",
			"dev", "tun0", "onlink"); err != nil {
			t.Fatal(err)
		}
		before := a.dumpFlows("")
		t0 := time.Now()
		a.stopAgent()
		ag := a.startAgent()
		if ag == nil {
			t.FailNow()
		}
		time.Sleep(500 * time.Millisecond)
		after := a.dumpFlows("")
		if _, changes, _ := ag.br.counts(); changes != 0 {
			t.Errorf("the restarted agent applied %d changes, want 0", changes)
		}
		checkUntouched(t, a.Name, before, after, time.Since(t0))
		out, err := a.NetNS.Exec(context.Background(), "ip", "-4", "route", "show", "dev", "tun0")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, egressIP2.String()) || !strings.Contains(out, egressIP1.String()) {
			t.Errorf("routes on tun0 after the restart:\n%s\nwant %s (held) and not %s (stale)", out, egressIP1, egressIP2)
		}
		waitSource(t, "after the restart", ext, egressIP1, eg...)
	})

	t.Run("an outside client of an egress-IP pod gets its replies", func(t *testing.T) {
		if _, err := eg[0].ServeWhoAmI(itEchoPort); err != nil {
			t.Fatal(err)
		}
		sc := &svcCluster{itCluster: c, ns: "eg1"}
		svc := sc.createService("eg-web", true, []svcPort{tcpPort}, nil)
		sc.setEndpoints("eg-web", []svcPort{tcpPort}, eg[0])
		sc.waitServiceFlows("eg-web", 1)
		for _, n := range c.nodes {
			w, err := ext.NetNS.TCPWho(netip.AddrPortFrom(n.IP.Addr(), nodePortOf(svc, tcpPort)), 2*time.Second)
			if err != nil || w.Server != eg[0].Name {
				t.Errorf("NodePort on node %s from outside to a pod of an egress-IP namespace: %v %v", n.Name, w, err)
			}
		}
	})

	t.Run("group and flows", func(t *testing.T) {
		// Node b tunnels eg1's traffic to node a, with eg1's VNID.
		flows := b.dumpFlows(fmt.Sprintf("table=%d,reg0=21", ovs.TableEgressRouting.ID))
		groups := b.dumpGroups(t)
		if len(flows) != 1 || !strings.Contains(groups, "set_field:"+a.IP.Addr().String()+"->tun_dst") {
			t.Errorf("node b: table 101 flows %v, groups:\n%s", flows, groups)
		}
	})
}
