package ovsdb

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovstest"
)

// These tests run against a private ovsdb-server + ovs-vswitchd
// (pkg/ovs/ovstest), netdev datapath; they are skipped under -short.

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func startOVS(t *testing.T) (*ovstest.Instance, *Client) {
	t.Helper()
	in := ovstest.Start(t)
	c, err := Dial(testCtx(t), "unix:"+in.DBSock)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(c.Close)
	return in, c
}

// nextCfg reads Open_vSwitch.next_cfg: every write of Client bumps it, so
// an unchanged value proves a call sent no transaction.
func nextCfg(t *testing.T, in *ovstest.Instance) int {
	t.Helper()
	n, err := strconv.Atoi(in.Vsctl("get", "open_vswitch", ".", "next_cfg"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func unquote(s string) string { return strings.Trim(s, `"`) }

// eventually polls cond (e.g. "the cache saw an ovs-vsctl edit") for 10s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// addVeth creates a veth pair (name, name+"p") in ovs-vswitchd's network
// namespace; the namespace's removal at cleanup deletes it.
func addVeth(t *testing.T, in *ovstest.Instance, name string) {
	t.Helper()
	for _, args := range [][]string{
		{"link", "add", name, "type", "veth", "peer", "name", name + "p"},
		{"link", "set", name, "up"},
		{"link", "set", name + "p", "up"},
	} {
		argv := append([]string{"netns", "exec", in.NetNS, "ip"}, args...)
		if out, err := exec.Command("ip", argv...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(argv, " "), err, out)
		}
	}
}

func setupNode(t *testing.T, c *Client) {
	t.Helper()
	ctx := testCtx(t)
	if err := c.EnsureBridge(ctx, BridgeConfig{Name: "br0", DatapathType: DatapathNetdev}); err != nil {
		t.Fatalf("EnsureBridge: %v", err)
	}
	if err := c.EnsureVXLANPort(ctx, "br0", "vxlan0", 4789, 1); err != nil {
		t.Fatalf("EnsureVXLANPort: %v", err)
	}
	if err := c.EnsureInternalPort(ctx, "br0", "tun0", 2, 1450); err != nil {
		t.Fatalf("EnsureInternalPort: %v", err)
	}
}

func TestEnsureBridge(t *testing.T) {
	in, c := startOVS(t)
	ctx := testCtx(t)
	cfg := BridgeConfig{Name: "br0", DatapathType: DatapathNetdev}
	if err := c.EnsureBridge(ctx, cfg); err != nil {
		t.Fatalf("EnsureBridge: %v", err)
	}
	check := func() {
		t.Helper()
		for col, want := range map[string]string{"fail_mode": "secure", "protocols": "[OpenFlow13]", "datapath_type": "netdev"} {
			if got := in.Vsctl("get", "bridge", "br0", col); got != want {
				t.Errorf("bridge br0 %s = %s, want %s", col, got, want)
			}
		}
	}
	check()
	// EnsureBridge waits for ovs-vswitchd: the OpenFlow socket must exist.
	if _, err := os.Stat(filepath.Join(in.RunDir, "br0.mgmt")); err != nil {
		t.Errorf("br0 management socket after EnsureBridge: %v", err)
	}
	if got := in.Vsctl("list-ports", "br0"); got != "" {
		t.Errorf("new bridge has ports %q", got)
	}
	if got := unquote(in.Vsctl("get", "interface", "br0", "type")); got != "internal" {
		t.Errorf("local interface br0 type %q, want internal", got)
	}

	before := nextCfg(t, in)
	if err := c.EnsureBridge(ctx, cfg); err != nil {
		t.Fatalf("second EnsureBridge: %v", err)
	}
	if after := nextCfg(t, in); after != before {
		t.Errorf("second EnsureBridge sent a transaction: next_cfg %d -> %d", before, after)
	}

	// Someone changes the bridge behind our back: EnsureBridge fixes it.
	in.Vsctl("set", "bridge", "br0", "fail_mode=standalone", "protocols=OpenFlow10,OpenFlow13")
	eventually(t, "cache to see fail_mode=standalone", func() bool {
		br, err := c.bridge(ctx, "br0")
		return err == nil && deref(br.FailMode) == "standalone" && len(br.Protocols) == 2
	})
	uuid := in.Vsctl("get", "bridge", "br0", "_uuid")
	if err := c.EnsureBridge(ctx, cfg); err != nil {
		t.Fatalf("fixing EnsureBridge: %v", err)
	}
	check()
	if got := in.Vsctl("get", "bridge", "br0", "_uuid"); got != uuid {
		t.Errorf("bridge was recreated (uuid %s -> %s), want a fix in place", uuid, got)
	}

	if err := c.EnsureBridge(ctx, BridgeConfig{Name: "br0", DatapathType: "dpdk"}); err == nil {
		t.Error("EnsureBridge with datapath type dpdk: no error")
	}
}

func TestDeleteBridge(t *testing.T) {
	in, c := startOVS(t)
	ctx := testCtx(t)
	setupNode(t, c)
	if err := c.DeleteBridge(ctx, "br0"); err != nil {
		t.Fatalf("DeleteBridge: %v", err)
	}
	if got := in.Vsctl("list-br"); got != "" {
		t.Errorf("bridges after DeleteBridge: %q", got)
	}
	if got := in.Vsctl("--columns=name", "list", "interface"); got != "" {
		t.Errorf("interfaces left after DeleteBridge: %q", got)
	}
	before := nextCfg(t, in)
	if err := c.DeleteBridge(ctx, "br0"); err != nil {
		t.Fatalf("DeleteBridge of a missing bridge: %v", err)
	}
	if after := nextCfg(t, in); after != before {
		t.Errorf("DeleteBridge of a missing bridge sent a transaction: next_cfg %d -> %d", before, after)
	}
	if _, err := c.Ports(ctx, "br0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Ports of a deleted bridge: err %v, want ErrNotFound", err)
	}
}

func TestTunnelAndInternalPorts(t *testing.T) {
	in, c := startOVS(t)
	ctx := testCtx(t)
	setupNode(t, c)

	for _, tc := range []struct{ iface, col, want string }{
		{"vxlan0", "type", "vxlan"},
		{"vxlan0", "ofport", "1"},
		{"vxlan0", "ofport_request", "1"},
		{"vxlan0", "options", `{dst_port="4789", key=flow, remote_ip=flow}`},
		{"tun0", "type", "internal"},
		{"tun0", "ofport", "2"},
		{"tun0", "ofport_request", "2"},
		{"tun0", "mtu_request", "1450"},
		{"tun0", "mtu", "1450"},
	} {
		if got := in.Vsctl("get", "interface", tc.iface, tc.col); got != tc.want {
			t.Errorf("interface %s %s = %s, want %s", tc.iface, tc.col, got, tc.want)
		}
	}
	if got := in.Vsctl("list-ports", "br0"); got != "tun0\nvxlan0" {
		t.Errorf("ports of br0: %q", got)
	}

	mac, err := c.InterfaceMAC(ctx, "tun0")
	if err != nil {
		t.Fatalf("InterfaceMAC: %v", err)
	}
	out, err := exec.Command("ip", "netns", "exec", in.NetNS, "cat", "/sys/class/net/tun0/address").Output()
	if err != nil {
		t.Fatalf("read tun0 address: %v", err)
	}
	if want := strings.TrimSpace(string(out)); mac != want {
		t.Errorf("InterfaceMAC(tun0) = %q, kernel says %q", mac, want)
	}
	if _, err := c.InterfaceMAC(ctx, "nope0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("InterfaceMAC of a missing interface: err %v, want ErrNotFound", err)
	}

	before := nextCfg(t, in)
	setupNode(t, c)
	if after := nextCfg(t, in); after != before {
		t.Errorf("second setup sent transactions: next_cfg %d -> %d", before, after)
	}

	// Wrong options, changed by hand, are fixed in place.
	uuid := in.Vsctl("get", "interface", "vxlan0", "_uuid")
	in.Vsctl("set", "interface", "vxlan0", "options:dst_port=9999", "options:csum=true")
	in.Vsctl("set", "interface", "tun0", "mtu_request=9000")
	eventually(t, "cache to see the edits", func() bool {
		v, err1 := c.iface(ctx, "vxlan0")
		u, err2 := c.iface(ctx, "tun0")
		return err1 == nil && err2 == nil && v.Options["dst_port"] == "9999" && deref(u.MTURequest) == 9000
	})
	setupNode(t, c)
	if got := in.Vsctl("get", "interface", "vxlan0", "options"); got != `{dst_port="4789", key=flow, remote_ip=flow}` {
		t.Errorf("vxlan0 options after fix: %s", got)
	}
	if got := in.Vsctl("get", "interface", "tun0", "mtu_request"); got != "1450" {
		t.Errorf("tun0 mtu_request after fix: %s", got)
	}
	if got := in.Vsctl("get", "interface", "vxlan0", "_uuid"); got != uuid {
		t.Errorf("vxlan0 recreated (uuid %s -> %s), want a fix in place", uuid, got)
	}

	// A new VXLAN port number is applied in place too, ofport stays 1.
	if err := c.EnsureVXLANPort(ctx, "br0", "vxlan0", 4790, 1); err != nil {
		t.Fatal(err)
	}
	if got := unquote(in.Vsctl("get", "interface", "vxlan0", "options:dst_port")); got != "4790" {
		t.Errorf("vxlan0 dst_port = %s, want 4790", got)
	}
	if got := in.Vsctl("get", "interface", "vxlan0", "ofport"); got != "1" {
		t.Errorf("vxlan0 ofport = %s after dst_port change, want 1", got)
	}

	// A port on another bridge is not silently moved.
	if err := c.EnsureBridge(ctx, BridgeConfig{Name: "br1", DatapathType: DatapathNetdev}); err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureInternalPort(ctx, "br1", "tun0", 2, 1450); err == nil || !strings.Contains(err.Error(), "br0") {
		t.Errorf("EnsureInternalPort of br0's tun0 on br1: err %v, want one naming br0", err)
	}
}

func podIDs(i int) map[string]string {
	ids := map[string]string{
		ExternalIDSandbox:      fmt.Sprintf("sandbox%04d", i),
		ExternalIDIP:           fmt.Sprintf("10.128.0.%d", i+3),
		ExternalIDPodNamespace: "ns1",
		ExternalIDPodName:      fmt.Sprintf("pod-%d", i),
	}
	return ids
}

func TestAddPort(t *testing.T) {
	in, c := startOVS(t)
	ctx := testCtx(t)
	setupNode(t, c)
	addVeth(t, in, "vethA")
	addVeth(t, in, "vethB")

	ids := podIDs(0)
	ids[ExternalIDPodUID] = "5f0c3f36-7b5e-4a8e-9c1d-0123456789ab"
	ofA, err := c.AddPort(ctx, "br0", "vethA", ids)
	if err != nil {
		t.Fatalf("AddPort vethA: %v", err)
	}
	if ofA < 3 {
		t.Errorf("vethA ofport %d, want >= 3", ofA)
	}
	if got := in.Vsctl("get", "interface", "vethA", "ofport"); got != strconv.Itoa(ofA) {
		t.Errorf("ovs-vsctl says vethA ofport %s, AddPort said %d", got, ofA)
	}
	for k, v := range ids {
		if got := unquote(in.Vsctl("get", "interface", "vethA", "external_ids:"+k)); got != v {
			t.Errorf("vethA external_ids:%s = %q, want %q", k, got, v)
		}
	}
	ofB, err := c.AddPort(ctx, "br0", "vethB", podIDs(1))
	if err != nil {
		t.Fatalf("AddPort vethB: %v", err)
	}
	if ofB < 3 || ofB == ofA {
		t.Errorf("vethB ofport %d (vethA %d)", ofB, ofA)
	}

	// Same call again: same ofport, no transaction.
	before := nextCfg(t, in)
	again, err := c.AddPort(ctx, "br0", "vethA", ids)
	if err != nil || again != ofA {
		t.Errorf("repeated AddPort = %d, %v; want %d", again, err, ofA)
	}
	if after := nextCfg(t, in); after != before {
		t.Errorf("repeated AddPort sent a transaction: next_cfg %d -> %d", before, after)
	}
	// New external_ids replace the old ones, the port stays.
	newIDs := podIDs(7)
	if of, err := c.AddPort(ctx, "br0", "vethA", newIDs); err != nil || of != ofA {
		t.Errorf("AddPort with new external_ids = %d, %v; want %d", of, err, ofA)
	}
	if got := unquote(in.Vsctl("get", "interface", "vethA", "external_ids:sandbox")); got != newIDs[ExternalIDSandbox] {
		t.Errorf("vethA sandbox after update = %q, want %q", got, newIDs[ExternalIDSandbox])
	}
	if got := in.Vsctl("--if-exists", "get", "interface", "vethA", "external_ids:k8s_pod_uid"); got != "" {
		t.Errorf("stale k8s_pod_uid kept: %q", got)
	}

	ports, err := c.Ports(ctx, "br0")
	if err != nil {
		t.Fatalf("Ports: %v", err)
	}
	var names []string
	for _, p := range ports {
		names = append(names, fmt.Sprintf("%s=%d", p.Name, p.OFPort))
	}
	want := []string{"br0=65534", "vxlan0=1", "tun0=2", fmt.Sprintf("vethA=%d", ofA), fmt.Sprintf("vethB=%d", ofB)}
	got := map[string]bool{}
	for _, n := range names {
		got[n] = true
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("Ports = %v, missing %s", names, w)
		}
	}
	if len(ports) != len(want) {
		t.Errorf("Ports = %v, want %d ports", names, len(want))
	}
	if !slices.IsSortedFunc(ports, func(a, b PortInfo) int { return a.OFPort - b.OFPort }) {
		t.Errorf("Ports not sorted by ofport: %v", names)
	}
	for _, p := range ports {
		switch p.Name {
		case "vethA":
			if !maps.Equal(p.ExternalIDs, newIDs) || p.Type != "" {
				t.Errorf("Ports vethA = %+v, want external_ids %v", p, newIDs)
			}
		case "vxlan0":
			if p.Type != "vxlan" || p.Options["remote_ip"] != "flow" || p.Options["key"] != "flow" {
				t.Errorf("Ports vxlan0 = %+v", p)
			}
		case "tun0":
			if p.Type != "internal" || p.MACInUse == "" {
				t.Errorf("Ports tun0 = %+v", p)
			}
		}
	}

	if err := c.DeletePort(ctx, "br0", "vethA"); err != nil {
		t.Fatalf("DeletePort: %v", err)
	}
	if got := in.Vsctl("list-ports", "br0"); strings.Contains(got, "vethA") {
		t.Errorf("vethA still on br0: %q", got)
	}
	before = nextCfg(t, in)
	if err := c.DeletePort(ctx, "br0", "vethA"); err != nil {
		t.Errorf("DeletePort of a missing port: %v", err)
	}
	if err := c.DeletePort(ctx, "nobridge", "vethA"); err != nil {
		t.Errorf("DeletePort on a missing bridge: %v", err)
	}
	if after := nextCfg(t, in); after != before {
		t.Errorf("DeletePort of a missing port sent a transaction: next_cfg %d -> %d", before, after)
	}
	// Re-adding the deleted veth works.
	if _, err := c.AddPort(ctx, "br0", "vethA", ids); err != nil {
		t.Errorf("AddPort after DeletePort: %v", err)
	}
}

