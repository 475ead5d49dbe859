package kubelet

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
)

func TestNodeRegisteredReadyAndLeaseRenewed(t *testing.T) {
	h := newHarness(t, "kltnode", true)
	ctx := context.Background()
	var node *corev1.Node
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		n, err := h.kube.CoreV1().Nodes().Get(ctx, testNode, metav1.GetOptions{})
		node = n
		return err == nil && nodeReady(n), nil
	})
	if err != nil {
		t.Fatalf("node %s not Ready: %v (%+v)", testNode, err, node)
	}
	var internal string
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			internal = a.Address
		}
	}
	if internal != testNodeIP.String() {
		t.Errorf("InternalIP = %q, want %s", internal, testNodeIP)
	}
	leases := h.kube.CoordinationV1().Leases(LeaseNamespace)
	var renewals []time.Time
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := leases.Get(ctx, testNode, metav1.GetOptions{})
		if err != nil || l.Spec.RenewTime == nil {
			return false, nil
		}
		if n := len(renewals); n == 0 || l.Spec.RenewTime.After(renewals[n-1]) {
			renewals = append(renewals, l.Spec.RenewTime.Time)
		}
		if *l.Spec.HolderIdentity != testNode || len(l.OwnerReferences) != 1 || l.OwnerReferences[0].UID != node.UID {
			t.Errorf("lease holder/owner = %q/%v, want %s/the Node", *l.Spec.HolderIdentity, l.OwnerReferences, testNode)
		}
		return len(renewals) >= 3, nil
	})
	if err != nil {
		t.Fatalf("lease renewals seen: %v: %v", renewals, err)
	}
	// The Ready heartbeat moves too.
	hb := readyHeartbeat(node)
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		n, err := h.kube.CoreV1().Nodes().Get(ctx, testNode, metav1.GetOptions{})
		return err == nil && nodeReady(n) && readyHeartbeat(n).After(hb), nil
	})
	if err != nil {
		t.Fatalf("Ready heartbeat not renewed: %v", err)
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func readyHeartbeat(n *corev1.Node) time.Time {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.LastHeartbeatTime.Time
		}
	}
	return time.Time{}
}

func TestPodLifecycleAndProbes(t *testing.T) {
	h := newHarness(t, "kltpod", true)
	h.createPod("a", tcp(8080), udp(5353), sctp(9000))
	hostPort := tcp(8080)
	hostPort.HostPort = 18080
	h.createPod("b", hostPort, udp(5353))
	pa, pb := h.waitRunning("a"), h.waitRunning("b")
	for _, p := range []*corev1.Pod{pa, pb} {
		if !strings.HasPrefix(p.Status.PodIP, fakeSubnet+".") || p.Status.HostIP != testNodeIP.String() {
			t.Errorf("pod %s: podIP %s hostIP %s, want %s.x and %s", p.Name, p.Status.PodIP, p.Status.HostIP, fakeSubnet, testNodeIP)
		}
		if len(p.Status.ContainerStatuses) != 1 || !p.Status.ContainerStatuses[0].Ready {
			t.Errorf("pod %s: container statuses %+v, want one ready", p.Name, p.Status.ContainerStatuses)
		}
		if podCondition(p, corev1.ContainersReady) != corev1.ConditionTrue {
			t.Errorf("pod %s: ContainersReady not True", p.Name)
		}
	}
	if pa.Status.PodIP == pb.Status.PodIP {
		t.Fatalf("pods share IP %s", pa.Status.PodIP)
	}
	if adds := h.calls("ADD"); len(adds) != 2 || !strings.Contains(strings.Join(adds, "\n"), "/run/netns/kltpod-node1-") {
		t.Errorf("fake CNI ADD calls = %q, want 2 with netns under /run/netns/kltpod-node1-", adds)
	}
	t.Run("probes", func(t *testing.T) { testProbes(t, h, pa.Status.PodIP, pb.Status.PodIP) })
	t.Run("delete", func(t *testing.T) { testDelete(t, h, pb) })
}

