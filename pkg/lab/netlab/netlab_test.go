package netlab

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

const overlayMTU = 1450

// twoNodeLab is the proof lab: nodes a and b on 198.18.0.0/24 (RFC 2544 benchmarking range,
// only inside the lab's namespaces), one pod each, VNID 5 on the wire.
type twoNodeLab struct {
	lab    *Lab
	a, b   *Node
	pa, pb *Pod
}

func newTwoNodeLab(t *testing.T, prefix string) *twoNodeLab {
	l := newTestLab(t, prefix)
	x := &twoNodeLab{lab: l}
	x.a = mustNode(t, l, "a", "198.18.0.11/24")
	x.b = mustNode(t, l, "b", "198.18.0.12/24")
	addOverlayBridge(t, x.a)
	addOverlayBridge(t, x.b)
	x.pa = mustPod(t, x.a, "pa", "10.128.0.2/14", "10.128.0.1")
	x.pb = mustPod(t, x.b, "pb", "10.129.0.2/14", "10.129.0.1")
	const vnid = 5
	addFlows(t, x.a, overlayFlows(x.pa, x.b.IP.Addr(), mustPrefix("10.129.0.0/23"), vnid))
	addFlows(t, x.b, overlayFlows(x.pb, x.a.IP.Addr(), mustPrefix("10.128.0.0/23"), vnid))
	return x
}

