package cni_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vishvananda/netlink"

	"github.com/ovs-sdn/ovs-sdn/pkg/cni"
	"github.com/ovs-sdn/ovs-sdn/pkg/ipam"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb"
)

// TestAddConnectivity: ADD through libcni and the real binary gives each
// pod an address of the node subnet, the MAC/MTU/routes/offload the
// pipeline relies on, a port with the pod's external_ids and flows; two
// pods then talk TCP across br0.
func TestAddConnectivity(t *testing.T) {
	e := newEnv(t)
	a, b := e.newPod("pod-a"), e.newPod("pod-b")
	ra, rb := e.mustAdd(a), e.mustAdd(b)
	ipA, ipB := podIP(t, ra), podIP(t, rb)
	subnet := e.pn.cfg.Subnet
	for _, ip := range []netip.Addr{ipA, ipB} {
		if !subnet.Contains(ip) || ip == subnet.Addr().Next() || ip == subnet.Addr() {
			t.Errorf("pod IP %s: want a host address of %s other than the gateway", ip, subnet)
		}
	}
	if ipA == ipB {
		t.Fatalf("both pods got %s", ipA)
	}
	if gw := ra.IPs[0].Gateway.String(); gw != "10.128.2.1" {
		t.Errorf("gateway %s, want 10.128.2.1", gw)
	}
	checkPodSide(t, a, ipA, e.pn.cfg.MTU)
	for _, x := range []struct {
		p  *pod
		ip netip.Addr
		nm string
	}{{a, ipA, "pod-a"}, {b, ipB, "pod-b"}} {
		pi, ok := e.port(x.p)
		if !ok {
			t.Fatalf("no OVS port for %s", x.nm)
		}
		want := map[string]string{ovsdb.ExternalIDSandbox: x.p.rt.ContainerID, ovsdb.ExternalIDIP: x.ip.String(),
			ovsdb.ExternalIDPodNamespace: "team-a", ovsdb.ExternalIDPodName: x.nm}
		for k, v := range want {
			if pi.ExternalIDs[k] != v {
				t.Errorf("%s external_ids:%s=%q, want %q", pi.Name, k, pi.ExternalIDs[k], v)
			}
		}
		if n := e.flowCount(x.p, "team-a", x.nm); n != 2 {
			t.Errorf("%s: %d flows, want 2", x.nm, n)
		}
		if got := e.pn.added[x.p.rt.ContainerID]; got.VNID != 42 || got.OFPort < 1 || got.IP != x.ip {
			t.Errorf("PodAdded got %+v, want VNID 42, IP %s and an ofport", got, x.ip)
		}
	}
	echoTCP(t, a.ns, b.ns, ipA)
	echoTCP(t, b.ns, a.ns, ipB)
}

