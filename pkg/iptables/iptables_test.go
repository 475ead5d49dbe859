package iptables

import (
	"context"
	"github.com/ovs-sdn/ovs-sdn/pkg/testutil"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
)

func testConfig() Config {
	return Config{
		ClusterNetworks: []netip.Prefix{netip.MustParsePrefix("10.128.0.0/14"), netip.MustParsePrefix("10.132.0.0/14")},
		VXLANPort:       4789,
		MasqueradeBit:   0,
		Services: &ServicesConfig{ServiceNetwork: netip.MustParsePrefix("172.30.0.0/16"),
			NodePortVIP: netip.MustParseAddr("169.254.169.3"), NodePortRange: [2]uint16{30000, 32767}},
	}
}

func TestNodeChainsGolden(t *testing.T) {
	f := NewFake()
	if err := Ensure(f, NodeChains(testConfig())); err != nil {
		t.Fatal(err)
	}
	got := f.Dump()
	path := "testdata/node-chains.golden"
	if testutil.Update() {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("node chains changed (go test ./pkg/iptables -update to accept):\n--- got\n%s\n--- want\n%s", got, want)
	}
}

func TestEnsureIsIdempotentAndRepairs(t *testing.T) {
	f := NewFake()
	chains := NodeChains(testConfig())
	if err := Ensure(f, chains); err != nil {
		t.Fatal(err)
	}
	golden := f.Dump()
	f.Writes = 0
	if err := Ensure(f, chains); err != nil {
		t.Fatal(err)
	}
	if f.Writes != 0 {
		t.Errorf("converged Ensure wrote %d times, want 0", f.Writes)
	}

	// Out-of-band edits: a deleted rule, a stray rule, a deleted jump, a deleted chain.
	_ = f.DeleteIfExists(TableNAT, ChainMasquerade2, "-j", "MASQUERADE")
	_ = f.Append(TableFilter, ChainFirewallForward, "-j", "DROP")
	_ = f.DeleteIfExists(TableRaw, "OUTPUT", "-m", "comment", "--comment", "disable conntrack for vxlan", "-j", ChainNoTrack)
	f.DeleteChain(TableFilter, ChainFirewallAllow)
	if err := Ensure(f, chains); err != nil {
		t.Fatal(err)
	}
	if got := f.Dump(); got != golden {
		t.Errorf("Ensure did not repair:\n%s\nwant:\n%s", got, golden)
	}

	if err := Remove(f, chains); err != nil {
		t.Fatal(err)
	}
	if d := f.Dump(); strings.Contains(d, "SDN-") {
		t.Errorf("Remove left SDN chains or jumps:\n%s", d)
	}
	if err := Remove(f, chains); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestMonitorReensuresAfterFlush(t *testing.T) {
	f := NewFake()
	chains := NodeChains(testConfig())
	if err := Ensure(f, chains); err != nil {
		t.Fatal(err)
	}
	golden := f.Dump()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go Monitor(ctx, f, chains, 10*time.Millisecond, func(err error) { done <- err })
	f.DeleteChain(TableNAT, ChainCanary)
	f.DeleteChain(TableNAT, ChainMasquerade)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Monitor did not re-ensure within 5s of the canary disappearing")
	}
	if got := f.Dump(); got != golden {
		t.Errorf("after monitor resync:\n%s\nwant:\n%s", got, golden)
	}
}