func testProbes(t *testing.T, h *harness, ipA, ipB string) {
	ctx := context.Background()
	cases := []struct {
		name      string
		from      string
		to        netip.AddrPort
		proto     corev1.Protocol
		want      Outcome
		wantReply string
		via       Via // for the SCTP witness; zero: the destination itself
	}{
		{"tcp open", "a", addrPort(ipB, 8080), corev1.ProtocolTCP, Connected, "b", Via{}},
		{"tcp back", "b", addrPort(ipA, 8080), corev1.ProtocolTCP, Connected, "a", Via{}},
		{"tcp closed port", "a", addrPort(ipB, 8081), corev1.ProtocolTCP, Refused, "", Via{}},
		{"udp open", "a", addrPort(ipB, 5353), corev1.ProtocolUDP, Connected, "b", Via{}},
		{"udp closed port", "a", addrPort(ipB, 5354), corev1.ProtocolUDP, Refused, "", Via{}},
		{"sctp declared", "b", addrPort(ipA, 9000), corev1.ProtocolSCTP, Connected, "", Via{}},
		{"sctp undeclared", "b", addrPort(ipA, 9001), corev1.ProtocolSCTP, Refused, "", Via{}},
		// A Via names where the INIT must arrive and from whom (a Service's endpoint after
		// DNAT, the client or its SNAT address): the witness asks about that, nothing else.
		{"sctp via, as sent", "b", addrPort(ipA, 9000), corev1.ProtocolSCTP, Connected, "",
			Via{Endpoint: addrPort(ipA, 9000), Source: netip.MustParseAddr(ipB)}},
		{"sctp via another source", "b", addrPort(ipA, 9000), corev1.ProtocolSCTP, TimedOut, "",
			Via{Endpoint: addrPort(ipA, 9000), Source: netip.MustParseAddr(fakeSubnet + ".250")}},
		{"sctp via another port", "b", addrPort(ipA, 9000), corev1.ProtocolSCTP, TimedOut, "",
			Via{Endpoint: addrPort(ipA, 9001), Source: netip.MustParseAddr(ipB)}},
		// Nobody has this address: ARP gets no answer, nothing comes back within the timeout.
		{"tcp black hole", "a", addrPort(fakeSubnet+".250", 8080), corev1.ProtocolTCP, TimedOut, "", Via{}},
		{"udp black hole", "a", addrPort(fakeSubnet+".250", 5353), corev1.ProtocolUDP, TimedOut, "", Via{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			res, err := h.kubelet.probe(ctx, key(c.from), c.to, c.proto, time.Second, h.kubelet, c.via)
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("probe took %v with a 1 s timeout", d)
			}
			if res.Outcome != c.want || res.Reply != c.wantReply {
				t.Errorf("probe %s %s from %s = %v %q, want %v %q", c.proto, c.to, c.from, res.Outcome, res.Reply, c.want, c.wantReply)
			}
		})
	}
	if _, err := h.kubelet.Probe(ctx, key("nosuch"), addrPort(ipA, 8080), corev1.ProtocolTCP, time.Second); err == nil {
		t.Error("probe from a pod that does not exist: no error")
	}
}

func testDelete(t *testing.T, h *harness, pb *corev1.Pod) {
	netns := h.kubelet.PodNetNS(key("b"))
	if netns == "" {
		t.Fatal("pod b has no netns")
	}
	// A plain delete (default grace period): the kubelet must finalize it.
	if err := h.kube.CoreV1().Pods("default").Delete(context.Background(), "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := h.kube.CoreV1().Pods("default").Get(ctx, "b", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("pod b still exists after delete: %v", err)
	}
	if _, err := os.Stat(netns); !os.IsNotExist(err) {
		t.Errorf("netns %s still exists (stat: %v)", netns, err)
	}
	dels := h.calls("DEL")
	if len(dels) != 1 || !strings.Contains(dels[0], sandboxID(pb.UID)) || !strings.Contains(dels[0], " b ") {
		t.Errorf("fake CNI DEL calls = %q, want one for pod b's sandbox %s", dels, sandboxID(pb.UID))
	}
	// DEL carries the hostPorts of the ADD (from libcni's cache), as containerd's does:
	// portmap needs them to find its rules.
	const mapping = `"containerPort":8080,"hostIP":"","hostPort":18080,"protocol":"TCP"`
	if adds := h.calls("ADD"); !slices.ContainsFunc(adds, func(l string) bool { return strings.Contains(l, " b ") && strings.Contains(l, mapping) }) {
		t.Errorf("fake CNI ADD calls = %q, want pod b's with portMappings [{%s}]", adds, mapping)
	}
	if len(dels) == 1 && !strings.Contains(dels[0], mapping) {
		t.Errorf("fake CNI DEL call %q, want portMappings [{%s}]", dels[0], mapping)
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", fakeHostVeth(sandboxID(pb.UID)))); err == nil {
		t.Error("root netns has the fake's host veth: test bug")
	}
	// Pod a is untouched.
	if h.kubelet.PodNetNS(key("a")) == "" {
		t.Error("pod a lost its sandbox")
	}
}

