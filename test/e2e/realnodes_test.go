package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/images"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/kubelet"
)

// TestRealNodes runs what only real nodes can show, on one 3-node containerd lab with
// ovs-sdn installed from manifests/ (whatever -runtime says, so that plain `make test` runs
// real nodes too; ~4 min, more the first time, when the images are built): agnhost pods
// of a Deployment talk over TCP and UDP through kubectl exec; pods resolve Services through
// the lab's cluster DNS (CoreDNS) and connect by name; CNI DEL under a real runtime
// removes port, flows and lease; hostPorts (TCP and UDP, hostIP 127.0.0.1 and the node's,
// through the conflist's portmap) answer from the node and from another node; kubelet and
// containerd restarts and a recreated sandbox keep pods networked; 100 pod create/delete
// cycles leak no address; and an upgrade
// (logLevel changed, rendered and applied again) rolls the DaemonSet node by node while
// established TCP streams between pods survive every agent restart.
func TestRealNodes(t *testing.T) {
	l := startLabOn(t, "e2ereal", networkv1.NetworkPolicyPluginName, lab.RuntimeContainerd)
	t.Run("AgnhostDeployment", func(t *testing.T) { testAgnhostDeployment(t, l) })
	t.Run("ClusterDNS", func(t *testing.T) { testClusterDNS(t, l) })
	t.Run("CNIDelRemovesPortFlowsLease", func(t *testing.T) { testCNIDel(t, l) })
	t.Run("HostPorts", func(t *testing.T) { testHostPorts(t, l) })
	t.Run("RuntimeRestarts", func(t *testing.T) { testRuntimeRestarts(t, l) })
	t.Run("SandboxRecreated", func(t *testing.T) { testSandboxRecreated(t, l) })
	t.Run("NoIPLeakAfter100Cycles", func(t *testing.T) { testNoIPLeak(t, l) })
	t.Run("UpgradeRollsNodeByNode", func(t *testing.T) { testUpgrade(t, l) })
}

// agnhostPod is a pod running agnhost with args on node (or scheduled when node is "").
func agnhostPod(ns, name, node string, args ...string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: ptrTo(int64(1)),
			Containers:                    []corev1.Container{{Name: "agnhost", Image: images.AgnhostImage, Args: args}},
		},
	}
}

func ptrTo[T any](v T) *T { return &v }

func createPod(t *testing.T, l *lab.Lab, pod *corev1.Pod) {
	t.Helper()
	if err := l.EnsureNamespaces(context.Background(), nil, pod.Namespace); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := l.Kube.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil && strings.Contains(err.Error(), "serviceaccount") {
			return false, nil // the namespace's default ServiceAccount comes a moment later
		}
		return true, err
	})
	if err != nil {
		t.Fatalf("creating pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
}

// runningPod waits until the pod runs with an IP and returns it.
func runningPod(t *testing.T, l *lab.Lab, ns, name string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := l.Kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		pod = p
		return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && podReady(p), nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s not running: %v (%+v)", ns, name, err, pod)
	}
	return pod
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// deletePodAndWait deletes the pod and waits until the API no longer has it.
func deletePodAndWait(t *testing.T, l *lab.Lab, ns, name string) {
	t.Helper()
	ctx := context.Background()
	if err := l.Kube.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := l.Kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s not gone: %v", ns, name, err)
	}
}