// checkPodSide inspects eth0 in the pod: MAC 0a:58:<ip>, MTU, address,
// routes, TX checksum offload off.
func checkPodSide(t *testing.T, p *pod, ip netip.Addr, mtu int) {
	t.Helper()
	err := p.ns.Do(func(ns.NetNS) error {
		l, err := netlinksafe.LinkByName("eth0")
		if err != nil {
			return err
		}
		if got, want := l.Attrs().HardwareAddr.String(), cni.PodMAC(ip).String(); got != want {
			t.Errorf("eth0 MAC %s, want %s", got, want)
		}
		if l.Attrs().MTU != mtu {
			t.Errorf("eth0 MTU %d, want %d", l.Attrs().MTU, mtu)
		}
		routes, err := netlinksafe.RouteList(l, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		var rs []string
		for _, r := range routes {
			rs = append(rs, fmt.Sprintf("%v via %v", r.Dst, r.Gw))
		}
		all := strings.Join(rs, "; ")
		for _, want := range []string{"0.0.0.0/0 via 10.128.2.1", "10.128.0.0/14 via <nil>"} {
			if !strings.Contains(all, want) {
				t.Errorf("pod routes %q lack %q", all, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", filepath.Base(p.ns.Path()), "ethtool", "-k", "eth0").CombinedOutput()
	if err != nil {
		t.Fatalf("ethtool: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "tx-checksumming: off") {
		t.Errorf("TX checksum offload is not off on the pod's eth0:\n%s", out)
	}
}

// echoTCP connects from client to server:port 7 and checks an echo.
func echoTCP(t *testing.T, server, client ns.NetNS, ip netip.Addr) {
	t.Helper()
	addr := netip.AddrPortFrom(ip, 7777).String()
	var l net.Listener
	if err := server.Do(func(ns.NetNS) (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	var c net.Conn
	err := client.Do(func(ns.NetNS) (err error) { c, err = net.DialTimeout("tcp", addr, 5*time.Second); return err })
	if err != nil {
		t.Fatalf("TCP to %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := bytes.Repeat([]byte("ovs-sdn "), 4096) // several full-MTU segments
	go func() { _, _ = c.Write(msg) }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("TCP echo via %s: err=%v, equal=%v", addr, err, bytes.Equal(got, msg))
	}
}

// TestDelRemovesEverything: DEL removes veth, port, flows and lease; DEL
// is idempotent, works after the netns is gone and for unknown containers.
func TestDelRemovesEverything(t *testing.T) {
	e := newEnv(t)
	p := e.newPod("web")
	e.mustAdd(p)
	if !e.hostVethExists(p) || e.flowCount(p, "team-a", "web") != 2 || len(e.leases()) != 1 {
		t.Fatal("ADD did not set up veth, flows and lease")
	}
	if err := e.del(p); err != nil {
		t.Fatal(err)
	}
	assertGone(t, e, p, "web")
	if err := e.del(p); err != nil {
		t.Errorf("second DEL: %v", err)
	}
	// Netns deleted before DEL (the runtime lost the sandbox).
	q := e.newPod("gone")
	e.mustAdd(q)
	_ = q.ns.Close()
	if err := exec.Command("ip", "netns", "del", filepath.Base(q.rt.NetNS)).Run(); err != nil {
		t.Fatal(err)
	}
	if err := e.del(q); err != nil {
		t.Errorf("DEL after the netns is gone: %v", err)
	}
	assertGone(t, e, q, "gone")
	never := e.newPod("never")
	if err := e.del(never); err != nil {
		t.Errorf("DEL of a container never added: %v", err)
	}
}

func assertGone(t *testing.T, e *env, p *pod, name string) {
	t.Helper()
	if e.hostVethExists(p) {
		t.Error("host veth still exists")
	}
	if _, ok := e.port(p); ok {
		t.Error("OVS port still exists")
	}
	if n := e.flowCount(p, "team-a", name); n != 0 {
		t.Errorf("%d flows left", n)
	}
	if ip, ok := e.leases()[p.rt.ContainerID]; ok {
		t.Errorf("lease %s still held", ip)
	}
}

// TestRepeatedAddSameResult: ADD of an added container returns the same
// result and holds one lease.
func TestRepeatedAddSameResult(t *testing.T) {
	e := newEnv(t)
	p := e.newPod("db")
	r1 := e.mustAdd(p)
	r2 := e.mustAdd(p)
	j1, _ := json.Marshal(r1)
	j2, _ := json.Marshal(r2)
	if !bytes.Equal(j1, j2) {
		t.Errorf("repeated ADD changed the result:\n%s\n%s", j1, j2)
	}
	if n := len(e.leases()); n != 1 {
		t.Errorf("%d leases, want 1", n)
	}
	if err := e.check(p); err != nil {
		t.Errorf("CHECK after repeated ADD: %v", err)
	}
}

// TestCheckDetects: CHECK passes on a good pod and fails, naming the
// problem, when the veth, the port or the flows are gone.
func TestCheckDetects(t *testing.T) {
	e := newEnv(t)
	p := e.newPod("chk")
	e.mustAdd(p)
	if err := e.check(p); err != nil {
		t.Fatalf("CHECK of a healthy pod: %v", err)
	}
	name := cni.HostVethName(p.rt.ContainerID, "eth0")
	breakers := []struct {
		what, want string
		do         func()
	}{
		{"veth deleted", "eth0", func() {
			_ = p.ns.Do(func(ns.NetNS) error {
				l, _ := netlinksafe.LinkByName("eth0")
				return netlink.LinkDel(l)
			})
		}},
		{"port deleted", "OVS port " + name + " is missing", func() { e.ovs.Vsctl("del-port", "br0", name) }},
		{"flows deleted", "flows", func() { e.ovs.Ofctl("del-flows", "br0") }},
	}
	for _, b := range breakers {
		b.do()
		err := e.check(p)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: CHECK error %v, want one mentioning %q", b.what, err, b.want)
		}
		e.mustAdd(p) // repair: ADD is idempotent and re-ensures everything
		if err := e.check(p); err != nil {
			t.Errorf("%s: CHECK after repairing ADD: %v", b.what, err)
		}
	}
}

// TestGCFreesUnknownLeases: GC releases leases (and ports, veths) of
// containers the runtime no longer knows, and keeps the valid ones.
func TestGCFreesUnknownLeases(t *testing.T) {
	e := newEnv(t)
	live, lost := e.newPod("live"), e.newPod("lost")
	e.mustAdd(live)
	// "lost" is added by a runtime whose cache is gone: libcni's own GC
	// pass cannot DEL it, only the plugin's GC can free it.
	other := libcni.NewCNIConfigWithCacheDir(e.cni.Path, t.TempDir(), nil)
	if _, err := other.AddNetworkList(context.Background(), e.list, lost.rt); err != nil {
		t.Fatal(err)
	}
	// A lease with nothing else (an agent crash mid-ADD).
	store, err := ipam.Open(e.state, cni.NetworkName)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, _, err := store.Allocate("orphan", "eth0", e.pn.cfg.Subnet, netip.MustParsePrefix("10.128.2.1/32").Addr()); err != nil {
		t.Fatal(err)
	}
	if n := len(e.leases()); n != 3 {
		t.Fatalf("%d leases before GC, want 3", n)
	}
	err = e.cni.GCNetworkList(context.Background(), e.list, &libcni.GCArgs{
		ValidAttachments: []types.GCAttachment{{ContainerID: live.rt.ContainerID, IfName: "eth0"}}})
	if err != nil {
		t.Fatal(err)
	}
	l := e.leases()
	if _, ok := l[live.rt.ContainerID]; !ok || len(l) != 1 {
		t.Errorf("leases after GC %v, want only %s", l, live.rt.ContainerID)
	}
	assertGone(t, e, lost, "lost")
	if err := e.check(live); err != nil {
		t.Errorf("GC broke a valid pod: %v", err)
	}
}

// TestRollbackOnFailure: when the flows cannot be installed, ADD fails and
// leaves no lease, veth or port behind; metrics count the error.
func TestRollbackOnFailure(t *testing.T) {
	e := newEnv(t)
	e.pn.set(func(f *fakeNet) { f.failAdd = errors.New("bundle rejected") })
	p := e.newPod("rb")
	_, err := e.add(p)
	if err == nil || !strings.Contains(err.Error(), "bundle rejected") {
		t.Fatalf("ADD error %v, want the flow failure", err)
	}
	assertGone(t, e, p, "rb")
	if n := errorCount(t, e, "add"); n != 1 {
		t.Errorf("ovs_sdn_pod_operations_errors_total{operation=add} = %v, want 1", n)
	}
	e.pn.set(func(f *fakeNet) { f.failAdd = nil })
	r := e.mustAdd(p)
	if podIP(t, r) == (netip.Addr{}) {
		t.Fatal("no IP")
	}
	if n, err := testutil.GatherAndCount(e.reg, "ovs_sdn_pod_operations_latency_seconds"); err != nil || n != 1 {
		t.Errorf("latency histogram series: %d (%v), want 1 (add)", n, err)
	}
}

// TestStatusAndReadiness: STATUS fails with 50 and ADD with 11 until the
// agent is synced.
func TestStatusAndReadiness(t *testing.T) {
	e := newEnv(t)
	e.pn.set(func(f *fakeNet) { f.ready = false })
	err := e.cni.GetStatusNetworkList(context.Background(), e.list)
	if cniCode(err) != cni.ErrStatusNotAvailable {
		t.Errorf("STATUS while syncing: %v (code %d), want code 50", err, cniCode(err))
	}
	p := e.newPod("early")
	if _, err := e.add(p); cniCode(err) != types.ErrTryAgainLater {
		t.Errorf("ADD while syncing: %v, want code 11", err)
	}
	if len(e.leases()) != 0 {
		t.Error("ADD while syncing leased an address")
	}
	e.pn.set(func(f *fakeNet) { f.ready = true })
	if err := e.cni.GetStatusNetworkList(context.Background(), e.list); err != nil {
		t.Errorf("STATUS when synced: %v", err)
	}
	e.mustAdd(p)
}

// TestRestartNoDuplicateIPs: 200 ADD/DEL cycles on a small subnet (so
// addresses are reused), five pods alive at any time, the server restarted
// between every ADD and DEL: every DEL cleans up, no address is ever held
// twice, and the lease store always equals the live pods.
func TestRestartNoDuplicateIPs(t *testing.T) {
	e := newEnv(t, withSubnet("10.128.2.0/28")) // 13 usable addresses
	const cycles, alive = 200, 5
	var live []*pod
	ips := map[string]netip.Addr{}
	for i := 0; i < cycles; i++ {
		p := e.newPod(fmt.Sprintf("p%d", i))
		ip := podIP(t, e.mustAdd(p))
		for id, other := range ips {
			if other == ip {
				t.Fatalf("cycle %d: %s handed out to %s while %s holds it", i, ip, p.rt.ContainerID, id)
			}
		}
		ips[p.rt.ContainerID] = ip
		live = append(live, p)
		e.restart()
		if len(live) > alive {
			old := live[0]
			live = live[1:]
			if err := e.del(old); err != nil {
				t.Fatalf("cycle %d: DEL after restart: %v", i, err)
			}
			delete(ips, old.rt.ContainerID)
			_ = old.ns.Close()
			assertGone(t, e, old, "")
		}
		if got := e.leases(); len(got) != len(ips) {
			t.Fatalf("cycle %d: lease store %v, live pods %v", i, got, ips)
		}
	}
	for _, p := range live {
		if err := e.del(p); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.leases(); len(got) != 0 {
		t.Errorf("leases left after deleting every pod: %v", got)
	}
}

// TestConcurrentAdds: 1, 10 and 50 concurrent ADDs (then DELs) succeed
// with distinct addresses; the end-to-end latency through libcni and the
// binary is logged (p50/p99).
func TestConcurrentAdds(t *testing.T) {
	e := newEnv(t)
	for _, n := range []int{1, 10, 50} {
		var addLat, delLat []time.Duration
		for round := 0; round < max(1, 20/n); round++ {
			a, d := concurrentRound(t, e, n, round)
			addLat, delLat = append(addLat, a...), append(delLat, d...)
		}
		a50, a99 := percentiles(addLat)
		d50, d99 := percentiles(delLat)
		t.Logf("concurrency %2d (%d samples): ADD p50 %v p99 %v; DEL p50 %v p99 %v", n, len(addLat),
			a50.Round(time.Millisecond), a99.Round(time.Millisecond), d50.Round(time.Millisecond), d99.Round(time.Millisecond))
	}
}

// concurrentRound adds n pods at once, checks their addresses are
// distinct, deletes them at once and returns the latencies.
func concurrentRound(t *testing.T, e *env, n, round int) (add, del []time.Duration) {
	t.Helper()
	pods := make([]*pod, n)
	for i := range pods {
		pods[i] = e.newPod(fmt.Sprintf("c%d-%d-%d", n, round, i))
	}
	add, results := runParallel(t, pods, func(p *pod) (netip.Addr, error) {
		r, err := e.add(p)
		if err != nil {
			return netip.Addr{}, err
		}
		return podIP(t, r), nil
	})
	seen := map[netip.Addr]bool{}
	for _, ip := range results {
		if seen[ip] {
			t.Fatalf("%d concurrent ADDs: %s handed out twice", n, ip)
		}
		seen[ip] = true
	}
	if got := len(e.leases()); got != n {
		t.Fatalf("%d leases after %d ADDs", got, n)
	}
	del, _ = runParallel(t, pods, func(p *pod) (netip.Addr, error) { return netip.Addr{}, e.del(p) })
	if got := len(e.leases()); got != 0 {
		t.Fatalf("%d leases after DEL", got)
	}
	for _, p := range pods {
		_ = p.ns.Close()
	}
	return add, del
}

// runParallel runs op for every pod at once and returns each latency and
// result; any error fails the test.
func runParallel(t *testing.T, pods []*pod, op func(*pod) (netip.Addr, error)) ([]time.Duration, []netip.Addr) {
	t.Helper()
	lat := make([]time.Duration, len(pods))
	res := make([]netip.Addr, len(pods))
	errs := make([]error, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			res[i], errs[i] = op(p)
			lat[i] = time.Since(start)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return lat, res
}

// errorCount reads ovs_sdn_pod_operations_errors_total{operation=op}.
func errorCount(t *testing.T, e *env, op string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ovs_sdn_pod_operations_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == op {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
