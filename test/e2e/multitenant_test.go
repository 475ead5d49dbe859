package e2e

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/kubelet"
	"github.com/ovs-sdn/ovs-sdn/pkg/sdnctl"
)

// TestMultitenantLab: namespaces are isolated by VNID; joining them with
// `sdnctl pod-network join-projects` (through the controller's
// change-network handling) changes reachability; and the demo's
// join/isolate/global walk gives the expected matrices.
func TestMultitenantLab(t *testing.T) {
	l := startLab(t, "e2emt", networkv1.MultiTenantPluginName)
	ctx := context.Background()
	a, aips := podPerNode(t, l, "e2e-ten-a", "a")
	b, bips := podPerNode(t, l, "e2e-ten-b", "b")
	// a on node1 → b on node2, and back: across nodes, across tenants.
	if got := probeEventually(t, l, a[0], bips[b[1]], tcpPort, corev1.ProtocolTCP, kubelet.TimedOut, 5*time.Second); got != kubelet.TimedOut {
		t.Errorf("isolated tenants: %s → %s: %v, want TimedOut", a[0], b[1], got)
	}
	if got := probeEventually(t, l, a[0], aips[a[1]], tcpPort, corev1.ProtocolTCP, kubelet.Connected, 5*time.Second); got != kubelet.Connected {
		t.Errorf("same tenant: %s → %s: %v, want Connected", a[0], a[1], got)
	}
	// Join b to a the way an operator does: sdnctl sets the change-network
	// annotation and waits until the controller has given b a's VNID.
	clients := &sdnctl.Clients{Kube: l.Kube, Network: l.Network}
	if err := sdnctl.ChangePodNetwork(ctx, clients, sdnctl.PodNetworkJoin, "e2e-ten-a", []string{"e2e-ten-b"}, io.Discard); err != nil {
		t.Fatalf("sdnctl pod-network join-projects --to=e2e-ten-a e2e-ten-b: %v", err)
	}
	ids, err := l.WaitNetNamespaces(ctx, "e2e-ten-a", "e2e-ten-b")
	if err != nil {
		t.Fatal(err)
	}
	if ids["e2e-ten-a"] != ids["e2e-ten-b"] {
		t.Fatalf("after join: netids %v, want equal", ids)
	}
	for _, pair := range [][2]int{{0, 1}, {2, 0}} {
		if got := probeEventually(t, l, a[pair[0]], bips[b[pair[1]]], tcpPort, corev1.ProtocolTCP, kubelet.Connected, 10*time.Second); got != kubelet.Connected {
			t.Errorf("joined tenants: %s → %s: %v, want Connected", a[pair[0]], b[pair[1]], got)
		}
		if got := probeEventually(t, l, b[pair[1]], aips[a[pair[0]]], tcpPort, corev1.ProtocolTCP, kubelet.Connected, 10*time.Second); got != kubelet.Connected {
			t.Errorf("joined tenants: %s → %s: %v, want Connected", b[pair[1]], a[pair[0]], got)
		}
	}

	var out strings.Builder
	bad, err := l.RunDemo(ctx, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if bad != 0 {
		t.Errorf("join/isolate/global demo: %d matrix cells differ from what they should be", bad)
	}
}
