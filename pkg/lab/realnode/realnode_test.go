package realnode

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// TestRealNodes brings up two real nodes with a static bridge network, runs an agnhost pod
// on each (placed by kube-scheduler), uses kubectl exec and logs, crictl and the pod's
// network, then tears node 1 down with Stop and node 2 with Sweep (as after a crash) and
// checks that neither leaves a process, mount, cgroup, veth or file behind.
func TestRealNodes(t *testing.T) {
	c := newCluster(t, "rnt")
	nodes := map[string]*Node{}
	var cfgs []Config
	for i, name := range []string{"n1", "n2"} {
		nn, err := c.net.AddNode(name, netip.MustParsePrefix(fmt.Sprintf("198.18.0.%d/24", 11+i)))
		must(t, err)
		cfg := c.nodeConfig(t, nn)
		bridgeCNI(t, cfg, fmt.Sprintf("10.244.%d.0/24", i+1))
		begin := time.Now()
		n, err := Start(context.Background(), cfg)
		must(t, err)
		t.Cleanup(func() { _ = n.Stop() })
		c.waitNodeReady(t, name, 2*time.Minute)
		t.Logf("node %s Ready %v after Start", name, time.Since(begin).Round(time.Millisecond))
		nodes[name], cfgs = n, append(cfgs, n.Config())
	}
	for _, name := range []string{"n1", "n2"} {
		createAgnhost(t, c, "web-"+name, name)
	}
	for _, name := range []string{"n1", "n2"} {
		pod := c.waitPodRunning(t, "default", "web-"+name, 2*time.Minute)
		checkPod(t, c, nodes[name], pod)
	}
	checkNodeView(t, nodes["n1"])
	ino1, _ := nsInode(cfgs[0].mntNS())
	ino2, _ := nsInode(cfgs[1].mntNS())
	must(t, nodes["n1"].Stop())
	checkGone(t, c, cfgs[0], ino1)
	// Node 2 as after a crash: nothing stopped, only swept.
	must(t, Sweep(filepath.Join(c.root, "nodes")))
	checkGone(t, c, cfgs[1], ino2)
	must(t, nodes["n2"].Stop()) // after a sweep: nothing left to do, no error
}

func createAgnhost(t *testing.T, c *cluster, name, node string) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{"kubernetes.io/hostname": node},
			Containers: []corev1.Container{{Name: "agnhost", Image: "registry.k8s.io/e2e-test-images/agnhost:2.56",
				Args: []string{"netexec", "--http-port=8080"}}},
		},
	}
	_, err := c.kube.CoreV1().Pods("default").Create(context.Background(), pod, metav1.CreateOptions{})
	must(t, err)
}

// checkPod: kube-scheduler placed the pod, its IP is the bridge network's, and kubectl
// exec and logs, crictl and TCP to the pod from its node all work.
func checkPod(t *testing.T, c *cluster, n *Node, pod *corev1.Pod) {
	t.Helper()
	if pod.Spec.NodeName != n.Name() || !strings.HasPrefix(pod.Status.PodIP, "10.244.") {
		t.Errorf("pod %s on %q with IP %s, want node %s and 10.244.x", pod.Name, pod.Spec.NodeName, pod.Status.PodIP, n.Name())
	}
	if out := c.kubectl(t, "exec", pod.Name, "--", "sh", "-c", "echo hello from $(hostname)"); !strings.Contains(out, "hello from "+pod.Name) {
		t.Errorf("kubectl exec %s: %q", pod.Name, out)
	}
	if out := c.kubectl(t, "logs", pod.Name); !strings.Contains(out, "8080") {
		t.Errorf("kubectl logs %s: %q, want netexec's start-up on port 8080", pod.Name, out)
	}
	ctx := context.Background()
	out, err := n.Crictl(ctx, "ps", "--name", "agnhost", "--quiet")
	must(t, err)
	id := strings.TrimSpace(out)
	if id == "" {
		t.Fatalf("crictl ps on %s lists no agnhost container", n.Name())
	}
	if out, err := n.Crictl(ctx, "exec", id, "/agnhost", "--version"); err != nil || !strings.Contains(out, "2.56") {
		t.Errorf("crictl exec on %s: %q, %v", n.Name(), out, err)
	}
	if got := httpGet(t, n, netip.MustParseAddr(pod.Status.PodIP), "/hostname"); got != pod.Name {
		t.Errorf("GET /hostname from node %s to %s: %q", n.Name(), pod.Status.PodIP, got)
	}
}

