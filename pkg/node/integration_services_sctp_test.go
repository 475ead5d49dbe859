package node_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// TestIntegrationServicesSCTP establishes with real packets what SCTP load
// balancing through a ClusterIP does on OVS 3.1's userspace datapath (the
// lab's; docs/services.md "Services: SCTP" reports it). OVS 3.1's userspace
// conntrack has no SCTP support: SCTP is one of the "other" protocols,
// tracked by addresses only (sport=0,dport=0 in dump-conntrack), and its NAT
// rewrites addresses, not SCTP ports (OVS 3.2, commit 501f665a5, added both).
//
// It asserts what works: an INIT to the ClusterIP reaches one endpoint,
// DNATed to the endpoint's address, with a valid CRC32c; the replies reach
// the client from the ClusterIP; every later packet of the association
// (COOKIE ECHO, DATA both ways) follows; a new conntrack entry may choose
// another endpoint (the select group hashes SCTP ports); sessionAffinity
// ClientIP's learn works for SCTP. And it pins what does not work, as
// documented, so that the documentation fails with it when OVS changes:
// the Service port is not translated to the endpoint's port, and every
// association of one client to one ClusterIP goes to the same endpoint
// while the address-only conntrack entry lives (30-60 s idle). The test
// log holds tcpdump's captures in every pod and the nodes' SCTP conntrack.
func TestIntegrationServicesSCTP(t *testing.T) {
	c := newSvcCluster(t, "itsctp", networkv1.NetworkPolicyPluginName, 2)
	same := svcPort{"sctp", corev1.ProtocolSCTP, itEchoPort}  // port = targetPort
	remap := svcPort{"sctp-remap", corev1.ProtocolSCTP, 9000} // to targetPort itEchoPort
	svc := c.createService("sctp", false, []svcPort{same, remap}, nil)
	c.setEndpoints("sctp", []svcPort{same, remap}, c.web...)
	c.waitServiceFlows("sctp", 2*len(c.web))
	s := newSCTPLab(t, c)

	t.Run("association through the ClusterIP", func(t *testing.T) {
		for i, ep := range c.web { // on the client's node, then on the other
			s.association(t, c.cl[0], vip(svc, same), ep, uint16(40000+100*i))
			s.logConntrack(t, "after an association to "+ep.Name)
		}
	})
	t.Run("the Service port is not translated", func(t *testing.T) {
		got := s.sendInit(t, c.cl[1], vip(svc, remap), 40200)
		t.Logf("INIT to %s reached %s at %s:%d (its endpoint port is %d)", vip(svc, remap), got.pod.Name, got.Dst, got.DstPort, itEchoPort)
		if int32(got.DstPort) != remap.port {
			t.Errorf("the INIT reached the endpoint on port %d, not the Service port %d: OVS now translates SCTP ports; "+
				"update docs/services.md (Services: SCTP)", got.DstPort, remap.port)
		}
	})
	t.Run("associations of one client share one endpoint", func(t *testing.T) {
		first := s.sendInit(t, c.cl[0], vip(svc, same), 40300).pod
		for sport := uint16(40301); sport < 40309; sport++ {
			if got := s.sendInit(t, c.cl[0], vip(svc, same), sport).pod; got != first {
				t.Errorf("association from port %d reached %s, the first one %s: SCTP associations are now "+
					"told apart by conntrack; update docs/services.md (Services: SCTP)", sport, got.Name, first.Name)
			}
		}
		s.logConntrack(t, "after 9 associations from one client")
	})
	t.Run("a new conntrack entry may choose another endpoint", func(t *testing.T) {
		seen := map[string]int{}
		for i := range 16 {
			s.flushConntrack(t)
			seen[s.sendInit(t, c.cl[0], vip(svc, same), uint16(40400+i)).pod.Name]++
		}
		t.Logf("16 associations, conntrack flushed before each: %v", seen)
		if len(seen) != len(c.web) {
			t.Errorf("16 new entries reached %v, want every endpoint", seen)
		}
	})
	t.Run("session affinity", func(t *testing.T) {
		c.createService("sctp-sticky", false, []svcPort{same}, func(s *corev1.ServiceSpec) {
			s.SessionAffinity = corev1.ServiceAffinityClientIP
		})
		sticky, err := c.kube.CoreV1().Services(svcNS).Get(context.Background(), "sctp-sticky", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c.setEndpoints("sctp-sticky", []svcPort{same}, c.web...)
		c.waitServiceFlows("sctp-sticky", len(c.web))
		first := s.sendInit(t, c.cl[1], vip(sticky, same), 40500).pod
		learned, err := c.nodes[1].Ofctl("dump-flows", netlab.PodBridge, fmt.Sprintf("table=%d", ovs.TableServiceAffinity.ID))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("ServiceAffinity on %s:\n%s", c.nodes[1].Name, learned)
		if !strings.Contains(learned, "sctp,") || !strings.Contains(learned, "nw_dst="+sticky.Spec.ClusterIP) {
			t.Errorf("no SCTP flow to %s learned in ServiceAffinity on %s", sticky.Spec.ClusterIP, c.nodes[1].Name)
		}
		s.flushConntrack(t)
		for sport := uint16(40501); sport < 40505; sport++ {
			if got := s.sendInit(t, c.cl[1], vip(sticky, same), sport).pod; got != first {
				t.Errorf("with ClientIP affinity and a new conntrack entry, port %d reached %s, want %s", sport, got.Name, first.Name)
			}
			s.flushConntrack(t)
		}
	})
}

// sctpLab is the SCTP side of a Service lab: a raw SCTP socket and a
// tcpdump capture in every client and endpoint pod.
type sctpLab struct {
	c    *svcCluster
	sock map[*netlab.Pod]*rawSCTP
	tag  uint32
}

func newSCTPLab(t *testing.T, c *svcCluster) *sctpLab {
	s := &sctpLab{c: c, sock: map[*netlab.Pod]*rawSCTP{}, tag: 0x5c7b0001}
	pods := append(append([]*netlab.Pod(nil), c.cl...), c.web...)
	captures := map[*netlab.Pod]*sctpCapture{}
	for _, p := range pods {
		s.sock[p] = openRawSCTP(t, p)
		captures[p] = startCapture(t, p)
	}
	t.Cleanup(func() {
		for _, p := range pods {
			t.Logf("tcpdump -vv sctp on %s (%s, node %s):\n%s", p.Name, p.IP.Addr(), p.Node.Name, captures[p].stop())
		}
	})
	return s
}

// arrival is an SCTP packet and the endpoint pod that received it.
type arrival struct {
	sctpSeen
	pod *netlab.Pod
}

// sendInit sends an INIT from client (source port sport, a new initiate tag)
// to dst, every 200 ms until an endpoint has it (at most 3 s), and checks
// what every ClusterIP INIT must show: one endpoint got it, DNATed to that
// endpoint's address, from the client's own address, CRC32c intact.
func (s *sctpLab) sendInit(t *testing.T, client *netlab.Pod, dst netip.AddrPort, sport uint16) arrival {
	t.Helper()
	s.tag++
	tag := s.tag
	msg := sctpMessage(sport, dst.Port(), 0, sctpChunk(chunkInit, initValue(tag)))
	isInit := func(p sctpSeen) bool { return p.Chunk == chunkInit && p.InitTag == tag }
	got := s.await(t, client, dst.Addr(), msg, isInit, fmt.Sprintf("INIT %s:%d → %s", client.Name, sport, dst))
	if len(got) != 1 {
		t.Fatalf("INIT %s:%d → %s reached %d endpoints, want 1", client.Name, sport, dst, len(got))
	}
	a := got[0]
	if a.Dst != a.pod.IP.Addr() || a.Src != client.IP.Addr() || !a.CRCValid {
		t.Errorf("INIT %s:%d → %s arrived as %s at %s: want it DNATed to the endpoint's own address, "+
			"from the client's, CRC32c valid", client.Name, sport, dst, a.sctpSeen, a.pod.Name)
	}
	return a
}

// await sends msg from client to dst every 200 ms until some endpoint pod
// has received a packet match accepts (at most 3 s) and returns every
// endpoint's first such packet.
func (s *sctpLab) await(t *testing.T, client *netlab.Pod, dst netip.Addr, msg []byte, match func(sctpSeen) bool, what string) []arrival {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		s.sock[client].send(t, dst, msg)
		time.Sleep(200 * time.Millisecond)
		var got []arrival
		for _, w := range s.c.web {
			if p, ok := s.sock[w].find(match); ok {
				got = append(got, arrival{p, w})
			}
		}
		if len(got) > 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no endpoint received it within 3 s", what)
		}
	}
}