func mustNode(t *testing.T, l *Lab, name, ip string) *Node {
	t.Helper()
	n, err := l.AddNode(name, mustPrefix(ip))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mustPod(t *testing.T, n *Node, name, ip, gw string) *Pod {
	t.Helper()
	p, err := n.AddTestPod(name, mustPrefix(ip), mustAddr(gw), overlayMTU)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTwoNodeOverlay(t *testing.T) {
	x := newTwoNodeLab(t, "nltovl")
	if err := x.a.Ping(x.b.IP.Addr(), 3); err != nil {
		t.Fatalf("underlay: %v", err)
	}
	t.Run("ping", func(t *testing.T) {
		if err := x.pa.Ping(x.pb.IP.Addr(), 3); err != nil {
			t.Error(err)
		}
		if err := x.pb.Ping(x.pa.IP.Addr(), 3); err != nil {
			t.Error(err)
		}
	})
	t.Run("tcp", func(t *testing.T) { testTCPBothWays(t, x) })
	t.Run("rtt", func(t *testing.T) {
		st, err := x.pa.PingStats(x.pb.IP.Addr(), 20, 50*time.Millisecond)
		// Tolerate one loss: the machine is shared and the userspace datapath is best effort.
		if err != nil || st.Received < st.Sent-1 {
			t.Fatalf("pod a → pod b: %v (%v)", err, st)
		}
		t.Logf("pod a → pod b across VXLAN: %v", st)
	})
	t.Run("iperf3", func(t *testing.T) { testIperf(t, x) })
	t.Run("restart", func(t *testing.T) { testRestart(t, x) })
}

// testRestart kills node a's OVS daemons one after the other: the database keeps br0 and the
// pod port (same ofport), the flows are gone after a vswitchd restart and are re-added here,
// as the node agent will do.
func testRestart(t *testing.T, x *twoNodeLab) {
	for _, c := range []string{OVSDBServer, OVSVswitchd} {
		old := x.a.Process(c).Pid()
		start := time.Now()
		if err := x.a.Restart(c); err != nil {
			t.Fatal(err)
		}
		t.Logf("restart %s: %v", c, time.Since(start))
		if x.a.Process(c).Pid() == old {
			t.Fatalf("%s not restarted", c)
		}
	}
	out, err := x.a.Vsctl("get", "Interface", x.pa.HostVeth, "ofport")
	if err != nil || strings.TrimSpace(out) != strconv.Itoa(x.pa.OFPort) {
		t.Fatalf("pod ofport after restart: %q, %v", out, err)
	}
	addFlows(t, x.a, overlayFlows(x.pa, x.b.IP.Addr(), mustPrefix("10.129.0.0/23"), 5))
	st, err := x.pa.PingStats(x.pb.IP.Addr(), 3, 0)
	if err != nil || st.Received == 0 {
		t.Errorf("ping after restart: %v, %v", st, err)
	}
	t.Logf("first pings after vswitchd restart: %v", st)
	if err := x.pb.TCPConnect(x.pa.IP.Addr(), 8080, 5*time.Second); err != nil {
		t.Error(err)
	}
}

func testTCPBothWays(t *testing.T, x *twoNodeLab) {
	for _, c := range []struct{ from, to *Pod }{{x.pa, x.pb}, {x.pb, x.pa}} {
		if _, err := c.to.ServeTCP(8080); err != nil {
			t.Fatal(err)
		}
		got, err := c.from.TCPHello(c.to.IP.Addr(), 8080, 5*time.Second)
		if err != nil {
			t.Errorf("%s → %s: %v", c.from.Name, c.to.Name, err)
		} else if got != c.to.Name {
			t.Errorf("%s → %s: greeting %q", c.from.Name, c.to.Name, got)
		}
	}
	if err := x.pa.TCPConnect(x.pb.IP.Addr(), 8081, time.Second); err == nil {
		t.Error("connect to a closed port succeeded")
	}
}

func testIperf(t *testing.T, x *twoNodeLab) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("iperf3 not installed")
	}
	if _, err := x.pb.Start("iperf3", "iperf3", "-s", "-p", "5201"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out string
	var err error
	for try := 0; try < 5; try++ { // the server may still be starting
		time.Sleep(300 * time.Millisecond)
		out, err = x.pa.Exec(ctx, "iperf3", "-c", x.pb.IP.Addr().String(), "-p", "5201", "-t", "3", "-J")
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("iperf3 client: %v\n%s", err, out)
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("iperf3 output: %v", err)
	}
	t.Logf("pod a → pod b TCP across VXLAN (userspace datapath): %.0f Mbit/s",
		res.End.SumReceived.BitsPerSecond/1e6)
}

func TestCloseRemovesEverything(t *testing.T) {
	l := newTestLab(t, "nltcls")
	n := mustNode(t, l, "a", "198.18.1.11/24")
	addOverlayBridge(t, n)
	p := mustPod(t, n, "p1", "10.128.0.2/14", "10.128.0.1")
	if _, err := p.ServeTCP(8080); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Start("sleep", "sleep", "600"); err != nil {
		t.Fatal(err)
	}
	if len(PidsNaming(l.StateDir+"/")) < 2 {
		t.Fatalf("expected ovsdb-server and ovs-vswitchd naming %s", l.StateDir)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, l)
	if err := l.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

func TestSweepAfterCrash(t *testing.T) {
	l := newTestLab(t, "nltswp")
	n := mustNode(t, l, "a", "198.18.2.11/24")
	addOverlayBridge(t, n)
	p := mustPod(t, n, "p1", "10.128.0.2/14", "10.128.0.1")
	sleeper, err := p.Start("sleep", "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	// A crashed run never calls Close; Sweep must find everything from the name alone.
	if err := Sweep(l.Prefix); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, l)
	if processAlive(sleeper.Pid()) {
		t.Errorf("pod process %d survived Sweep", sleeper.Pid())
	}
}

func assertNothingLeft(t *testing.T, l *Lab) {
	t.Helper()
	if left := NetNSWithPrefix(l.Prefix + "-"); len(left) > 0 {
		t.Errorf("netns left: %v", left)
	}
	if pids := PidsNaming(l.StateDir + "/"); len(pids) > 0 {
		t.Errorf("processes naming %s left: %v", l.StateDir, pids)
	}
	if _, err := os.Stat(l.StateDir); !os.IsNotExist(err) {
		t.Errorf("state dir %s left (%v)", l.StateDir, err)
	}
	out, err := exec.Command("ip", "-o", "link").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, l.Prefix) {
			t.Errorf("link left in root netns: %s", line)
		}
	}
}

func TestNames(t *testing.T) {
	for _, p := range []string{"lab1", "a", "abcdefghij"} {
		if err := ValidPrefix(p); err != nil {
			t.Errorf("ValidPrefix(%q): %v", p, err)
		}
	}
	for _, p := range []string{"", "1lab", "a-b", "abcdefghijk", "Lab"} {
		if ValidPrefix(p) == nil {
			t.Errorf("ValidPrefix(%q) accepted", p)
		}
	}
	if got := hostVethName("node-long-name", "pod"); len(got) > 15 {
		t.Errorf("host veth name %q longer than 15", got)
	}
	if got := PodMAC(netip.MustParseAddr("10.129.0.2")).String(); got != "0a:58:0a:81:00:02" {
		t.Errorf("PodMAC = %s", got)
	}
}

func TestICMPEcho(t *testing.T) {
	b := icmpEcho(0x1234, 7)
	if inetChecksum(b) != 0 {
		t.Errorf("checksum of a checksummed message = %#x, want 0", inetChecksum(b))
	}
	reply := append([]byte{0, 0}, b[2:]...)
	if !isEchoReply(reply, 0x1234, 7) || isEchoReply(reply, 0x1234, 8) {
		t.Error("isEchoReply mismatch")
	}
}