// hostSubnet is the pod subnet of node.
func hostSubnet(t *testing.T, l *lab.Lab, node string) netip.Prefix {
	t.Helper()
	hs, err := l.Network.NetworkV1().HostSubnets().Get(context.Background(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return netip.MustParsePrefix(hs.Subnet)
}

// leases lists the addresses the node's agent has leased (host-local files named by IP in
// the node's /var/lib/cni/networks/ovs-sdn).
func leases(t *testing.T, n *lab.Node) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(n.Real.Config().Dir, "cni", "lib", "networks", "ovs-sdn"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var ips []string
	for _, e := range entries {
		if _, err := netip.ParseAddr(e.Name()); err == nil {
			ips = append(ips, e.Name())
		}
	}
	return ips
}

// podPorts maps the IP of every pod port of the node's br0 to the port name.
func podPorts(t *testing.T, n *lab.Node) map[string]string {
	t.Helper()
	out, err := n.Net.Vsctl("--format=csv", "--data=bare", "--no-headings", "--columns=name,external_ids", "list", "Interface")
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		name, ids, _ := strings.Cut(line, ",")
		for _, kv := range strings.Fields(strings.Trim(ids, `"`)) {
			if ip, ok := strings.CutPrefix(kv, "ip="); ok {
				ports[ip] = name
			}
		}
	}
	return ports
}

// testAgnhostDeployment: a Deployment of agnhost netexec pods spread by kube-scheduler
// over the 3 nodes gets an address from each node's HostSubnet, and `kubectl exec` into
// each pod reaches the others over TCP and UDP.
func testAgnhostDeployment(t *testing.T, l *lab.Lab) {
	ctx := context.Background()
	manifest := `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: e2e-web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
      containers:
      - {name: agnhost, image: ` + images.AgnhostImage + `, args: [netexec, --http-port=8080, --udp-port=8081]}
`
	if err := l.EnsureNamespaces(ctx, nil, "e2e-web"); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "web.yaml")
	must(t, os.WriteFile(file, []byte(manifest), 0o644))
	if _, err := l.Kubectl(ctx, "apply", "-f", file); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Kubectl(ctx, "-n", "e2e-web", "rollout", "status", "deployment/web", "--timeout=3m"); err != nil {
		t.Fatal(err)
	}
	pods, err := l.Kube.CoreV1().Pods("e2e-web").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	must(t, err)
	nodes := map[string]bool{}
	for _, p := range pods.Items {
		nodes[p.Spec.NodeName] = true
		if sub := hostSubnet(t, l, p.Spec.NodeName); !sub.Contains(netip.MustParseAddr(p.Status.PodIP)) {
			t.Errorf("pod %s on %s has %s, outside the node's HostSubnet %s", p.Name, p.Spec.NodeName, p.Status.PodIP, sub)
		}
	}
	if len(pods.Items) != 3 || len(nodes) != 3 {
		t.Fatalf("%d pods on nodes %v, want one on each of the 3 nodes", len(pods.Items), nodes)
	}
	for _, from := range pods.Items {
		for _, to := range pods.Items {
			if from.Name != to.Name {
				checkExecReach(t, l, from, to)
			}
		}
	}
}

// checkExecReach: inside from (kubectl exec), TCP to to:8080 connects and a UDP
// datagram to to:8081 is answered with to's host name.
func checkExecReach(t *testing.T, l *lab.Lab, from, to corev1.Pod) {
	t.Helper()
	ctx := context.Background()
	if out, err := l.Kubectl(ctx, "-n", from.Namespace, "exec", from.Name, "--", "/agnhost", "connect", "--timeout=5s",
		to.Status.PodIP+":8080"); err != nil {
		t.Errorf("TCP %s → %s (%s): %v %s", from.Name, to.Name, to.Status.PodIP, err, out)
	}
	udp := fmt.Sprintf("exec 3<>/dev/udp/%s/8081; for i in 1 2 3; do echo hostname >&3; "+
		"r=$(timeout 2 dd bs=256 count=1 status=none <&3) && [ -n \"$r\" ] && { echo \"$r\"; exit 0; }; done; exit 1", to.Status.PodIP)
	out, err := l.Kubectl(ctx, "-n", from.Namespace, "exec", from.Name, "--", "bash", "-c", udp)
	if err != nil || strings.TrimSpace(out) != to.Name {
		t.Errorf("UDP %s → %s (%s): %q, %v; want the answer %q", from.Name, to.Name, to.Status.PodIP, out, err, to.Name)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// testCNIDel: deleting a pod makes the runtime call CNI DEL, which removes the pod's br0
// port, every flow matching its address and its IP lease.
func testCNIDel(t *testing.T, l *lab.Lab) {
	n := l.Nodes()[0]
	createPod(t, l, agnhostPod("e2e-del", "victim", n.Name, "pause"))
	pod := runningPod(t, l, "e2e-del", "victim")
	ip := pod.Status.PodIP
	if podPorts(t, n)[ip] == "" || !mentions(dumpFlows(t, n), ip) || !containsStr(leases(t, n), ip) {
		t.Fatalf("pod %s (%s) on %s: port %q, flows %v, leases %v before the delete", pod.Name, ip, n.Name,
			podPorts(t, n)[ip], mentions(dumpFlows(t, n), ip), leases(t, n))
	}
	deletePodAndWait(t, l, "e2e-del", "victim")
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return podPorts(t, n)[ip] == "" && !mentions(dumpFlows(t, n), ip) && !containsStr(leases(t, n), ip), nil
	})
	if err != nil {
		t.Errorf("after deleting pod %s (%s): port %q, flows mention it: %v, leases %v", pod.Name, ip,
			podPorts(t, n)[ip], mentions(dumpFlows(t, n), ip), leases(t, n))
	}
}

