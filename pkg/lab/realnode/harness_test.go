package realnode

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab/images"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/relay"
	"github.com/ovs-sdn/ovs-sdn/pkg/testenv"
)

// The integration tests need root, network namespaces, OVS and `make tools`; run them
// under the heavy-test lock: flock /tmp/ovs-sdn-heavy.lock go test ./pkg/lab/realnode/

// gateway is the underlay address the nodes reach the API server on (through the relay).
var gateway = netip.MustParseAddr("198.18.0.1")

// cluster is a control plane, an underlay and the relays between them: what a lab of real
// nodes needs besides the nodes.
type cluster struct {
	env    *testenv.Env
	kube   kubernetes.Interface
	net    *netlab.Lab
	root   string // state root: netlab's, the egress socket, the nodes' dirs
	tools  string
	images string // archive with pause and agnhost
}

func newCluster(t *testing.T, prefix string) *cluster {
	t.Helper()
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("needs root, namespaces, OVS and the pinned tools; skipped with -short")
	}
	c := &cluster{root: "/run/" + prefix}
	_ = Sweep(filepath.Join(c.root, "nodes"))
	_ = netlab.Sweep(prefix, netlab.WithStateRoot(c.root))
	_ = os.RemoveAll(c.root)
	must(t, os.MkdirAll(c.root, 0o700))
	t.Cleanup(func() { _ = os.RemoveAll(c.root) })
	var err error
	c.tools, err = testenv.ToolsBin()
	must(t, err)
	c.images = buildImages(t)
	egress := filepath.Join(c.root, "egress.sock")
	must(t, os.WriteFile(filepath.Join(c.root, "egress.yaml"), relay.EgressSelectorConfig(egress), 0o600))
	underlay := "/run/netns/" + prefix + "-underlay"
	proxy, err := relay.ListenConnect(egress, []relay.Route{{Prefix: netip.MustParsePrefix("198.18.0.0/24"), NetNS: underlay}})
	must(t, err)
	t.Cleanup(func() { proxy.Close() })
	c.env = testenv.StartT(t, testenv.Options{ControllerManager: true, Scheduler: true,
		ServingIPs:         []netip.Addr{gateway},
		ExtraAPIServerArgs: relay.APIServerArgs(filepath.Join(c.root, "egress.yaml"))})
	c.kube = kubernetes.NewForConfigOrDie(c.env.Config)
	c.net, err = netlab.New(prefix, netlab.WithStateRoot(c.root))
	must(t, err)
	t.Cleanup(func() {
		if err := c.net.Close(); err != nil {
			t.Errorf("netlab close: %v", err)
		}
	})
	mustRun(t, "ip", "-n", underlay[len("/run/netns/"):], "addr", "add", gateway.String()+"/24", "dev", "underlay")
	api, err := relay.ListenTCP(underlay, netip.AddrPortFrom(gateway, 6443), c.env.URL[len("https://"):])
	must(t, err)
	t.Cleanup(func() { api.Close() })
	return c
}

// buildImages builds (or finds in the cache) pause and agnhost.
func buildImages(t *testing.T) string {
	t.Helper()
	root, err := testenv.ModuleRoot()
	must(t, err)
	tools, err := testenv.ToolsBin()
	must(t, err)
	ag, err := images.Agnhost(tools)
	must(t, err)
	b := &images.Builder{ModuleRoot: root}
	res, err := b.Build(context.Background(), []images.Spec{images.Pause(), ag})
	must(t, err)
	t.Logf("images: %s (cached %v) in %v", res.Archive, res.Cached, res.Duration.Round(time.Millisecond))
	return res.Archive
}

// bridgeCNI installs a static network on the node: Debian's containernetworking-plugins
// bridge with host-local addresses from subnet.
func bridgeCNI(t *testing.T, cfg Config, subnet string) {
	t.Helper()
	must(t, os.MkdirAll(cfg.CNIConfDir(), 0o755))
	must(t, os.MkdirAll(cfg.CNIBinDir(), 0o755))
	for _, p := range []string{"bridge", "host-local"} {
		data, err := os.ReadFile(filepath.Join("/usr/lib/cni", p))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(cfg.CNIBinDir(), p), data, 0o755))
	}
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"labtest","plugins":[{"type":"bridge","bridge":"cni0",
"isGateway":true,"ipam":{"type":"host-local","ranges":[[{"subnet":%q}]]}}]}`, subnet)
	must(t, os.WriteFile(filepath.Join(cfg.CNIConfDir(), "10-labtest.conflist"), []byte(conf), 0o644))
}

// nodeConfig is the configuration of node name at ip on the cluster.
func (c *cluster) nodeConfig(t *testing.T, n *netlab.Node) Config {
	t.Helper()
	rc := c.env.ConfigFor("system:node:"+n.Name, "system:nodes")
	kc, err := KubeletKubeconfig(fmt.Sprintf("https://%s:6443", gateway), c.env.Config.CAData, rc.CertData, rc.KeyData)
	must(t, err)
	return Config{Name: n.Name, IP: n.IP.Addr(), NetNS: n.NetNS.Path, Dir: filepath.Join(c.root, "nodes", n.Name), LabDir: c.root,
		CgroupRoot: "/" + c.net.Prefix + "-" + n.Name, OVSRunDir: n.RunDir, Kubeconfig: kc,
		ClientCA: c.env.ClientCAPEM(), Images: []string{c.images}, ToolsBin: c.tools, Out: testWriter{t}}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// waitNodeReady waits until the Node reports Ready.
func (c *cluster) waitNodeReady(t *testing.T, name string, timeout time.Duration) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		n, err := c.kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("node %s not Ready: %v", name, err)
	}
}

// waitPodRunning waits until the pod runs and returns it.
func (c *cluster) waitPodRunning(t *testing.T, ns, name string, timeout time.Duration) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := c.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		pod = p
		return err == nil && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "", nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s not running: %v (status %+v)", ns, name, err, pod.Status)
	}
	return pod
}

func (c *cluster) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(c.tools, "kubectl"), append([]string{"--kubeconfig", c.env.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func mustRun(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", argv, err, out)
	}
	return string(out)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
