package node

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

func TestPurgingBridge(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ovs-vswitchd.pid"), []byte("4242\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fake := ovs.NewFakeBridge()
	b := newPurgingBridge(fake, dir)
	var calls []string
	b.appctl = func(_ context.Context, target string, args ...string) error {
		calls = append(calls, "-t "+target+" "+strings.Join(args, " "))
		return nil
	}
	ctx := context.Background()
	pod := ovs.NewFlow(ovs.TableLocalPod, 100).MatchIPv4().MatchNwDst(netip.MustParsePrefix("10.128.0.2/32")).Action(ovs.DropAction())
	policy := ovs.NewFlow(ovs.TablePolicyIngress, 60).MatchReg(ovs.DstVNIDField, 10).Action(ovs.DropAction())

	if err := b.Bundle(ctx, []ovs.Change{ovs.AddFlow(pod)}); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 0 {
		t.Errorf("a pure add outside the policy tables purged: %v", calls)
	}
	if err := b.Bundle(ctx, []ovs.Change{ovs.AddFlow(policy)}); err != nil {
		t.Fatal(err)
	}
	if err := b.Bundle(ctx, []ovs.Change{ovs.DeleteFlow(pod)}); err != nil {
		t.Fatal(err)
	}
	want := "-t " + filepath.Join(dir, "ovs-vswitchd.4242.ctl") + " revalidator/purge"
	if len(calls) != 2 || calls[0] != want || calls[1] != want {
		t.Errorf("purges = %q, want 2 × %q (policy-table add, delete)", calls, want)
	}
	if got := ovsRunDir("unix:/run/x/node1/db.sock"); got != "/run/x/node1" {
		t.Errorf("ovsRunDir = %q", got)
	}
}
