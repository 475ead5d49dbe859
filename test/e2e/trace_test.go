package e2e

import (
	"context"
	"io"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/kubelet"
)

// testTrace runs sdnctl trace on the lab the way a user does from their
// shell — `sdn-lab trace SRC DST …` and `sdn-lab exec NODE -- sdnctl trace
// …`, which give sdnctl the lab's kubeconfig and every node's OVS run
// directory — on the seeds/003 demo's final policies (run here if an earlier
// subtest did not): client1 → server1 crosses nodes and is allowed by
// allow-server1-from-client1; client3 → server1 crosses nodes and is dropped
// by proj1's isolation; client3 → server2 is allowed by the namespaceSelector
// of allow-from-proj1-client1. A probe from the pod confirms each verdict.
func testTrace(t *testing.T, l *lab.Lab) {
	ctx := context.Background()
	client1, client3 := key("proj1", "client1"), key("proj1", "client3")
	server1, server2 := key("proj1", "server1"), key("proj2", "server2")
	if _, err := l.Kube.NetworkingV1().NetworkPolicies("proj2").Get(ctx, "allow-from-proj1-client1", metav1.GetOptions{}); apierrors.IsNotFound(err) {
		if bad, err := l.RunDemo(ctx, io.Discard); err != nil || bad != 0 {
			t.Fatalf("demo: %v (%d cells differ)", err, bad)
		}
	}
	pods := map[types.NamespacedName]*corev1.Pod{}
	for _, k := range []types.NamespacedName{client1, client3, server1, server2} {
		p, err := l.Kube.CoreV1().Pods(k.Namespace).Get(ctx, k.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pods[k] = p
	}
	node := func(k types.NamespacedName) string { return pods[k].Spec.NodeName }
	ip := func(k types.NamespacedName) netip.Addr { return netip.MustParseAddr(pods[k].Status.PodIP) }
	if node(client1) == node(server1) || node(client3) == node(server1) || node(client3) == node(server2) {
		t.Fatalf("the traced pairs must cross nodes: client1 on %s, client3 on %s, server1 on %s, server2 on %s",
			node(client1), node(client3), node(server1), node(server2))
	}
	dir := l.Config().StateDir
	sdnLab := filepath.Join(binDir, "sdn-lab")
	trace := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(sdnLab, args...).CombinedOutput()
		t.Logf("$ sdn-lab %s\n%s", strings.Join(args, " "), out)
		if err != nil {
			t.Fatalf("sdn-lab %s: %v", strings.Join(args, " "), err)
		}
		return string(out)
	}
	check := func(out string, want []string, not ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("trace output lacks %q", w)
			}
		}
		for _, n := range not {
			if strings.Contains(out, n) {
				t.Errorf("trace output has %q", n)
			}
		}
	}
	// Both halves traced, nothing skipped, and only br0's rules: the native tunnel's
	// trip through br-phy is not br0's pipeline (it once showed as a Classifier drop).
	never := []string{"not traced", "not IP or ARP"}

	t.Run("AllowedAcrossNodes", func(t *testing.T) {
		out := trace("trace", "--state-dir", dir, "proj1/client1", "proj1/server1", "--port", "8080", "--protocol", "tcp")
		check(out, []string{
			"Trace tcp " + ip(client1).String() + " -> " + ip(server1).String() + " port 8080",
			"\n" + node(client1) + ": ovs-appctl ofproto/trace br0 ",
			"=> sent through the VXLAN tunnel to node " + node(server1),
			"\n" + node(server1) + ": ovs-appctl ofproto/trace br0 'in_port=1,tun_src=",
			"NetworkPolicy ingress: allowed by NetworkPolicy proj1/allow-server1-from-client1 rule ingress[0]",
			"=> delivered to pod proj1/server1 (ofport ",
		}, append(never, "dropped in")...)
		if got := probeEventually(t, l, client1, ip(server1), tcpPort, corev1.ProtocolTCP, kubelet.Connected, 10*time.Second); got != kubelet.Connected {
			t.Errorf("probe client1 → server1: %v, but the trace says delivered", got)
		}
	})

	t.Run("DroppedByIsolation", func(t *testing.T) {
		out := trace("trace", "--state-dir="+dir, "proj1/client3", "proj1/server1", "--port", "8080")
		check(out, []string{
			"=> sent through the VXLAN tunnel to node " + node(server1),
			"\n" + node(server1) + ": ovs-appctl ofproto/trace br0 'in_port=1,tun_src=",
			"=> dropped in PolicyIngress(80) on " + node(server1) + ": ",
			"pod proj1/server1 is isolated for ingress by NetworkPolicy proj1/allow-server1-from-client1, proj1/deny-by-default, and no ingress rule allows this packet",
		}, append(never, "delivered")...)
		if got := probeEventually(t, l, client3, ip(server1), tcpPort, corev1.ProtocolTCP, kubelet.TimedOut, 10*time.Second); got != kubelet.TimedOut {
			t.Errorf("probe client3 → server1: %v, but the trace says dropped", got)
		}
	})

	t.Run("ExecSdnctlNamespaceSelector", func(t *testing.T) {
		// From any node: sdn-lab exec gives sdnctl every node's OVS, not just its own.
		other := node(server2)
		out := trace("exec", "--state-dir", dir, other, "--", "sdnctl", "trace", "proj1/client3", "proj2/server2", "--port", "8080", "--protocol", "tcp")
		check(out, []string{
			"\n" + node(client3) + ": ovs-appctl ofproto/trace br0 ",
			"=> sent through the VXLAN tunnel to node " + node(server2),
			"allowed by NetworkPolicy proj2/allow-from-proj1-client1 rule ingress[0]",
			"=> delivered to pod proj2/server2 (ofport ",
		}, append(never, "dropped in")...)
	})
}
