package ovs_test

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovstest"
)

func TestParseTunnelNeighbors(t *testing.T) {
	out := `IP                                            MAC                 Bridge
==========================================================================
198.18.0.12                                   ae:1f:60:6c:1b:4e   br-phy
198.18.0.13                                   6a:f5:1a:1c:ab:40   br-phy STALE
`
	got, err := ParseTunnelNeighbors(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].IP != netip.MustParseAddr("198.18.0.12") || got[0].MAC.String() != "ae:1f:60:6c:1b:4e" ||
		got[0].Bridge != "br-phy" || got[0].Stale || !got[1].Stale {
		t.Errorf("parsed %+v", got)
	}
	if _, err := ParseTunnelNeighbors("198.18.0.12 nomac br-phy\n"); err == nil {
		t.Error("a line with a bad MAC parsed")
	}
	if got, err := ParseTunnelNeighbors(strings.SplitAfterN(out, "\n", 3)[0]); err != nil || len(got) != 0 {
		t.Errorf("header only: %v, %v", got, err)
	}
}

// TestUnixctlTunnelNeighbors (real ovs-vswitchd): one connection carries
// several commands — set, show, flush — and a refused command is an error
// with the daemon's message; the connection stays usable after it.
func TestUnixctlTunnelNeighbors(t *testing.T) {
	in := ovstest.Start(t)
	ctx := context.Background()
	var u *Unixctl
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		// ovstest.Start does not wait for ovs-vswitchd's control socket.
		if u, err = DialUnixctl(ctx, filepath.Join(in.Dir, "ovs-vswitchd.ctl")); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	mac, _ := net.ParseMAC("02:00:00:00:00:12")
	n := TunnelNeighbor{IP: netip.MustParseAddr("192.0.2.12"), MAC: mac, Bridge: "br-phy"}
	if _, err := u.Call(ctx, "tnl/neigh/set", n.SetArgs()...); err != nil {
		t.Fatal(err)
	}
	out, err := u.Call(ctx, "tnl/neigh/show")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseTunnelNeighbors(out)
	if err != nil || len(got) != 1 || got[0].IP != n.IP || got[0].MAC.String() != mac.String() || got[0].Bridge != "br-phy" {
		t.Fatalf("after set: %+v, %v (show: %q)", got, err, out)
	}
	if _, err := u.Call(ctx, "tnl/neigh/set", "br-phy", "192.0.2.13", "not-a-mac"); err == nil || !strings.Contains(err.Error(), "bad MAC") {
		t.Errorf("set with a bad MAC: %v", err)
	}
	if _, err := u.Call(ctx, "tnl/neigh/flush"); err != nil {
		t.Fatal(err)
	}
	if out, err := u.Call(ctx, "tnl/neigh/show"); err != nil || strings.Contains(out, "192.0.2.12") {
		t.Errorf("after flush: %q, %v", out, err)
	}
	if out := in.Appctl("version"); !strings.Contains(out, "ovs-vswitchd") {
		t.Errorf("ovs-appctl version: %q", out)
	}
}