func TestAddPortMissingNetdev(t *testing.T) {
	in, c := startOVS(t)
	ctx := testCtx(t)
	setupNode(t, c)
	_, err := c.AddPort(ctx, "br0", "vethNone", podIDs(0))
	if err == nil {
		t.Fatal("AddPort of a netdev that does not exist: no error")
	}
	// The error carries Interface.error ("could not open network device
	// vethNone (No such device)").
	if !strings.Contains(err.Error(), "vethNone") || !strings.Contains(err.Error(), "No such device") {
		t.Errorf("error %q lacks the interface error", err)
	}
	if got := in.Vsctl("list-ports", "br0"); strings.Contains(got, "vethNone") {
		t.Errorf("failed AddPort left its port: %q", got)
	}
	if _, err := c.AddPort(ctx, "nobridge", "vethNone", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("AddPort on a missing bridge: err %v, want ErrNotFound", err)
	}
}

func TestOnPortChange(t *testing.T) {
	in, c := startOVS(t)
	setupNode(t, c)
	var calls atomic.Int32
	kick := make(chan struct{}, 1)
	c.OnPortChange(func() {
		calls.Add(1)
		select {
		case kick <- struct{}{}:
		default:
		}
	})
	wait := func(what string) {
		t.Helper()
		select {
		case <-kick:
		case <-time.After(10 * time.Second):
			t.Fatalf("OnPortChange not called after %s", what)
		}
	}
	addVeth(t, in, "vethH")
	in.Vsctl("add-port", "br0", "vethH", "--", "set", "interface", "vethH", "external_ids:sandbox=byhand")
	wait("ovs-vsctl add-port")
	ports, err := c.Ports(testCtx(t), "br0")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range ports {
		found = found || (p.Name == "vethH" && p.ExternalIDs[ExternalIDSandbox] == "byhand")
	}
	if !found {
		t.Errorf("Ports after the hook fired lacks vethH: %+v", ports)
	}
	in.Vsctl("del-port", "br0", "vethH")
	wait("ovs-vsctl del-port")

	// Statistics updates (every 5s) are not monitored: no calls when idle.
	time.Sleep(200 * time.Millisecond)
	for len(kick) > 0 {
		<-kick
	}
	n := calls.Load()
	time.Sleep(6 * time.Second)
	if extra := calls.Load() - n; extra != 0 {
		t.Errorf("OnPortChange called %d times with no port change", extra)
	}
}