// httpGet fetches path from ip:8080 on a socket made in the node's network namespace.
func httpGet(t *testing.T, n *Node, ip netip.Addr, path string) string {
	t.Helper()
	var conn net.Conn
	err := inNetNS(n.cfg.NetNS, func() (err error) {
		conn, err = net.DialTimeout("tcp", netip.AddrPortFrom(ip, 8080).String(), 5*time.Second)
		return err
	})
	must(t, err)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.0\r\n\r\n", path)
	var body strings.Builder
	sc := bufio.NewScanner(conn)
	inBody := false
	for sc.Scan() {
		if inBody {
			body.WriteString(sc.Text())
		}
		inBody = inBody || sc.Text() == ""
	}
	return body.String()
}

// checkNodeView: inside the node, the host paths a DaemonSet mounts are the node's own.
func checkNodeView(t *testing.T, n *Node) {
	t.Helper()
	ctx := context.Background()
	if out, err := n.Exec(ctx, "ovs-vsctl", "--timeout=5", "br-exists", "br-phy"); err != nil {
		t.Errorf("the node's OVS at /var/run/openvswitch: %v %s", err, out)
	}
	if out, err := n.Exec(ctx, "ls", "/etc/cni/net.d"); err != nil || strings.TrimSpace(out) != "10-labtest.conflist" {
		t.Errorf("/etc/cni/net.d in node %s: %q, %v", n.Name(), out, err)
	}
	if out, err := n.Exec(ctx, "ls", "/sys/class/net"); err != nil || !strings.Contains(out, "br-phy") || !strings.Contains(out, "cni0") {
		t.Errorf("/sys/class/net of node %s: %q, %v; want its own devices", n.Name(), out, err)
	}
	// crictl inside the node finds containerd through the node's /etc/crictl.yaml.
	if out, err := n.Command(ctx, "crictl", "pods").CombinedOutput(); err != nil || strings.Contains(string(out), "level=warning") ||
		!strings.Contains(string(out), "web-"+n.Name()) {
		t.Errorf("crictl pods inside node %s: %v\n%s", n.Name(), err, out)
	}
	if _, err := n.Exec(ctx, "test", "-d", "/lib/modules"); err != nil {
		t.Errorf("/lib/modules in node %s: %v", n.Name(), err)
	}
	if _, err := os.Stat("/etc/cni/net.d/10-labtest.conflist"); err == nil {
		t.Error("the node's CNI configuration is visible on the host")
	}
}

// checkGone: nothing of the node is left on the host.
func checkGone(t *testing.T, c *cluster, cfg Config, mntIno uint64) {
	t.Helper()
	if _, err := os.Stat(cfg.Dir); !os.IsNotExist(err) {
		t.Errorf("node dir %s left: %v", cfg.Dir, err)
	}
	if mps, _ := mountsUnder(cfg.Dir); len(mps) > 0 {
		t.Errorf("mounts left: %v", mps)
	}
	if pids := pidsInMountNS(mntIno); mntIno != 0 && len(pids) > 0 {
		t.Errorf("processes left in the node's mount namespace: %v", pids)
	}
	cg, err := hostCgroups()
	must(t, err)
	for _, m := range cg.mounts {
		if _, err := os.Stat(filepath.Join(m, cfg.CgroupRoot)); !os.IsNotExist(err) {
			t.Errorf("cgroup %s%s left: %v", m, cfg.CgroupRoot, err)
		}
	}
	// The pods' network namespaces die with the node's mount namespace, and their veths
	// (host ends in the node's namespace) with them; the kernel does that asynchronously.
	err = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		return len(podVeths(cfg.NetNS)) == 0, nil
	})
	if err != nil {
		t.Errorf("veths left in the node's network namespace: %v", podVeths(cfg.NetNS))
	}
}

// podVeths lists the veths of a node's network namespace other than its uplink eth0.
func podVeths(netns string) []string {
	out, err := netnsExec(netns, "ip", "-o", "link", "show", "type", "veth")
	if err != nil {
		return []string{err.Error()}
	}
	var left []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) > 1 && !strings.HasPrefix(f[1], "eth0@") {
			left = append(left, f[1])
		}
	}
	return left
}

func netnsExec(netns string, argv ...string) (string, error) {
	return run(context.Background(), nil, append([]string{"nsenter", "--net=" + netns, "--"}, argv...)...)
}
