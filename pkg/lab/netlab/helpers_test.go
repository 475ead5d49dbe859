package netlab

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// newTestLab sweeps leftovers of prefix, creates a lab and closes it at test end, dumping the
// OVS logs of every node first if the test failed. Skips under -short and when not root.
func newTestLab(t *testing.T, prefix string) *Lab {
	t.Helper()
	if testing.Short() {
		t.Skip("needs root, network namespaces and Open vSwitch; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if err := Sweep(prefix); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	l, err := New(prefix)
	if err != nil {
		t.Fatalf("new lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, l)
		}
		t0 := time.Now()
		defer func() { t.Logf("close took %v", time.Since(t0)) }()
		if err := l.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return l
}

func dumpLogs(t *testing.T, l *Lab) {
	l.mu.Lock()
	nodes := l.nodes
	l.mu.Unlock()
	for _, n := range nodes {
		for _, c := range []string{OVSDBServer, OVSVswitchd} {
			t.Logf("node %s %s.log (tail):\n%s", n.Name, c, n.LogTail(c, 3000))
		}
		if out, err := n.Ofctl("dump-flows", PodBridge); err == nil {
			t.Logf("node %s flows:\n%s", n.Name, out)
		}
	}
}

// addOverlayBridge creates br0 as SPEC §4.1 has it: netdev, secure, OpenFlow13, vxlan0 on port
// 1 (remote_ip/key from flows), tun0 internal on port 2.
func addOverlayBridge(t *testing.T, n *Node) {
	t.Helper()
	_, err := n.Vsctl("add-br", PodBridge,
		"--", "set", "Bridge", PodBridge, "datapath_type=netdev", "fail_mode=secure",
		"protocols=OpenFlow13",
		"--", "add-port", PodBridge, "vxlan0",
		"--", "set", "Interface", "vxlan0", "type=vxlan", "options:remote_ip=flow",
		"options:key=flow", "options:dst_port=4789", "ofport_request=1",
		"--", "add-port", PodBridge, "tun0",
		"--", "set", "Interface", "tun0", "type=internal", "ofport_request=2")
	if err != nil {
		t.Fatalf("br0 on node %s: %v", n.Name, err)
	}
}

// overlayFlows are the minimal hand-written flows of one node: conntrack every IP packet,
// admit VXLAN from the one remote node with the expected VNID, anti-spoof the local pod, and
// route to the local pod or through the tunnel to the remote subnet.
func overlayFlows(pod *Pod, remote netip.Addr, remoteSubnet netip.Prefix, vnid int) string {
	tunnel := fmt.Sprintf("move:NXM_NX_REG0[]->NXM_NX_TUN_ID[0..31],set_field:%s->tun_dst,output:1", remote)
	ip, port := pod.IP.Addr(), pod.OFPort
	return strings.Join([]string{
		"table=0,priority=1000,ip,ct_state=-trk,actions=ct(table=0)",
		"table=0,priority=200,in_port=1,actions=move:NXM_NX_TUN_ID[0..31]->NXM_NX_REG0[],goto_table:10",
		fmt.Sprintf("table=0,priority=100,in_port=%d,actions=goto_table:20", port),
		"table=0,priority=0,actions=drop",
		fmt.Sprintf("table=10,priority=100,tun_src=%s,reg0=%d,actions=goto_table:30", remote, vnid),
		"table=10,priority=0,actions=drop",
		fmt.Sprintf("table=20,priority=100,in_port=%d,arp,arp_spa=%s,actions=load:%d->NXM_NX_REG0[],goto_table:30", port, ip, vnid),
		fmt.Sprintf("table=20,priority=100,in_port=%d,ip,nw_src=%s,actions=load:%d->NXM_NX_REG0[],goto_table:30", port, ip, vnid),
		"table=20,priority=0,actions=drop",
		"table=30,priority=100,ip,ct_state=+trk+new,actions=ct(commit,table=31)",
		"table=30,priority=0,actions=goto_table:31",
		fmt.Sprintf("table=31,priority=200,arp,arp_tpa=%s,actions=output:%d", ip, port),
		fmt.Sprintf("table=31,priority=200,ip,nw_dst=%s,actions=output:%d", ip, port),
		fmt.Sprintf("table=31,priority=100,arp,arp_tpa=%s,actions=%s", remoteSubnet, tunnel),
		fmt.Sprintf("table=31,priority=100,ip,nw_dst=%s,actions=%s", remoteSubnet, tunnel),
		"table=31,priority=0,actions=drop",
	}, "\n") + "\n"
}

// addFlows installs flows on br0 with `ovs-ofctl add-flows br0 -` fed from a file.
func addFlows(t *testing.T, n *Node, flows string) {
	t.Helper()
	f := n.RunDir + "/test.flows"
	if err := os.WriteFile(f, []byte(flows), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Ofctl("add-flows", PodBridge, f); err != nil {
		t.Fatalf("flows on node %s: %v", n.Name, err)
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
