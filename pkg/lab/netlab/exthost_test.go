package netlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/ovs-sdn/ovs-sdn/pkg/iptables"
)

// extLab is two nodes and the external host with its defaults.
type extLab struct {
	lab  *Lab
	a, b *Node
	ext  *ExternalHost
}

func newExtLab(t *testing.T, prefix string) *extLab {
	l := newTestLab(t, prefix)
	x := &extLab{lab: l, a: mustNode(t, l, "a", "198.18.0.11/24")}
	ext, err := l.AddExternalHost("ext", ExternalConfig{})
	if err != nil {
		t.Fatal(err)
	}
	x.ext = ext
	x.b = mustNode(t, l, "b", "198.18.0.12/24") // added after the host: routed too
	return x
}

func TestExternalHost(t *testing.T) {
	x := newExtLab(t, "nlext")
	t.Run("every address and port from every node", func(t *testing.T) { testEveryService(t, x) })
	t.Run("extra address has no servers", func(t *testing.T) {
		dns := netip.AddrPortFrom(DefaultExternalDNSAddr, 80)
		if err := x.a.NetNS.Ping(dns.Addr(), 2); err != nil {
			t.Error(err)
		}
		if _, err := x.a.NetNS.TCPHello(dns, time.Second); err == nil {
			t.Error("TCP to the DNS address answered")
		}
	})
	t.Run("capture", func(t *testing.T) { testCapture(t, x) })
	t.Run("probe a node from outside", func(t *testing.T) { testProbeNode(t, x) })
	t.Run("route back after vswitchd restart", func(t *testing.T) {
		if err := x.a.Restart(OVSVswitchd); err != nil {
			t.Fatal(err)
		}
		if got, err := x.a.NetNS.TCPHello(x.ext.Service(0, 80), 5*time.Second); err != nil || !strings.HasPrefix(got, "198.18.0.11:") {
			t.Errorf("after restart: %q, %v", got, err)
		}
	})
	t.Run("pod behind the node's masquerade", func(t *testing.T) { testPodEgress(t, x) })
}

func testEveryService(t *testing.T, x *extLab) {
	for _, n := range []*Node{x.a, x.b} {
		want := n.IP.Addr().String() + ":"
		for i := range x.ext.Addrs {
			for _, p := range x.ext.TCPPorts {
				if got, err := n.NetNS.TCPHello(x.ext.Service(i, p), 2*time.Second); err != nil || !strings.HasPrefix(got, want) {
					t.Errorf("node %s tcp %s: %q, %v", n.Name, x.ext.Service(i, p), got, err)
				}
			}
			for _, p := range x.ext.UDPPorts {
				if got, err := n.NetNS.UDPHello(x.ext.Service(i, p), 2*time.Second); err != nil || !strings.HasPrefix(got, want) {
					t.Errorf("node %s udp %s: %q, %v", n.Name, x.ext.Service(i, p), got, err)
				}
			}
		}
	}
	per := len(x.ext.Addrs) * (len(x.ext.TCPPorts) + len(x.ext.UDPPorts))
	if got := len(x.ext.Contacts.Snapshot()); got != 2*per {
		t.Errorf("%d contacts recorded, want %d", got, 2*per)
	}
}

// testCapture: a connection's packets, a datagram to a closed port and a SYN to an address
// without a server all show up with the source as sent; the contact log has the accepted
// connection only.
func testCapture(t *testing.T, x *extLab) {
	pm, cm := x.ext.Packets.Mark(), x.ext.Contacts.Mark()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := x.b.NetNS.DialTCP(ctx, netip.Addr{}, x.ext.Service(8, 443))
	if err != nil {
		t.Fatal(err)
	}
	local := conn.LocalAddr().(*net.TCPAddr).AddrPort()
	conn.Close()
	_, _ = x.b.NetNS.UDPExchange(netip.AddrPortFrom(x.ext.Addrs[3], 9), []byte("x"), 200*time.Millisecond)
	syn := func(p Packet) bool { return p.Src == local && p.Proto == ProtoTCP && p.TCPFlags&TCPSyn != 0 }
	if p, err := x.ext.Packets.Wait(ctx, pm, syn); err != nil || p.Dst != x.ext.Service(8, 443) {
		t.Errorf("SYN of the connection: %v, %v", p, err)
	}
	closed := func(p Packet) bool { return p.Proto == ProtoUDP && p.Dst == netip.AddrPortFrom(x.ext.Addrs[3], 9) }
	if p, err := x.ext.Packets.Wait(ctx, pm, closed); err != nil || p.Src.Addr() != x.b.IP.Addr() {
		t.Errorf("datagram to a closed port: %v, %v", p, err)
	}
	contacts := x.ext.Contacts.Since(cm)
	if len(contacts) != 1 || contacts[0].Src != local || contacts[0].Proto != "tcp" {
		t.Errorf("contacts %v, want the one TCP connection from %s", contacts, local)
	}
	if drops, err := x.ext.CaptureDrops(); err != nil || drops != 0 || x.ext.Packets.Lost() != 0 {
		t.Errorf("capture drops %d (%v), lost %d", drops, err, x.ext.Packets.Lost())
	}
}

