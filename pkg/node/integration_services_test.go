package node_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovstest"
)

func TestIntegrationServices(t *testing.T) {
	c := newSvcCluster(t, "itsvc", networkv1.NetworkPolicyPluginName, 3)
	ports := []svcPort{tcpPort, udpPort}
	web := c.createService("web", true, ports, nil)
	c.setEndpoints("web", ports, c.web...)
	c.waitServiceFlows("web", 2*len(c.web))
	webNames := map[string]bool{}
	for _, w := range c.web {
		webNames[w.Name] = true
	}

	t.Run("ClusterIP from every node to every node", func(t *testing.T) {
		for _, p := range ports {
			for _, cl := range c.cl {
				seen := map[string]int{}
				for i := 0; i < 40 && len(seen) < len(c.web); i++ {
					w, err := who(cl.NetNS, p.proto, vip(web, p))
					if err != nil {
						t.Fatalf("%s %s → %s: %v", p.proto, cl.Name, vip(web, p), err)
					}
					if w.Client.Addr() != cl.IP.Addr() {
						t.Errorf("%s %s → ClusterIP: the endpoint saw client %s, want the pod's own address", p.proto, cl.Name, w.Client)
					}
					seen[w.Server]++
				}
				if len(seen) != len(c.web) {
					t.Errorf("%s from %s: endpoints reached %v, want all of %v", p.proto, cl.Name, seen, webNames)
				}
			}
		}
	})

	t.Run("300 connections spread", func(t *testing.T) {
		seen := spread(t, c.cl[0].NetNS, corev1.ProtocolTCP, vip(web, tcpPort), 300)
		t.Logf("300 TCP connections cl-a → web: %v", seen)
		for name := range webNames {
			if n := seen[name]; n == 0 || n > 150 {
				t.Errorf("endpoint %s got %d of 300 connections, want 1..150", name, n)
			}
		}
	})

	t.Run("hairpin", func(t *testing.T) {
		self := c.web[0]
		gw := c.nodes[0].subnet.Addr().Next()
		for i := 0; i < 40; i++ {
			w, err := self.NetNS.TCPWho(vip(web, tcpPort), 2*time.Second)
			if err != nil {
				t.Fatalf("%s → its own Service: %v", self.Name, err)
			}
			if w.Server == self.Name {
				if w.Client.Addr() != gw {
					t.Errorf("hairpin: the pod saw itself as %s, want the gateway %s (SNAT)", w.Client, gw)
				}
				return
			}
		}
		t.Errorf("%s never reached itself through its Service in 40 connections", self.Name)
	})

	t.Run("NodePort", func(t *testing.T) {
		np := nodePortOf(web, tcpPort)
		for _, target := range c.nodes {
			dst := netip.AddrPortFrom(target.IP.Addr(), np)
			// From the external host and from another node's host.
			from := []netlab.NetNS{c.ext.NetNS, c.nodes[(indexOf(c.nodes, target)+1)%len(c.nodes)].NetNS}
			for _, src := range from {
				w, err := src.TCPWho(dst, 2*time.Second)
				if err != nil {
					t.Errorf("NodePort %s from %s: %v", dst, src.Name, err)
					continue
				}
				if !webNames[w.Server] {
					t.Errorf("NodePort %s from %s answered by %q", dst, src.Name, w.Server)
				}
			}
			// And from a pod (through its node's host).
			if w, err := c.cl[0].NetNS.TCPWho(dst, 2*time.Second); err != nil || !webNames[w.Server] {
				t.Errorf("NodePort %s from pod %s: %v %v", dst, c.cl[0].Name, w, err)
			}
		}
		udp := netip.AddrPortFrom(c.nodes[1].IP.Addr(), nodePortOf(web, udpPort))
		if w, err := c.ext.NetNS.UDPWho(udp, 2*time.Second); err != nil || !webNames[w.Server] {
			t.Errorf("UDP NodePort %s from the external host: %v %v", udp, w, err)
		}
	})

	t.Run("externalTrafficPolicy Local", func(t *testing.T) {
		local := c.createService("local", true, []svcPort{tcpPort}, func(s *corev1.ServiceSpec) {
			s.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		})
		c.setEndpoints("local", []svcPort{tcpPort}, c.web[0])
		c.waitServiceFlows("local", 1)
		np := nodePortOf(local, tcpPort)
		w, err := c.ext.NetNS.TCPWho(netip.AddrPortFrom(c.nodes[0].IP.Addr(), np), 2*time.Second)
		if err != nil {
			t.Fatalf("eTP Local NodePort on the endpoint's node: %v", err)
		}
		if w.Server != c.web[0].Name || w.Client.Addr() != c.ext.IP.Addr() {
			t.Errorf("eTP Local: %s, want %s seeing the external host's own address %s", w, c.web[0].Name, c.ext.IP.Addr())
		}
		// A node without a local endpoint does not answer.
		_, err = c.ext.NetNS.TCPWho(netip.AddrPortFrom(c.nodes[1].IP.Addr(), np), time.Second)
		if err == nil {
			t.Errorf("eTP Local: node %s without a local endpoint answered", c.nodes[1].Name)
		}
	})

	t.Run("session affinity", func(t *testing.T) {
		c.createService("sticky", false, []svcPort{tcpPort}, func(s *corev1.ServiceSpec) {
			s.SessionAffinity = corev1.ServiceAffinityClientIP
			s.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(int32(3))}}
		})
		sticky, err := c.kube.CoreV1().Services(svcNS).Get(context.Background(), "sticky", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c.setEndpoints("sticky", []svcPort{tcpPort}, c.web...)
		c.waitServiceFlows("sticky", len(c.web))
		seen := spread(t, c.cl[1].NetNS, corev1.ProtocolTCP, vip(sticky, tcpPort), 50)
		if len(seen) != 1 {
			t.Errorf("50 connections with ClientIP affinity reached %v, want one endpoint", seen)
		}
		// After the timeout (3 s without a new connection) a new choice is
		// possible: over a few rounds, some other endpoint is chosen.
		first := ""
		for name := range seen {
			first = name
		}
		other := false
		for round := 0; round < 8 && !other; round++ {
			time.Sleep(3500 * time.Millisecond)
			w, err := c.cl[1].NetNS.TCPWho(vip(sticky, tcpPort), 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			other = w.Server != first
		}
		if !other {
			t.Errorf("after the affinity timeout, 8 new choices all went to %s again", first)
		}
	})

	t.Run("scale 3 → 1 → 0 → 2", func(t *testing.T) {
		c.createService("scale", false, ports, nil)
		scale, err := c.kube.CoreV1().Services(svcNS).Get(context.Background(), "scale", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c.setEndpoints("scale", ports, c.web...)
		c.waitServiceFlows("scale", 2*len(c.web))
		survivor := c.web[1]
		// A long-lived connection to the survivor.
		var conn interface {
			Write([]byte) (int, error)
			Read([]byte) (int, error)
			Close() error
		}
		for i := 0; i < 60 && conn == nil; i++ {
			cn, w, err := c.cl[0].NetNS.TCPWhoConn(vip(scale, tcpPort), 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if w.Server == survivor.Name {
				conn = cn
			} else {
				cn.Close()
			}
		}
		if conn == nil {
			t.Fatalf("no connection reached %s in 60 tries", survivor.Name)
		}
		defer conn.Close()
		alive := func(step string) {
			t.Helper()
			msg := []byte("ping " + step + "\n")
			buf := make([]byte, len(msg))
			if _, err := conn.Write(msg); err != nil {
				t.Fatalf("%s: long-lived connection write: %v", step, err)
			}
			if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != string(msg) {
				t.Fatalf("%s: long-lived connection echo %q, %v", step, buf, err)
			}
		}
		// A UDP flow (one socket: one source port) to an endpoint that
		// leaves: conntrack pins it to that endpoint until the agent
		// flushes its entries, then it moves to the survivor.
		var udpConn *udpFlow
		for i := 0; i < 60 && udpConn == nil; i++ {
			u := dialUDP(t, c.cl[2], vip(scale, udpPort))
			if w := u.who(t); w.Server != survivor.Name {
				udpConn = u
			} else {
				u.Close()
			}
		}
		if udpConn == nil {
			t.Fatal("no UDP flow reached an endpoint other than the survivor in 60 tries")
		}
		defer udpConn.Close()
		c.setEndpoints("scale", ports, survivor)
		c.waitServiceFlows("scale", 2)
		alive("3 → 1")
		deadline := time.Now().Add(3 * time.Second)
		for w := udpConn.who(t); w.Server != survivor.Name; w = udpConn.who(t) {
			if time.Now().After(deadline) {
				t.Fatalf("the UDP flow still reaches the removed endpoint %s 3 s after scaling to 1 (conntrack not flushed)", w.Server)
			}
			time.Sleep(100 * time.Millisecond)
		}
		for p, seen := range map[svcPort]map[string]int{
			tcpPort: spread(t, c.cl[2].NetNS, corev1.ProtocolTCP, vip(scale, tcpPort), 20),
			udpPort: spread(t, c.cl[2].NetNS, corev1.ProtocolUDP, vip(scale, udpPort), 20),
		} {
			if len(seen) != 1 || seen[survivor.Name] != 20 {
				t.Errorf("%s after scaling to 1: %v, want all to %s", p.proto, seen, survivor.Name)
			}
		}

		c.setEndpoints("scale", ports)
		c.waitServiceFlows("scale", 0)
		alive("1 → 0")
		for _, cl := range c.cl {
			start := time.Now()
			_, err := cl.NetNS.TCPWho(vip(scale, tcpPort), 3*time.Second)
			took := time.Since(start)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("%s → Service without endpoints: %v after %v, want connection refused", cl.Name, err, took)
			} else if took > time.Second {
				t.Errorf("%s → Service without endpoints: refused only after %v, want < 1 s", cl.Name, took)
			}
		}

		c.setEndpoints("scale", ports, c.web[1], c.web[2])
		c.waitServiceFlows("scale", 4)
		alive("0 → 2")
		seen := spread(t, c.cl[0].NetNS, corev1.ProtocolTCP, vip(scale, tcpPort), 30)
		if len(seen) != 2 || seen[c.web[0].Name] != 0 {
			t.Errorf("after scaling to web-b and web-c: %v", seen)
		}
	})

	t.Run("NetworkPolicy applies after DNAT", func(t *testing.T) {
		// Only cl-a may reach the web pods (on any port).
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: svcNS, Name: "web-from-a"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
					{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"client": "a"}}}}}},
			}}
		c.createPolicy(t, np)
		defer c.deletePolicy(t, svcNS, np.Name)
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, errA := c.cl[0].NetNS.TCPWho(vip(web, tcpPort), time.Second)
			_, errB := c.cl[1].NetNS.TCPWho(vip(web, tcpPort), 300*time.Millisecond)
			if errA == nil && errB != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the policy: cl-a → web %v, cl-b → web %v; want cl-a allowed and cl-b blocked", errA, errB)
			}
		}
		// Every endpoint, each behind the ClusterIP: cl-a always gets in,
		// cl-b never does.
		seen := spread(t, c.cl[0].NetNS, corev1.ProtocolTCP, vip(web, tcpPort), 30)
		if len(seen) != len(c.web) {
			t.Errorf("cl-a through the ClusterIP under the policy reached %v", seen)
		}
		for i := 0; i < 10; i++ {
			if w, err := c.cl[1].NetNS.TCPWho(vip(web, tcpPort), 300*time.Millisecond); err == nil {
				t.Fatalf("cl-b reached %s through the ClusterIP although the policy allows only cl-a", w.Server)
			}
		}
	})

	t.Run("agent restart with 100 Services", func(t *testing.T) {
		cookies := map[uint64]bool{}
		for i := 0; i < 100; i++ {
			name := fmt.Sprintf("many-%d", i)
			c.createService(name, i%2 == 0, []svcPort{tcpPort}, nil)
			c.setEndpoints(name, []svcPort{tcpPort}, c.web...)
			cookies[serviceCookie(name)] = true
		}
		a := c.nodes[0]
		deadline := time.Now().Add(20 * time.Second)
		for {
			n := 0
			for _, f := range a.dumpFlows(fmt.Sprintf("table=%d", ovs.TableServiceLB.ID)) {
				if f.Priority == 210 && cookies[f.Cookie&ovs.OwnerMask] {
					n++
				}
			}
			if n == 100*len(c.web) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node a: %d DNAT flows of the 100 Services after 20 s, want %d", n, 100*len(c.web))
			}
			time.Sleep(100 * time.Millisecond)
		}
		conn, w, err := c.cl[0].NetNS.TCPWhoConn(vip(web, tcpPort), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		before, groupsBefore := a.dumpFlows(""), a.dumpGroups(t)
		t0 := time.Now()
		a.stopAgent()
		ag := a.startAgent()
		if ag == nil {
			t.FailNow()
		}
		time.Sleep(500 * time.Millisecond)
		after, groupsAfter := a.dumpFlows(""), a.dumpGroups(t)
		bundles, changes, _ := ag.br.counts()
		t.Logf("node a: %d flows, %d groups; agent restarted, ready in %v; the new agent applied %d bundles (%d changes)",
			len(after), strings.Count(groupsAfter, "\n")+1, ag.ready.Round(time.Millisecond), bundles, changes)
		if changes != 0 {
			t.Errorf("the restarted agent applied %d flow or group changes, want 0", changes)
		}
		checkUntouched(t, a.Name, before, after, time.Since(t0))
		if groupsBefore != groupsAfter {
			t.Errorf("groups changed across the agent restart:\n%s", ovstest.LineDiff(groupsBefore, groupsAfter))
		}
		if _, err := fmt.Fprintln(conn, "still there"); err != nil {
			t.Fatalf("connection to %s across the restart: %v", w.Server, err)
		}
		if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || line != "still there\n" {
			t.Errorf("connection to %s across the restart: echo %q, %v", w.Server, line, err)
		}
	})

	t.Run("ovs-vswitchd restart", func(t *testing.T) {
		a := c.nodes[0]
		t0 := time.Now()
		if err := a.Restart(netlab.OVSVswitchd); err != nil {
			t.Fatal(err)
		}
		for {
			_, err1 := c.cl[0].NetNS.TCPWho(vip(web, tcpPort), 300*time.Millisecond)
			_, err2 := c.ext.NetNS.TCPWho(netip.AddrPortFrom(a.IP.Addr(), nodePortOf(web, tcpPort)), 300*time.Millisecond)
			if err1 == nil && err2 == nil {
				break
			}
			if time.Since(t0) > 15*time.Second {
				t.Fatalf("Services on node a still down 15 s after the ovs-vswitchd restart: ClusterIP %v, NodePort %v", err1, err2)
			}
		}
		back := time.Since(t0)
		t.Logf("ovs-vswitchd on node a restarted: ClusterIP and NodePort back after %v", back.Round(time.Millisecond))
		if back > 5*time.Second {
			t.Errorf("Services back only %v after the ovs-vswitchd restart, want <= 5 s", back)
		}
		// Every endpoint, all groups back.
		if seen := spread(t, c.cl[0].NetNS, corev1.ProtocolTCP, vip(web, tcpPort), 30); len(seen) != len(c.web) {
			t.Errorf("after the restart the ClusterIP reaches %v", seen)
		}
	})

	t.Run("bad Service", func(t *testing.T) {
		c.createService("ext-name", false, nil, func(s *corev1.ServiceSpec) {
			s.Type, s.ExternalName = corev1.ServiceTypeExternalName, "db.example.invalid"
		})
		deadline := time.Now().Add(10 * time.Second)
		for {
			evs, err := c.kube.CoreV1().Events(svcNS).List(context.Background(), metav1.ListOptions{
				FieldSelector: "involvedObject.name=ext-name,reason=ServiceNotProgrammed"})
			if err == nil && len(evs.Items) > 0 {
				t.Logf("Event: %s", evs.Items[0].Message)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no ServiceNotProgrammed Event for the ExternalName Service (%v)", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if _, err := c.cl[0].NetNS.TCPWho(vip(web, tcpPort), 2*time.Second); err != nil {
			t.Errorf("other Services after a bad one: %v", err)
		}
	})
}

