package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// purgingBridge is the bridge of a userspace (netdev) datapath. After a bundle
// that can take away an allow — a deleted flow, or a changed flow in a policy
// table — it asks ovs-vswitchd to drop its cached datapath flows
// (`ovs-appctl revalidator/purge`), so the next packet of every connection is
// looked up in the new tables.
//
// Why: on OVS 3.1's userspace datapath the sdn-lab NetworkPolicy e2e caught a
// cached megaflow (after the ct() recirculation) that kept delivering new TCP
// connections to a pod for more than 7 s after a policy made table 80 drop
// them, while ofproto/trace of the same packet said drop. Revalidation did
// not catch it; a purge does. The cost is one upcall per active flow after a
// policy change or a removal; pod and node additions (pure adds outside the
// policy tables) do not purge.
type purgingBridge struct {
	ovs.Bridge
	runDir string
	// appctl runs ovs-appctl against target with args; a seam for tests.
	appctl func(ctx context.Context, target string, args ...string) error
}

// newPurgingBridge wraps br; runDir is the directory of ovs-vswitchd's pidfile
// and control socket (that of the OVSDB socket by convention).
func newPurgingBridge(br ovs.Bridge, runDir string) *purgingBridge {
	return &purgingBridge{Bridge: br, runDir: runDir, appctl: runAppctl}
}

func runAppctl(ctx context.Context, target string, args ...string) error {
	_, err := ovs.Appctl(ctx, 5*time.Second, target, args...)
	return err
}

// ovsRunDir is the run directory of an OVSDB endpoint "unix:<dir>/db.sock".
func ovsRunDir(endpoint string) string {
	return filepath.Dir(strings.TrimPrefix(endpoint, "unix:"))
}

// Bundle implements ovs.Bridge; a failed purge is logged, not returned: the
// flows are in place and revalidation still runs.
func (b *purgingBridge) Bundle(ctx context.Context, changes []ovs.Change) error {
	if err := b.Bridge.Bundle(ctx, changes); err != nil {
		return err
	}
	if needsPurge(changes) {
		if err := b.purge(ctx); err != nil {
			klog.ErrorS(err, "Purging cached datapath flows after a flow change", "runDir", b.runDir)
		}
	}
	return nil
}

// needsPurge reports whether changes can revoke what cached datapath flows
// allow: any deletion, any flow added to a NetworkPolicy table (a new or
// replaced allow/drop there can turn an allowed path into a drop), or to
// ServiceLB (a new Service takes its VIP from the reject path to tun0).
func needsPurge(changes []ovs.Change) bool {
	for _, c := range changes {
		if c.Op != ovs.OpAdd {
			return true
		}
		switch c.Flow.Table.ID {
		case ovs.TablePolicyEgress.ID, ovs.TablePolicyIngress.ID, ovs.TableServiceLB.ID:
			return true
		}
	}
	return false
}

func (b *purgingBridge) purge(ctx context.Context) error {
	ctl, err := vswitchdTarget(b.runDir)
	if err != nil {
		return err
	}
	return b.appctl(ctx, ctl, "revalidator/purge")
}

// vswitchdTarget is the control socket of the ovs-vswitchd whose pidfile is
// in runDir.
func vswitchdTarget(runDir string) (string, error) {
	pid, err := os.ReadFile(filepath.Join(runDir, "ovs-vswitchd.pid"))
	if err != nil {
		return "", fmt.Errorf("finding ovs-vswitchd: %w", err)
	}
	return filepath.Join(runDir, fmt.Sprintf("ovs-vswitchd.%s.ctl", strings.TrimSpace(string(pid)))), nil
}
