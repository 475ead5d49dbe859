package dnsresolver

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab/dnsserver"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
)

// TestThroughNodeNetNS runs the lab's setup: the DNS server in the external host's netns,
// the resolver in this process dialing from a node's netns (DialInNetNS), queries crossing
// the node's br-phy and the underlay. Needs root; run under the heavy-test lock.
func TestThroughNodeNetNS(t *testing.T) {
	if testing.Short() {
		t.Skip("needs root, network namespaces and Open vSwitch; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	const prefix = "dnsrns"
	if err := netlab.Sweep(prefix); err != nil {
		t.Fatal(err)
	}
	l, err := netlab.New(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	node, err := l.AddNode("a", netip.MustParsePrefix("198.18.0.11/24"))
	if err != nil {
		t.Fatal(err)
	}
	ext, err := l.AddExternalHost("ext", netlab.ExternalConfig{})
	if err != nil {
		t.Fatal(err)
	}
	dnsAddr := netip.AddrPortFrom(netlab.DefaultExternalDNSAddr, 53)
	underlayAddr := netip.AddrPortFrom(ext.IP.Addr(), 53)
	s, err := dnsserver.New(dnsserver.Config{Zones: []string{zone}, NetNSPath: ext.NetNS.Path,
		Addrs: []netip.AddrPort{dnsAddr, underlayAddr}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop) // before Close: the sockets pin the netns
	var many []string
	for i := 1; i <= 100; i++ {
		many = append(many, netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}).String())
	}
	setA(t, s, "www.lab.example", 5, "203.0.113.9")
	setA(t, s, "many.lab.example", 60, many...)

	for i, server := range []netip.AddrPort{dnsAddr, underlayAddr} {
		ch := &timedChanges{c: make(chan struct{}, 1)}
		r, err := New(Config{Servers: []netip.AddrPort{server}, Dial: DialInNetNS(node.NetNS.Path), OnChange: ch.record})
		if err != nil {
			t.Fatal(err)
		}
		stop := runResolver(t, r)
		track(t, r, "www.lab.example")
		track(t, r, "many.lab.example")
		ch.waitFor(t, "www.lab.example", "203.0.113.9", 3*time.Second)
		ch.waitFor(t, "many.lab.example", fmtAddrs(addrs(many...)), 3*time.Second)
		if i == 0 {
			setA(t, s, "www.lab.example", 5, "203.0.113.10")
			ch.waitFor(t, "www.lab.example", "203.0.113.10", 7*time.Second)
			setA(t, s, "www.lab.example", 5, "203.0.113.9")
		}
		stop()
	}
	for _, q := range s.Queries() {
		if q.From.Addr() != node.IP.Addr() {
			t.Errorf("query %+v not from node a's address %s", q, node.IP.Addr())
		}
	}
	if qs := s.QueriesFor("many.lab.example"); len(qs) < 4 || qs[0].Proto != "udp" || qs[1].Proto != "tcp" {
		t.Errorf("many.lab.example: queries %+v, want UDP (truncated) then TCP, per server", qs)
	}
}