// udpFlow is one UDP socket in a pod, connected to a Service: every
// datagram of it has the same 5-tuple.
type udpFlow struct{ net.Conn }

func dialUDP(t *testing.T, from *netlab.Pod, dst netip.AddrPort) *udpFlow {
	t.Helper()
	var conn net.Conn
	err := ns.WithNetNSPath(from.NetNS.Path, func(ns.NetNS) (err error) {
		conn, err = net.Dial("udp4", dst.String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return &udpFlow{conn}
}

// who sends one datagram and returns the answer (retrying a lost one).
func (u *udpFlow) who(t *testing.T) netlab.Who {
	t.Helper()
	buf := make([]byte, 2048)
	for try := 0; try < 5; try++ {
		msg := fmt.Sprintf("who %d", time.Now().UnixNano())
		if _, err := u.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = u.SetReadDeadline(time.Now().Add(time.Second))
		n, err := u.Read(buf)
		if err != nil {
			continue
		}
		line, _, _ := strings.Cut(string(buf[:n]), "\n")
		name, addr, _ := strings.Cut(line, " ")
		return netlab.Who{Server: name, Client: netip.MustParseAddrPort(addr)}
	}
	t.Fatalf("UDP flow %s → %s: no answer to 5 datagrams", u.LocalAddr(), u.RemoteAddr())
	return netlab.Who{}
}

// dumpGroups is n's groups as dump-groups prints them, sorted.
func (n *itNode) dumpGroups(t *testing.T) string {
	t.Helper()
	out, err := n.Ofctl("dump-groups", netlab.PodBridge)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")[1:]
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func indexOf[T comparable](s []T, v T) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// TestIntegrationServicesMultitenant: in multitenant mode a Service is
// reachable from its own project, from VNID 0 and from joined projects,
// and from nothing else (the endpoint's VNID decides after DNAT, as table
// 60's service VNID did in OpenShift SDN); joining and making global open
// it, isolating closes it again.
func TestIntegrationServicesMultitenant(t *testing.T) {
	c := &svcCluster{itCluster: newITCluster(t, "itsvm", networkv1.MultiTenantPluginName, 2, 0), ns: "proj1"}
	a, b := c.nodes[0], c.nodes[1]
	c.netNamespace("proj1", 11)
	c.netNamespace("proj2", 12)
	c.netNamespace("global", 0)
	for _, n := range c.nodes {
		w := n.addPod("proj1", "web-"+n.Name)
		if _, err := w.ServeWhoAmI(itEchoPort); err != nil {
			t.Fatal(err)
		}
		c.web = append(c.web, w)
	}
	own, other, global := b.addPod("proj1", "own"), a.addPod("proj2", "other"), b.addPod("global", "glob")
	svc := c.createService("web", false, []svcPort{tcpPort}, nil)
	c.setEndpoints("web", []svcPort{tcpPort}, c.web...)
	c.waitServiceFlows("web", len(c.web))
	dst := vip(svc, tcpPort)

	// reaches reports whether from gets through to the Service, trying
	// enough connections to meet every endpoint.
	reaches := func(from *netlab.Pod) bool {
		for i := 0; i < 6; i++ {
			if _, err := from.NetNS.TCPWho(dst, 300*time.Millisecond); err != nil {
				return false
			}
		}
		return true
	}
	waitReach := func(what string, from *netlab.Pod, want bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for reaches(from) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s → proj1/web reachable=%v after 5 s, want %v", what, from.Name, !want, want)
			}
		}
	}
	waitReach("own project", own, true)
	waitReach("VNID 0", global, true)
	waitReach("another project", other, false)
	c.netNamespace("proj2", 11) // join proj2 to proj1
	waitReach("joined", other, true)
	c.netNamespace("proj2", 0) // make proj2 global
	waitReach("made global", other, true)
	c.netNamespace("proj2", 12) // isolate again
	waitReach("isolated again", other, false)
	waitReach("own project, still", own, true)
}
