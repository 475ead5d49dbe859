package netlab

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The first packet of a new flow between pods on two nodes must arrive: on a fresh lab with
// no warm-up traffic, after the sender's vswitchd restarts, after the receiver's. "Arrives"
// means within firstPacketBudget, well under the pod kernel's 1 s ARP retransmit, so a pod
// ARP request that the sender's vswitchd dropped while resolving the remote node (then
// arriving ~1 s late) fails the test just as a lost datagram does.
const firstPacketBudget = 500 * time.Millisecond

func TestFirstPacket(t *testing.T) {
	for round := 1; round <= 5; round++ {
		t.Run("round"+strconv.Itoa(round), func(t *testing.T) {
			x := newTwoNodeLab(t, "nlfirst")
			ca := udpListen(t, x.pa, 9999)
			cb := udpListen(t, x.pb, 9999)
			noPortsB := udpNoPorts(t, x.b)

			firstPacket(t, "fresh lab, a → b", x.pa, x.pb, cb)
			firstPacket(t, "fresh lab, b → a", x.pb, x.pa, ca)

			restartVswitchd(t, x.a, x.pa, x.b.IP.Addr(), "10.129.0.0/23")
			firstPacket(t, "after node a's vswitchd restart, a → b", x.pa, x.pb, cb)
			restartVswitchd(t, x.b, x.pb, x.a.IP.Addr(), "10.128.0.0/23")
			firstPacket(t, "after node b's vswitchd restart, a → b", x.pa, x.pb, cb)
			firstPacket(t, "after node b's vswitchd restart, b → a", x.pb, x.pa, ca)

			if d := udpNoPorts(t, x.b) - noPortsB; d != 0 {
				t.Errorf("node b's kernel got %d UDP datagrams for closed ports (VXLAN not decapsulated)", d)
			}
		})
	}
}

// TestARPRepliesOnlyFromPhysBridge: an ARP request for a node IP gets exactly one answer, from
// br-phy's MAC. The node's eth0 is an OVS port but also a kernel device that sees the same
// frames; if its kernel answered too (arp_ignore=0), the peer's vswitchd could cache eth0's
// MAC as the tunnel neighbour and its VXLAN would go to the kernel instead of tnl_pop.
func TestARPRepliesOnlyFromPhysBridge(t *testing.T) {
	l := newTestLab(t, "nlarp")
	a := mustNode(t, l, "a", "198.18.3.11/24")
	b := mustNode(t, l, "b", "198.18.3.12/24")
	bMAC, err := b.physMAC()
	if err != nil {
		t.Fatal(err)
	}
	cap := captureARP(t, a.NetNS, uplinkName)
	if _, err := a.NetNS.Exec(context.Background(), "ip", "neigh", "flush", "all"); err != nil {
		t.Fatal(err)
	}
	if err := a.Ping(b.IP.Addr(), 2); err != nil {
		t.Fatal(err)
	}
	replies := cap.replies(b.IP.Addr(), time.Second)
	if len(replies) == 0 {
		t.Fatalf("no ARP reply for %s seen on node a's eth0", b.IP.Addr())
	}
	for _, mac := range replies {
		if mac != bMAC {
			t.Errorf("ARP reply for %s from %s, want only br-phy's %s (all replies: %v)",
				b.IP.Addr(), mac, bMAC, replies)
		}
	}
	if n, err := a.Appctl("tnl/neigh/show"); err != nil || !strings.Contains(n, bMAC) {
		t.Errorf("node a's tunnel neighbours %q (%v), want %s for %s", n, err, bMAC, b.IP.Addr())
	}
}