func TestDisconnected(t *testing.T) {
	in, c := startOVS(t)
	setupNode(t, c)
	select {
	case <-c.Disconnected():
		t.Fatal("Disconnected closed while connected")
	default:
	}
	pidText, err := os.ReadFile(filepath.Join(in.Dir, "ovsdb-server.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill ovsdb-server %d: %v", pid, err)
	}
	select {
	case <-c.Disconnected():
		t.Logf("Disconnected fired %v after ovsdb-server was killed", time.Since(start))
	case <-time.After(10 * time.Second):
		t.Fatal("Disconnected did not fire after ovsdb-server was killed")
	}
	if err := c.EnsureBridge(testCtx(t), BridgeConfig{Name: "br9", DatapathType: DatapathNetdev}); !errors.Is(err, ErrDisconnected) {
		t.Errorf("EnsureBridge after disconnect: err %v, want ErrDisconnected", err)
	}
	if _, err := c.Ports(testCtx(t), "br0"); !errors.Is(err, ErrDisconnected) {
		t.Errorf("Ports after disconnect: err %v, want ErrDisconnected", err)
	}
}

func TestCloseFiresDisconnected(t *testing.T) {
	_, c := startOVS(t)
	c.Close()
	select {
	case <-c.Disconnected():
	case <-time.After(5 * time.Second):
		t.Fatal("Disconnected not closed after Close")
	}
	c.Close() // twice is fine
}