// mentions reports whether a flow dump names ip (not merely a longer address starting
// with it).
func mentions(dump, ip string) bool {
	return regexp.MustCompile(`\b` + regexp.QuoteMeta(ip) + `\b`).MatchString(dump)
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// servingPair is a pod on node1 and one on node2, both with the lab's servers on tcpPort.
func servingPair(t *testing.T, l *lab.Lab, ns string) ([]types.NamespacedName, map[types.NamespacedName]netip.Addr) {
	t.Helper()
	ctx := context.Background()
	must(t, l.EnsureNamespaces(ctx, nil, ns))
	var keys []types.NamespacedName
	for i, n := range l.Nodes()[:2] {
		k := key(ns, fmt.Sprintf("p%d", i+1))
		must(t, l.CreatePod(ctx, lab.PodSpec{Namespace: ns, Name: k.Name, Node: n.Name,
			Ports: []corev1.ContainerPort{{ContainerPort: tcpPort, Protocol: corev1.ProtocolTCP}}}))
		keys = append(keys, k)
	}
	ips, err := l.WaitPodsRunning(ctx, 2*time.Minute, keys...)
	must(t, err)
	return keys, ips
}

// checkPair probes both ways between the pair and fails the test unless both connect.
func checkPair(t *testing.T, l *lab.Lab, when string, keys []types.NamespacedName, ips map[types.NamespacedName]netip.Addr) {
	t.Helper()
	for i, from := range keys {
		to := keys[1-i]
		if got := probeEventually(t, l, from, ips[to], tcpPort, corev1.ProtocolTCP, kubelet.Connected, 20*time.Second); got != kubelet.Connected {
			t.Errorf("%s: %s → %s (%s): %v, want Connected", when, from, to, ips[to], got)
		}
	}
}

// podSandbox returns the pod's current sandbox ID on its node, from the runtime.
func podSandbox(t *testing.T, n *lab.Node, pod *corev1.Pod) string {
	t.Helper()
	out, err := n.Real.Crictl(context.Background(), "pods", "--label", "io.kubernetes.pod.uid="+string(pod.UID), "--state", "ready", "--quiet")
	must(t, err)
	return strings.TrimSpace(out)
}

// testRuntimeRestarts: restarting node2's kubelet, then its containerd, keeps the pods'
// sandboxes (same sandbox, same IP) and their network.
func testRuntimeRestarts(t *testing.T, l *lab.Lab) {
	ctx := context.Background()
	keys, ips := servingPair(t, l, "e2e-restart")
	n2 := l.Nodes()[1]
	pod, err := l.Kube.CoreV1().Pods(keys[1].Namespace).Get(ctx, keys[1].Name, metav1.GetOptions{})
	must(t, err)
	sandbox := podSandbox(t, n2, pod)
	checkPair(t, l, "before the restarts", keys, ips)
	for _, r := range []struct {
		name    string
		restart func(context.Context) error
	}{{"kubelet", n2.Real.RestartKubelet}, {"containerd", n2.Real.RestartContainerd}} {
		begin := time.Now()
		must(t, r.restart(ctx))
		t.Logf("%s on %s restarted in %v", r.name, n2.Name, time.Since(begin).Round(time.Millisecond))
		checkPair(t, l, "after the "+r.name+" restart", keys, ips)
		if got := podSandbox(t, n2, pod); got != sandbox {
			t.Errorf("after the %s restart the pod's sandbox is %q, was %q", r.name, got, sandbox)
		}
	}
}

// testSandboxRecreated: when a pod's sandbox dies (its pause process killed), the kubelet
// makes a new one; CNI ADD gives it a working network again and the old one is cleaned up.
func testSandboxRecreated(t *testing.T, l *lab.Lab) {
	ctx := context.Background()
	keys, ips := servingPair(t, l, "e2e-sandbox")
	n2 := l.Nodes()[1]
	pod, err := l.Kube.CoreV1().Pods(keys[1].Namespace).Get(ctx, keys[1].Name, metav1.GetOptions{})
	must(t, err)
	old := podSandbox(t, n2, pod)
	path := n2.Tap.PodNetNS(keys[1])
	var pid int
	if _, err := fmt.Sscanf(path, "/proc/%d/ns/net", &pid); err != nil {
		t.Fatalf("pod %s netns %q: %v", keys[1], path, err)
	}
	must(t, syscall.Kill(pid, syscall.SIGKILL))
	var fresh string
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		fresh = podSandbox(t, n2, pod)
		return fresh != "" && fresh != old, nil
	})
	if err != nil {
		t.Fatalf("no new sandbox for %s after its pause was killed (old %s): %v", keys[1], old, err)
	}
	ips, err = l.WaitPodsRunning(ctx, 2*time.Minute, keys...)
	must(t, err)
	checkPair(t, l, "after the sandbox was recreated", keys, ips)
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return len(leases(t, n2)) == len(podPorts(t, n2)), nil
	})
	if err != nil {
		t.Errorf("node %s: leases %v and pod ports %v differ after the sandbox was recreated", n2.Name, leases(t, n2), podPorts(t, n2))
	}
}

