package e2e

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/kubelet"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

const (
	tcpPort  = 8080
	udpPort  = 5353
	sctpPort = 9999
)

var servePorts = []corev1.ContainerPort{
	{ContainerPort: tcpPort, Protocol: corev1.ProtocolTCP},
	{ContainerPort: udpPort, Protocol: corev1.ProtocolUDP},
	{ContainerPort: sctpPort, Protocol: corev1.ProtocolSCTP},
}

// TestNetworkPolicyLab runs the networkpolicy-mode suites on one 3-node lab.
func TestNetworkPolicyLab(t *testing.T) {
	l := startLab(t, "e2enp", networkv1.NetworkPolicyPluginName)
	t.Run("PodsAcrossNodes", func(t *testing.T) { testPodsAcrossNodes(t, l) })
	t.Run("NamespaceLifecycle", func(t *testing.T) { testNamespaceLifecycle(t, l) })
	t.Run("DemoPolicies", func(t *testing.T) { testDemo(t, l) })
	t.Run("Trace", func(t *testing.T) { testTrace(t, l) })
	t.Run("NodeRemoveAndReadd", func(t *testing.T) { testNodeRemoveAndReadd(t, l) })
}

// podPerNode creates pod <prefix>-<node> on every node in ns, serving TCP,
// UDP and SCTP, and returns their keys and IPs.
func podPerNode(t *testing.T, l *lab.Lab, ns, prefix string) ([]types.NamespacedName, map[types.NamespacedName]netip.Addr) {
	t.Helper()
	ctx := context.Background()
	if err := l.EnsureNamespaces(ctx, nil, ns); err != nil {
		t.Fatal(err)
	}
	var keys []types.NamespacedName
	for _, n := range l.Nodes() {
		k := key(ns, prefix+"-"+n.Name)
		err := l.CreatePod(ctx, lab.PodSpec{Namespace: ns, Name: k.Name, Node: n.Name,
			Labels: map[string]string{"app": prefix}, Ports: servePorts})
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	ips, err := l.WaitPodsRunning(ctx, 2*time.Minute, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return keys, ips
}

func testPodsAcrossNodes(t *testing.T, l *lab.Lab) {
	keys, ips := podPerNode(t, l, "e2e-conn", "p")
	for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP} {
		port := map[corev1.Protocol]uint16{corev1.ProtocolTCP: tcpPort, corev1.ProtocolUDP: udpPort, corev1.ProtocolSCTP: sctpPort}[proto]
		for _, from := range keys {
			for _, to := range keys {
				if from == to {
					continue
				}
				if got := probeEventually(t, l, from, ips[to], port, proto, kubelet.Connected, 5*time.Second); got != kubelet.Connected {
					t.Errorf("%s %s → %s (%s:%d): %v, want Connected", proto, from, to, ips[to], port, got)
				}
			}
		}
	}
	// The probes tell a reachable closed port from a drop: a port nobody
	// declared answers with a reset.
	if got := probeEventually(t, l, keys[0], ips[keys[1]], 8081, corev1.ProtocolTCP, kubelet.Refused, 5*time.Second); got != kubelet.Refused {
		t.Errorf("TCP to an undeclared port: %v, want Refused", got)
	}
}

func testNamespaceLifecycle(t *testing.T, l *lab.Lab) {
	ctx := context.Background()
	const ns = "e2e-life"
	keys, ips := podPerNode(t, l, ns, "v")
	ids, err := l.WaitNetNamespaces(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	vnid := ids[ns]
	if vnid < 10 {
		t.Fatalf("NetNamespace %s has netid %d, want an allocated VNID ≥ 10", ns, vnid)
	}
	// Each pod's anti-spoof flow on its node loads the namespace's VNID into reg0.
	load := fmt.Sprintf("load:%#x->NXM_NX_REG0[]", vnid)
	for i, n := range l.Nodes() {
		if !hasFlow(dumpFlows(t, n, "table=20"), "nw_src="+ips[keys[i]].String(), load) {
			t.Errorf("node %s: no table-20 flow for %s loading VNID %d (%s):\n%s", n.Name, keys[i], vnid, load, dumpFlows(t, n, "table=20"))
		}
	}
	if err := l.Kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := l.Network.NetworkV1().NetNamespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("NetNamespace %s still exists after its Namespace was deleted: %v", ns, err)
	}
	// The pods' flows go with their CNI DEL; a real kubelet may run it a moment after
	// the namespace controller has seen the pods gone.
	for i, n := range l.Nodes() {
		var left []string
		_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			left = left[:0]
			for _, line := range flowLines(dumpFlows(t, n)) {
				if mentionsPod(line, ips[keys[i]]) {
					left = append(left, line)
				}
			}
			return len(left) == 0, nil
		})
		if len(left) > 0 {
			t.Errorf("node %s still has flows for deleted pod %s (%s):\n%s", n.Name, keys[i], ips[keys[i]], strings.Join(left, "\n"))
		}
	}
}