// TestTunnelNeighborsKeptFresh: entries of an idle node pair do not age out (OVS ages static
// entries too), so the first packet after a long pause arrives.
func TestTunnelNeighborsKeptFresh(t *testing.T) {
	old := neighRefresh
	neighRefresh = 300 * time.Millisecond
	defer func() { neighRefresh = old }()
	x := newTwoNodeLab(t, "nlfresh")
	cb := udpListen(t, x.pb, 9999)
	if _, err := x.a.Appctl("tnl/neigh/aging", "1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // three aging periods without traffic
	firstPacket(t, "after 3 s idle with 1 s neighbour aging, a → b", x.pa, x.pb, cb)
}

// firstPacket sends one UDP datagram from → to:9999 and waits firstPacketBudget for it.
func firstPacket(t *testing.T, what string, from, to *Pod, c net.PacketConn) {
	t.Helper()
	msg := fmt.Sprintf("%s %d", what, time.Now().UnixNano())
	start := time.Now()
	udpSendOne(t, from, to.IP.Addr(), 9999, msg)
	if !udpRecv(c, msg, firstPacketBudget) {
		t.Errorf("%s: the first datagram did not arrive within %v\nnode %s tunnel neighbours:\n%s",
			what, firstPacketBudget, from.Node.Name, appctlOut(from.Node, "tnl/neigh/show"))
		return
	}
	t.Logf("%s: first datagram arrived after %v", what, time.Since(start).Round(10*time.Microsecond))
}

// restartVswitchd kills n's vswitchd, starts it again and re-adds the br0 flows.
func restartVswitchd(t *testing.T, n *Node, pod *Pod, remote netip.Addr, remoteSubnet string) {
	t.Helper()
	if err := n.Restart(OVSVswitchd); err != nil {
		t.Fatal(err)
	}
	addFlows(t, n, overlayFlows(pod, remote, mustPrefix(remoteSubnet), 5))
}

func appctlOut(n *Node, args ...string) string {
	out, err := n.Appctl(args...)
	if err != nil {
		return err.Error()
	}
	return out
}

// udpNoPorts is the node kernel's UdpNoPorts counter (datagrams for a port nobody listens
// on, each answered with ICMP port unreachable).
func udpNoPorts(t *testing.T, n *Node) int {
	t.Helper()
	out, err := n.Exec(context.Background(), "cat", "/proc/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i := range names {
			if names[i] == "NoPorts" && i < len(f) {
				v, err := strconv.Atoi(f[i])
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
	}
	t.Fatalf("no Udp NoPorts in /proc/net/snmp of node %s", n.Name)
	return 0
}

func udpListen(t *testing.T, p *Pod, port int) net.PacketConn {
	t.Helper()
	var c net.PacketConn
	err := inNetNS(p.NetNS.Path, func() (err error) {
		c, err = net.ListenPacket("udp4", ":"+strconv.Itoa(port))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func udpSendOne(t *testing.T, p *Pod, dst netip.Addr, port int, msg string) {
	t.Helper()
	var c net.Conn
	err := inNetNS(p.NetNS.Path, func() (err error) {
		c, err = net.Dial("udp4", netip.AddrPortFrom(dst, uint16(port)).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
}

// udpRecv waits up to d for a datagram with payload want (others are skipped).
func udpRecv(c net.PacketConn, want string, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 2048)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return false
		}
		if string(buf[:n]) == want {
			return true
		}
	}
}

// arpCapture is a packet socket on one device of a netns, receiving ARP frames.
type arpCapture struct{ fd int }

func captureARP(t *testing.T, n NetNS, dev string) *arpCapture {
	t.Helper()
	proto := htons(syscall.ETH_P_ARP)
	var fd int
	err := inNetNS(n.Path, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err = syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(proto))
		if err != nil {
			return err
		}
		return syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("ARP capture on %s in %s: %v", dev, n.Name, err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	return &arpCapture{fd: fd}
}

// replies returns the sender MACs of the ARP replies for ip received within d.
func (c *arpCapture) replies(ip netip.Addr, d time.Duration) []string {
	tv := syscall.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	_ = syscall.SetsockoptTimeval(c.fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	var macs []string
	buf := make([]byte, 1600)
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		n, _, err := syscall.Recvfrom(c.fd, buf, 0)
		if err != nil || n < 14+28 {
			continue
		}
		arp := buf[14:n]
		if binary.BigEndian.Uint16(arp[6:]) != 2 { // op: reply
			continue
		}
		if spa, _ := netip.AddrFromSlice(arp[14:18]); spa == ip {
			macs = append(macs, net.HardwareAddr(arp[8:14]).String())
		}
	}
	return macs
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