// reply sends msg from the endpoint pod ep to the client and waits (3 s)
// for the client to receive it, which it must from the ClusterIP and the
// Service port (un-DNATed), CRC32c intact.
func (s *sctpLab) reply(t *testing.T, ep, client *netlab.Pod, from netip.AddrPort, msg []byte, match func(sctpSeen) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		s.sock[ep].send(t, client.IP.Addr(), msg)
		time.Sleep(200 * time.Millisecond)
		if p, ok := s.sock[client].find(match); ok {
			if p.Src != from.Addr() || p.SrcPort != from.Port() || !p.CRCValid {
				t.Errorf("%s: the client received %s, want it from %s (un-DNATed), CRC32c valid", what, p, from)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the client did not receive it within 3 s", what)
		}
	}
}

// association runs a whole association from client through the ClusterIP
// dst to the endpoint ep: INITs from source ports from sport on, with the
// conntrack entries flushed before each, until one reaches ep; then the
// rest of the four-way handshake and three DATA chunks each way, every
// packet of the client to ep, every packet of ep to the client from dst.
func (s *sctpLab) association(t *testing.T, client *netlab.Pod, dst netip.AddrPort, ep *netlab.Pod, sport uint16) {
	t.Helper()
	var a arrival
	for tries := 0; a.pod != ep; tries, sport = tries+1, sport+1 {
		if tries == 20 {
			t.Fatalf("20 INITs from %s to %s, none reached %s", client.Name, dst, ep.Name)
		}
		s.flushConntrack(t)
		a = s.sendInit(t, client, dst, sport)
	}
	sport = a.SrcPort
	clientTag := a.InitTag
	epTag := clientTag ^ 0xffff0000
	t.Logf("INIT %s:%d → %s reached %s as %s", client.Name, sport, dst, ep.Name, a.sctpSeen)
	s.reply(t, ep, client, dst, sctpMessage(a.DstPort, sport, clientTag, sctpChunk(chunkInitAck, initAckValue(epTag))),
		func(p sctpSeen) bool { return p.Chunk == chunkInitAck && p.InitTag == epTag }, "INIT ACK")
	s.follow(t, client, ep, dst, sctpMessage(sport, dst.Port(), epTag, sctpChunk(chunkCookieEcho, sctpCookie)),
		func(p sctpSeen) bool { return p.Chunk == chunkCookieEcho && p.VTag == epTag }, "COOKIE ECHO")
	s.reply(t, ep, client, dst, sctpMessage(a.DstPort, sport, clientTag, sctpChunk(chunkCookieAck, nil)),
		func(p sctpSeen) bool { return p.Chunk == chunkCookieAck && p.VTag == clientTag }, "COOKIE ACK")
	for i := range 3 {
		up, down := fmt.Sprintf("up %d/%d", sport, i), fmt.Sprintf("down %d/%d", sport, i)
		s.follow(t, client, ep, dst, sctpMessage(sport, dst.Port(), epTag, sctpChunk(chunkData, dataValue(uint32(1+i), up))),
			func(p sctpSeen) bool { return p.Chunk == chunkData && p.Payload == up }, "DATA "+up)
		s.reply(t, ep, client, dst, sctpMessage(a.DstPort, sport, clientTag, sctpChunk(chunkData, dataValue(uint32(1+i), down))),
			func(p sctpSeen) bool { return p.Chunk == chunkData && p.Payload == down }, "DATA "+down)
	}
}