// testProbeNode: the external host reaches a server in node a's netns from its underlay
// address and from a service address (the node routes the reply back through the host).
func testProbeNode(t *testing.T, x *extLab) {
	var ln net.Listener
	err := inNetNS(x.a.NetNS.Path, func() (err error) { ln, err = net.Listen("tcp4", ":30080"); return err })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s\n", c.RemoteAddr())
			c.Close()
		}
	}()
	dst := netip.AddrPortFrom(x.a.IP.Addr(), 30080)
	if got, err := x.ext.NetNS.TCPHello(dst, 2*time.Second); err != nil || !strings.HasPrefix(got, "198.18.0.254:") {
		t.Errorf("from the underlay address: %q, %v", got, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := x.ext.NetNS.DialTCP(ctx, x.ext.Addrs[4], dst)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 64)
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if n, err := conn.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), x.ext.Addrs[4].String()+":") {
		t.Errorf("from %s: %q, %v", x.ext.Addrs[4], buf[:n], err)
	}
}

// testPodEgress emulates the agent's egress path on node a: a pod on br0 whose traffic
// leaves through tun0 (normal L2 switching stands in for the pipeline), tun0 holding the
// gateway, ip_forward, and the agent's own iptables chains (pkg/iptables) in the node netns.
// Without the chains the host sees the pod's address (and cannot answer it); with them it
// sees node a's — and not one packet with the pod's address.
func testPodEgress(t *testing.T, x *extLab) {
	addOverlayBridge(t, x.a)
	addFlows(t, x.a, "priority=0,actions=NORMAL\n")
	for _, args := range [][]string{{"addr", "add", "10.128.0.1/23", "dev", "tun0"}, {"link", "set", "tun0", "up"},
		{"route", "add", "10.128.0.0/14", "dev", "tun0"}} {
		if err := x.a.NetNS.ip(args...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := x.a.Exec(context.Background(), "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"); err != nil {
		t.Fatal(err)
	}
	pod := mustPod(t, x.a, "pa", "10.128.0.2/23", "10.128.0.1")
	podSrc := func(p Packet) bool { return p.Src.Addr() == pod.IP.Addr() }
	mark := x.ext.Packets.Mark()
	if _, err := pod.NetNS.TCPHello(x.ext.Service(9, 80), time.Second); err == nil {
		t.Fatal("pod reached the external host without the node's masquerade")
	}
	if len(x.ext.Packets.Filter(mark, podSrc)) == 0 {
		t.Fatal("the capture did not see the pod's unmasqueraded SYN")
	}
	ensureNodeChains(t, x.a)
	mark = x.ext.Packets.Mark()
	for _, svc := range []netip.AddrPort{x.ext.Service(9, 80), x.ext.Service(1, 443)} {
		if got, err := pod.NetNS.TCPHello(svc, 5*time.Second); err != nil || !strings.HasPrefix(got, "198.18.0.11:") {
			t.Errorf("pod → %s: %q, %v", svc, got, err)
		}
	}
	if got, err := pod.NetNS.UDPHello(x.ext.Service(9, 53), 5*time.Second); err != nil || !strings.HasPrefix(got, "198.18.0.11:") {
		t.Errorf("pod → udp: %q, %v", got, err)
	}
	if wrong := x.ext.Packets.Filter(mark, podSrc); len(wrong) > 0 || len(x.ext.Packets.Since(mark)) == 0 {
		t.Errorf("packets with the pod's source after masquerade: %v (of %d)", wrong, len(x.ext.Packets.Since(mark)))
	}
}

// ensureNodeChains installs the agent's iptables chains in the node netns. go-iptables execs
// iptables, which inherits the netns of the locked thread.
func ensureNodeChains(t *testing.T, n *Node) {
	t.Helper()
	chains := iptables.NodeChains(iptables.Config{ClusterNetworks: []netip.Prefix{mustPrefix("10.128.0.0/14")},
		VXLANPort: 4789, MasqueradeBit: 0})
	err := ns.WithNetNSPath(n.NetNS.Path, func(ns.NetNS) error {
		ipt, err := iptables.New()
		if err != nil {
			return err
		}
		return iptables.Ensure(ipt, chains)
	})
	if err != nil {
		t.Fatalf("iptables on node %s: %v", n.Name, err)
	}
}

func TestExternalHostSweep(t *testing.T) {
	l := newTestLab(t, "nlextswp")
	mustNode(t, l, "a", "198.18.0.11/24")
	ext, err := l.AddExternalHost("ext", ExternalConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddExternalHost("ext2", ExternalConfig{UnderlayIP: mustPrefix("198.18.0.253/24")}); err == nil {
		t.Error("second host with an overlapping network accepted")
	}
	if _, err := l.AddExternalHost("ext3", ExternalConfig{UnderlayIP: mustPrefix("198.18.0.11/24"),
		Network: mustPrefix("192.0.2.0/24"), Addrs: []netip.Addr{}, ExtraAddrs: []netip.Addr{}}); err == nil {
		t.Error("host on a node's address accepted")
	}
	ext.Close() // a crashed run: sockets gone with the process, namespaces left
	if err := Sweep(l.Prefix); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, l)
}

func TestParseIPv4(t *testing.T) {
	tcp := []byte{0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 11, 203, 0, 113, 9,
		0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, TCPSyn, 0, 0, 0, 0, 0, 0}
	p, ok := parseIPv4(tcp)
	if !ok || p.Proto != ProtoTCP || p.Src.String() != "198.18.0.11:40000" || p.Dst.String() != "203.0.113.9:80" || p.TCPFlags != TCPSyn {
		t.Errorf("TCP SYN: %+v %v", p, ok)
	}
	frag := append([]byte(nil), tcp...)
	frag[6], frag[7] = 0, 10 // fragment offset 80: no ports
	if p, ok := parseIPv4(frag); !ok || p.Src.Port() != 0 || p.Src.Addr().String() != "198.18.0.11" {
		t.Errorf("non-first fragment: %+v %v", p, ok)
	}
	icmp := append([]byte{0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 198, 18, 0, 12, 203, 0, 113, 1}, 8, 0, 0, 0, 0, 0, 0, 0)
	if p, ok := parseIPv4(icmp); !ok || p.Proto != ProtoICMP || p.Dst.Port() != 0 {
		t.Errorf("ICMP: %+v %v", p, ok)
	}
	for _, bad := range [][]byte{nil, tcp[:19], append([]byte{0x60}, tcp[1:]...)} {
		if _, ok := parseIPv4(bad); ok {
			t.Errorf("parsed %x", bad)
		}
	}
}

func TestLog(t *testing.T) {
	l := newLog[int](3)
	l.add(1)
	m := l.Mark()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	go func() { time.Sleep(20 * time.Millisecond); l.add(2); l.add(3); l.add(4) }()
	if v, err := l.Wait(ctx, m, func(v int) bool { return v >= 3 }); err != nil || v != 3 {
		t.Errorf("Wait: %d, %v", v, err)
	}
	time.Sleep(50 * time.Millisecond)
	if got := l.Since(m); len(got) != 2 || got[0] != 2 || l.Lost() != 1 || len(l.Snapshot()) != 3 {
		t.Errorf("Since %v, lost %d", got, l.Lost())
	}
	if got := l.Filter(0, func(v int) bool { return v%2 == 1 }); len(got) != 2 {
		t.Errorf("Filter: %v", got)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel2()
	if _, err := l.Wait(short, 0, func(v int) bool { return v > 10 }); err == nil {
		t.Error("Wait without a match returned no error")
	}
}