// mentionsPod reports whether a dumped flow line matches or loads the pod
// address ip: nw_src/nw_dst, or reg3 (the receiving pod in tables 70, 80
// and 120).
func mentionsPod(line string, ip netip.Addr) bool {
	reg3 := fmt.Sprintf("%#x", ovs.IPv4Value(ip))
	for _, s := range []string{"nw_src=" + ip.String(), "nw_dst=" + ip.String(), "reg3=" + reg3, "load:" + reg3 + "->NXM_NX_REG3[]"} {
		for rest := line; ; {
			i := strings.Index(rest, s)
			if i < 0 {
				break
			}
			rest = rest[i+len(s):]
			if rest == "" || strings.ContainsRune(" ,", rune(rest[0])) {
				return true
			}
		}
	}
	return false
}

// hasFlow reports whether one flow line contains every part.
func hasFlow(dump string, parts ...string) bool {
	for _, line := range flowLines(dump) {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// testDemo runs `sdn-lab up --demo`'s scenario: the four policies of
// seeds/003 must give exactly the expected matrix after each step.
func testDemo(t *testing.T, l *lab.Lab) {
	var out strings.Builder
	bad, err := l.RunDemo(context.Background(), io.MultiWriter(&out))
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if bad != 0 {
		t.Errorf("%d matrix cells differ from what the policies should give (marked ! above)", bad)
	}
}

// testNodeRemoveAndReadd deletes node3's Node and HostSubnet: every other
// node must drop its tunnel flows (the HostSubnet's cookie, tun_src /
// tun_dst of its IP) and its pods become unreachable; re-adding the Node
// and HostSubnet (same subnet) brings the flows and reachability back.
func testNodeRemoveAndReadd(t *testing.T, l *lab.Lab) {
	ctx := context.Background()
	keys, ips := podPerNode(t, l, "e2e-node", "n")
	victim := l.Nodes()[2]
	hs, err := l.Network.NetworkV1().HostSubnets().Get(ctx, victim.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Remote-node flows carry the hash of the HostSubnet's UID in their cookie.
	cookie := ovs.MatchOwner(ovs.CookieNode, string(hs.UID)).String() // cookie=V/M
	others := l.Nodes()[:2]
	for _, n := range others {
		if len(flowLines(dumpFlows(t, n, cookie))) == 0 {
			t.Fatalf("node %s has no flows for %s (%s) before the removal", n.Name, victim.Name, cookie)
		}
	}
	if err := l.Kube.CoreV1().Nodes().Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := l.Network.NetworkV1().HostSubnets().Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	ip := victim.IP.String()
	waitFlows(t, others, func(n *lab.Node) (bool, string) {
		dump := dumpFlows(t, n)
		left := len(flowLines(dumpFlows(t, n, cookie)))
		return left == 0 && !strings.Contains(dump, "tun_src="+ip) && !strings.Contains(dump, ip+"->tun_dst"),
			fmt.Sprintf("%d flows with %s, dump mentions %s: %v", left, cookie, ip, strings.Contains(dump, ip))
	})
	if got := probeEventually(t, l, keys[0], ips[keys[2]], tcpPort, corev1.ProtocolTCP, kubelet.TimedOut, 5*time.Second); got != kubelet.TimedOut {
		t.Errorf("%s → %s on removed node: %v, want TimedOut", keys[0], keys[2], got)
	}

	// Re-add: the HostSubnet first, with the old subnet (a manually created
	// one the controller adopts when the Node appears), then the Node; the
	// kubelet's next heartbeat fills in its status and addresses.
	readd := &networkv1.HostSubnet{ObjectMeta: metav1.ObjectMeta{Name: hs.Name}, Host: hs.Host, HostIP: hs.HostIP, Subnet: hs.Subnet}
	created, err := l.Network.NetworkV1().HostSubnets().Create(ctx, readd, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cookie = ovs.MatchOwner(ovs.CookieNode, string(created.UID)).String()
	if victim.Real != nil {
		// A real kubelet registers its Node again, labels and all, when it
		// restarts; the DaemonSet then gives the node its agent back.
		if err := victim.Real.RestartKubelet(ctx); err != nil {
			t.Fatal(err)
		}
	} else if _, err := l.Kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: victim.Name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFlows(t, others, func(n *lab.Node) (bool, string) {
		got := len(flowLines(dumpFlows(t, n, cookie)))
		return got > 0, fmt.Sprintf("%d flows with %s", got, cookie)
	})
	for _, from := range keys[:2] {
		if got := probeEventually(t, l, from, ips[keys[2]], tcpPort, corev1.ProtocolTCP, kubelet.Connected, 10*time.Second); got != kubelet.Connected {
			t.Errorf("%s → %s after re-add: %v, want Connected", from, keys[2], got)
		}
	}
	if got := probeEventually(t, l, keys[2], ips[keys[0]], tcpPort, corev1.ProtocolTCP, kubelet.Connected, 10*time.Second); got != kubelet.Connected {
		t.Errorf("%s → %s after re-add: %v, want Connected", keys[2], keys[0], got)
	}
}

func waitFlows(t *testing.T, nodes []*lab.Node, ok func(*lab.Node) (bool, string)) {
	t.Helper()
	for _, n := range nodes {
		var why string
		err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			var done bool
			done, why = ok(n)
			return done, nil
		})
		if err != nil {
			t.Fatalf("node %s: %s", n.Name, why)
		}
	}
}