// TestTiming reports the cost of a fresh node setup and of AddPort (p50 and
// p90 over 50 ports) against the private netdev OVS.
func TestTiming(t *testing.T) {
	in, c := startOVS(t)
	ctx := testCtx(t)
	start := time.Now()
	setupNode(t, c)
	setup := time.Since(start)

	const n = 50
	for i := 0; i < n; i++ {
		addVeth(t, in, fmt.Sprintf("vethT%d", i))
	}
	lat := make([]time.Duration, n)
	seen := map[int]bool{}
	for i := 0; i < n; i++ {
		start := time.Now()
		of, err := c.AddPort(ctx, "br0", fmt.Sprintf("vethT%d", i), podIDs(i))
		lat[i] = time.Since(start)
		if err != nil {
			t.Fatalf("AddPort %d: %v", i, err)
		}
		if of < 3 || seen[of] {
			t.Fatalf("AddPort %d: ofport %d (seen before: %v)", i, of, seen[of])
		}
		seen[of] = true
	}
	slices.Sort(lat)
	t.Logf("fresh db: EnsureBridge+EnsureVXLANPort+EnsureInternalPort %v", setup)
	t.Logf("AddPort over %d ports: p50 %v p90 %v max %v", n, lat[n/2], lat[n*9/10], lat[n-1])
	ports, err := c.Ports(ctx, "br0")
	if err != nil || len(ports) != n+3 {
		t.Errorf("Ports: %d ports, %v; want %d", len(ports), err, n+3)
	}
}

// TestAddPortConcurrent adds ports from parallel goroutines, as the CNI
// server does for different pods.
func TestAddPortConcurrent(t *testing.T) {
	in, c := startOVS(t)
	ctx := testCtx(t)
	setupNode(t, c)
	const n = 30
	for i := 0; i < n; i++ {
		addVeth(t, in, fmt.Sprintf("vethC%d", i))
	}
	ofports := make([]int, n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			var err error
			ofports[i], err = c.AddPort(ctx, "br0", fmt.Sprintf("vethC%d", i), podIDs(i))
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Errorf("AddPort: %v", err)
		}
	}
	writes, txns := c.Stats()
	t.Logf("%d concurrent AddPorts: %d writes in %d OVSDB transactions", n, writes, txns)
	seen := map[int]bool{}
	for i, of := range ofports {
		if of < 3 || seen[of] {
			t.Errorf("vethC%d ofport %d (duplicate: %v)", i, of, seen[of])
		}
		seen[of] = true
		if got := in.Vsctl("get", "interface", fmt.Sprintf("vethC%d", i), "ofport"); got != strconv.Itoa(of) {
			t.Errorf("vethC%d: ovs-vsctl ofport %s, AddPort said %d", i, got, of)
		}
	}
}