// TestRealIptables runs Ensure against the kernel in a fresh network namespace.
func TestRealIptables(t *testing.T) {
	if testing.Short() {
		t.Skip("needs root and iptables")
	}
	if _, err := exec.LookPath("iptables-save"); err != nil {
		t.Fatalf("iptables is not installed (run make tools): %v", err)
	}
	netns, err := testutils.NewNS()
	if err != nil {
		t.Fatalf("creating netns (needs root): %v", err)
	}
	t.Cleanup(func() { _ = netns.Close(); _ = testutils.UnmountNS(netns) })

	chains := NodeChains(testConfig())
	save := func() string {
		var out []byte
		err := netns.Do(func(ns.NetNS) error {
			var e error
			out, e = exec.Command("iptables-save").Output()
			return e
		})
		if err != nil {
			t.Fatal(err)
		}
		var keep []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "-A") || strings.HasPrefix(l, ":SDN") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	err = netns.Do(func(ns.NetNS) error {
		ipt, err := New()
		if err != nil {
			return err
		}
		return Ensure(ipt, chains)
	})
	if err != nil {
		t.Fatal(err)
	}
	first := save()
	for _, want := range []string{
		"-A POSTROUTING -m comment --comment \"rules for masquerading SDN traffic\" -j SDN-MASQUERADE",
		"-A SDN-MASQUERADE -s 10.128.0.0/14 -m comment --comment \"masquerade pod-to-external traffic\" -j SDN-MASQUERADE-2",
		"-A SDN-MASQUERADE-2 -j MASQUERADE",
		"-A SDN-FIREWALL-ALLOW -p udp -m udp --dport 4789 -m comment --comment \"VXLAN incoming\" -j ACCEPT",
		"-A SDN-NOTRACK -p udp -m udp --dport 4789 -j NOTRACK",
		"-A FORWARD -i tun0 ! -o tun0 -m comment --comment \"administrator overrides\" -j SDN-ADMIN-OUTPUT-RULES",
		"-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment \"node ports\" -j SDN-NODEPORTS",
		"-A SDN-NODEPORTS ! -d 127.0.0.0/8 -p sctp -m sctp --dport 30000:32767 -m comment --comment \"node ports to br0\" -j DNAT --to-destination 169.254.169.3",
		"-A SDN-FIREWALL-FORWARD -d 169.254.169.3/32 -i tun0 -m conntrack ! --ctstate DNAT -m comment --comment \"service without endpoints\" -j REJECT --reject-with icmp-port-unreachable",
		"-A SDN-FIREWALL-FORWARD -d 172.30.0.0/16 -i tun0 -p tcp -m comment --comment \"service without endpoints\" -j REJECT --reject-with tcp-reset",
	} {
		if !strings.Contains(first, want) {
			t.Errorf("iptables-save lacks %q; got:\n%s", want, first)
		}
	}
	err = netns.Do(func(ns.NetNS) error {
		ipt, err := New()
		if err != nil {
			return err
		}
		if err := Ensure(ipt, chains); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if second := save(); second != first {
		t.Errorf("second Ensure changed the rules:\n%s\nwas:\n%s", second, first)
	}
	err = netns.Do(func(ns.NetNS) error {
		ipt, err := New()
		if err != nil {
			return err
		}
		return Remove(ipt, chains)
	})
	if err != nil {
		t.Fatal(err)
	}
	if left := save(); strings.Contains(left, "SDN-") {
		t.Errorf("Remove left rules:\n%s", left)
	}
}

func TestEgressIPChain(t *testing.T) {
	f := NewFake()
	ips := []netip.Addr{netip.MustParseAddr("198.18.0.100"), netip.MustParseAddr("198.18.0.101")}
	if err := Ensure(f, []Chain{EgressIPChain(ips)}); err != nil {
		t.Fatal(err)
	}
	dump := f.Dump()
	for _, want := range []string{"-d 198.18.0.100/32 -m conntrack --ctstate NEW", "-d 198.18.0.101/32", "egress IPs accept no new connections -j SDN-EGRESS-IPS"} {
		if !strings.Contains(dump, want) {
			t.Errorf("missing %q in\n%s", want, dump)
		}
	}
	if err := Ensure(f, []Chain{EgressIPChain(ips[1:])}); err != nil {
		t.Fatal(err)
	}
	if dump := f.Dump(); strings.Contains(dump, "198.18.0.100") {
		t.Errorf("released egress IP still refused:\n%s", dump)
	}
}