// follow sends a later packet of the association from client to dst: it
// must reach ep, and only ep.
func (s *sctpLab) follow(t *testing.T, client, ep *netlab.Pod, dst netip.AddrPort, msg []byte, match func(sctpSeen) bool, what string) {
	t.Helper()
	got := s.await(t, client, dst.Addr(), msg, match, what)
	if len(got) != 1 || got[0].pod != ep || got[0].Src != client.IP.Addr() || !got[0].CRCValid {
		t.Errorf("%s from %s: reached %v, want only %s, from the client's address, CRC32c valid", what, client.Name, got, ep.Name)
	}
}

// logConntrack logs every node's SCTP conntrack entries.
func (s *sctpLab) logConntrack(t *testing.T, when string) {
	for _, n := range s.c.nodes {
		out, err := n.Appctl("dpctl/dump-conntrack", "-m")
		var lines []string
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "132,") || strings.Contains(l, "sctp,") {
				lines = append(lines, "  "+l)
			}
		}
		t.Logf("%s: SCTP conntrack on %s (err %v):\n%s", when, n.Name, err, strings.Join(lines, "\n"))
	}
}

// flushConntrack removes every SCTP conntrack entry on every node (zone 0,
// where Services are DNATed), as if they had expired.
func (s *sctpLab) flushConntrack(t *testing.T) {
	t.Helper()
	for _, n := range s.c.nodes {
		if _, err := n.Appctl("dpctl/flush-conntrack", "zone=0", "ct_nw_proto=132"); err != nil {
			t.Fatalf("flush SCTP conntrack on %s: %v", n.Name, err)
		}
	}
}