// TestNetworkNotReadyAndCNIFailure: without a CNI configuration a pod waits (Pending,
// NetworkNotReady); a failing ADD is reported as an Event and condition and retried until it
// succeeds.
func TestNetworkNotReadyAndCNIFailure(t *testing.T) {
	h := newHarness(t, "kltfail", false)
	h.createPod("c", tcp(80))
	h.waitPod("c", "NetworkNotReady", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodPending && conditionReason(p, podReadyToStart) == ReasonNetworkNotReady
	})
	if adds := h.calls("ADD"); len(adds) != 0 {
		t.Fatalf("ADD ran without a configuration: %q", adds)
	}
	marker := filepath.Join(h.stateDir, "fail-c")
	must(t, os.WriteFile(marker, nil, 0o644))
	h.writeConf()
	p := h.waitPod("c", "FailedCreatePodSandBox", func(p *corev1.Pod) bool {
		return conditionReason(p, podReadyToStart) == ReasonFailedCreatePodSandBox
	})
	if msg := conditionMessage(p, podReadyToStart); !strings.Contains(msg, "ADD refused for pod c") {
		t.Errorf("condition message %q does not carry the plugin's error", msg)
	}
	waitEvent(t, h, "c", ReasonFailedCreatePodSandBox, "ADD refused for pod c")
	n := len(h.calls("ADD"))
	time.Sleep(time.Second)
	if m := len(h.calls("ADD")); m <= n {
		t.Errorf("failed ADD not retried: %d calls, then %d a second later", n, m)
	}
	must(t, os.Remove(marker))
	p = h.waitRunning("c")
	if p.Status.PodIP == "" {
		t.Error("no pod IP after recovery")
	}
}

func conditionReason(p *corev1.Pod, t corev1.PodConditionType) string {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Reason
		}
	}
	return ""
}

func conditionMessage(p *corev1.Pod, t corev1.PodConditionType) string {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Message
		}
	}
	return ""
}

func waitEvent(t *testing.T, h *harness, pod, reason, msg string) {
	t.Helper()
	sel := fields.Set{"involvedObject.name": pod, "reason": reason}.AsSelector().String()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
		evs, err := h.kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return false, nil
		}
		for _, e := range evs.Items {
			if e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, msg) && e.Source.Host == testNode {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Errorf("no Warning event %s with %q for pod %s: %v", reason, msg, pod, err)
	}
}

// TestGroupAcrossNodes: two kubelets (two nodes) on one hub; a Group finds the source pod's
// kubelet and witnesses SCTP on the other node. Kubelet.Probe alone cannot witness SCTP to
// another node's pod.
func TestGroupAcrossNodes(t *testing.T) {
	h := newHarness(t, "kltgrp", true)
	k2 := h.start("node2", netip.MustParseAddr("192.0.2.12"))
	var g Group
	g.Add(h.kubelet, k2)
	h.createPodOn(testNode, "x", tcp(80))
	h.createPodOn("node2", "y", udp(53), sctp(7777))
	px, py := h.waitRunning("x"), h.waitRunning("y")
	if px.Status.HostIP == py.Status.HostIP {
		t.Fatalf("both pods report hostIP %s", px.Status.HostIP)
	}
	if k2.PodNetNS(key("x")) != "" || h.kubelet.PodNetNS(key("y")) != "" {
		t.Fatal("a kubelet runs a pod bound to the other node")
	}
	ctx := context.Background()
	ipX, ipY := px.Status.PodIP, py.Status.PodIP
	for _, c := range []struct {
		from  string
		to    netip.AddrPort
		proto corev1.Protocol
		want  Outcome
	}{
		{"x", addrPort(ipY, 7777), corev1.ProtocolSCTP, Connected},
		{"x", addrPort(ipY, 7778), corev1.ProtocolSCTP, Refused},
		{"x", addrPort(ipY, 53), corev1.ProtocolUDP, Connected},
		{"y", addrPort(ipX, 80), corev1.ProtocolTCP, Connected},
	} {
		res, err := g.Probe(ctx, key(c.from), c.to, c.proto, time.Second)
		if err != nil || res.Outcome != c.want {
			t.Errorf("group probe %s %s from %s = %v, %v; want %v", c.proto, c.to, c.from, res.Outcome, err, c.want)
		}
	}
	if _, err := h.kubelet.Probe(ctx, key("x"), addrPort(ipY, 7777), corev1.ProtocolSCTP, time.Second); err == nil {
		t.Error("Kubelet.Probe witnessed SCTP to another node's pod")
	}
	if _, err := g.Probe(ctx, key("nosuch"), addrPort(ipY, 53), corev1.ProtocolUDP, time.Second); err == nil {
		t.Error("group probe from an unknown pod: no error")
	}
}