// testNoIPLeak: 100 pods created and deleted on one node (10 at a time) leave exactly the
// leases and ports of the pods that still exist, and no lease, port or flow names an
// address one of the deleted pods had.
func testNoIPLeak(t *testing.T, l *lab.Lab) {
	n := l.Nodes()[2]
	beforeLeases, beforePorts := len(leases(t, n)), len(podPorts(t, n))
	churned := map[string]bool{}
	begin := time.Now()
	for round := 0; round < 10; round++ {
		var names []string
		for i := 0; i < 10; i++ {
			name := fmt.Sprintf("churn-%d-%d", round, i)
			createPod(t, l, agnhostPod("e2e-churn", name, n.Name, "pause"))
			names = append(names, name)
		}
		for _, name := range names {
			churned[runningPod(t, l, "e2e-churn", name).Status.PodIP] = true
		}
		for _, name := range names {
			must(t, l.Kube.CoreV1().Pods("e2e-churn").Delete(context.Background(), name, metav1.DeleteOptions{}))
		}
		for _, name := range names {
			deletePodAndWait(t, l, "e2e-churn", name)
		}
	}
	t.Logf("100 pods created and deleted on %s in %v", n.Name, time.Since(begin).Round(time.Millisecond))
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return len(leases(t, n)) == beforeLeases && len(podPorts(t, n)) == beforePorts, nil
	})
	if err != nil {
		t.Errorf("node %s after 100 cycles: %d leases (%d before), %d pod ports (%d before)", n.Name,
			len(leases(t, n)), beforeLeases, len(podPorts(t, n)), beforePorts)
	}
	t.Logf("the 100 pods had %d distinct addresses", len(churned))
	if left := churnedLeftovers(t, n, churned); len(left) > 0 {
		t.Errorf("node %s after 100 cycles still has state of deleted pods: %s", n.Name, strings.Join(left, "; "))
	}
}

// churnedLeftovers lists the leases, br0 ports and flows of node that name one of the
// addresses in ips.
func churnedLeftovers(t *testing.T, n *lab.Node, ips map[string]bool) []string {
	t.Helper()
	var left []string
	for _, ip := range leases(t, n) {
		if ips[ip] {
			left = append(left, "lease "+ip)
		}
	}
	for ip, port := range podPorts(t, n) {
		if ips[ip] {
			left = append(left, "port "+port+" ("+ip+")")
		}
	}
	dump := dumpFlows(t, n)
	for ip := range ips {
		if mentions(dump, ip) {
			left = append(left, "flows matching "+ip)
		}
	}
	sort.Strings(left)
	return left
}
