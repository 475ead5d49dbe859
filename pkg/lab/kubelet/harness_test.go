package kubelet

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/ovs-sdn/ovs-sdn/pkg/testenv"
)

// harness is one kubelet against a real API server, with the fake CNI plugin wiring pods to
// a bridge in the hub netns "<prefix>-hub".
type harness struct {
	t        *testing.T
	prefix   string
	kube     kubernetes.Interface
	kubelet  *Kubelet
	hub      string // netns name
	confDir  string
	stateDir string // the fake plugin's
	binDir   string
}

const testNode = "node1"

var testNodeIP = netip.MustParseAddr("192.0.2.11")

// newHarness skips under -short or without root; everything it creates is removed at test
// end (and leftovers of a crashed run with the same prefix at start).
func newHarness(t *testing.T, prefix string, writeConf bool) *harness {
	t.Helper()
	if testing.Short() {
		t.Skip("needs root, network namespaces and a real API server; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	h := &harness{t: t, prefix: prefix, hub: prefix + "-hub"}
	sweepNetNS(t, prefix+"-")
	t.Cleanup(func() { sweepNetNS(t, prefix+"-") })
	h.setupHub()
	dir := t.TempDir()
	h.confDir, h.stateDir = filepath.Join(dir, "net.d"), filepath.Join(dir, "fake-state")
	h.binDir = filepath.Join(dir, "bin")
	for _, d := range []string{h.confDir, h.stateDir, h.binDir} {
		must(t, os.MkdirAll(d, 0o755))
	}
	self, err := os.Executable()
	must(t, err)
	must(t, os.Symlink(self, filepath.Join(h.binDir, fakeCNIType)))
	if writeConf {
		h.writeConf()
	}
	env := testenv.StartT(t, testenv.Options{})
	h.kube = kubernetes.NewForConfigOrDie(env.Config)
	h.kubelet = h.start(testNode, testNodeIP)
	return h
}

func (h *harness) setupHub() {
	for _, args := range [][]string{
		{"netns", "add", h.hub},
		{"-n", h.hub, "link", "set", "lo", "up"},
		{"-n", h.hub, "link", "add", "br0", "type", "bridge"},
		{"-n", h.hub, "link", "set", "br0", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			h.t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
}

func (h *harness) writeConf() {
	conf := map[string]any{"cniVersion": "1.0.0", "name": "fake-net", "plugins": []any{
		map[string]any{"type": fakeCNIType, "hub": "/run/netns/" + h.hub, "state": h.stateDir,
			"capabilities": map[string]bool{"portMappings": true}}}}
	b, err := json.Marshal(conf)
	must(h.t, err)
	must(h.t, os.WriteFile(filepath.Join(h.confDir, "10-fake.conflist"), b, 0o644))
}

// start runs a kubelet for node; cleanup stops it and checks that it removed its pod netns.
// Kubelets of one harness share the CNI configuration, the fake's state and the hub.
func (h *harness) start(node string, ip netip.Addr) *Kubelet {
	prefix := h.prefix + "-" + node + "-"
	k, err := New(Config{NodeName: node, NodeIP: ip, Kube: h.kube,
		CNIConfDir: h.confDir, CNIBinDir: h.binDir, PodNetNSPrefix: prefix,
		NodeStatusPeriod: 300 * time.Millisecond})
	must(h.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				h.t.Errorf("kubelet Run: %v", err)
			}
		case <-time.After(60 * time.Second):
			h.t.Errorf("kubelet Run did not return within 60 s of cancel")
		}
		if left := netnsWithPrefix(prefix); len(left) > 0 {
			h.t.Errorf("pod netns left after Run returned: %v", left)
		}
		if h.t.Failed() {
			b, _ := os.ReadFile(filepath.Join(h.stateDir, "calls.log"))
			h.t.Logf("fake CNI calls:\n%s", b)
		}
	})
	return k
}

func sweepNetNS(t *testing.T, prefix string) {
	for _, n := range netnsWithPrefix(prefix) {
		if err := deleteNetNS(context.Background(), n); err != nil {
			t.Errorf("sweep: %v", err)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (h *harness) createPod(name string, ports ...corev1.ContainerPort) *corev1.Pod {
	h.t.Helper()
	return h.createPodOn(testNode, name, ports...)
}

func (h *harness) createPodOn(node, name string, ports ...corev1.ContainerPort) *corev1.Pod {
	h.t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{
			{Name: "app", Image: "lab/agnhost", Ports: ports}}}}
	p, err := h.kube.CoreV1().Pods("default").Create(context.Background(), pod, metav1.CreateOptions{})
	must(h.t, err)
	return p
}

// waitPod polls the pod until cond holds (30 s at most).
func (h *harness) waitPod(name, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	h.t.Helper()
	var last *corev1.Pod
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true,
		func(ctx context.Context) (bool, error) {
			p, err := h.kube.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			last = p
			return cond(p), nil
		})
	if err != nil {
		h.t.Fatalf("pod %s: waiting for %s: %v; last status: %s", name, what, err, statusJSON(last))
	}
	return last
}

func (h *harness) waitRunning(name string) *corev1.Pod {
	h.t.Helper()
	return h.waitPod(name, "Running and Ready", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && podCondition(p, corev1.PodReady) == corev1.ConditionTrue
	})
}

func podCondition(p *corev1.Pod, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

func statusJSON(p *corev1.Pod) string {
	if p == nil {
		return "<none>"
	}
	b, _ := json.Marshal(p.Status)
	return string(b)
}

// calls returns the fake plugin's call log lines starting with cmd.
func (h *harness) calls(cmd string) []string {
	b, _ := os.ReadFile(filepath.Join(h.stateDir, "calls.log"))
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, cmd+" ") {
			out = append(out, l)
		}
	}
	return out
}

func key(name string) types.NamespacedName {
	return types.NamespacedName{Namespace: "default", Name: name}
}

func tcp(port int32) corev1.ContainerPort {
	return corev1.ContainerPort{ContainerPort: port, Protocol: corev1.ProtocolTCP}
}
func udp(port int32) corev1.ContainerPort {
	return corev1.ContainerPort{ContainerPort: port, Protocol: corev1.ProtocolUDP}
}
func sctp(port int32) corev1.ContainerPort {
	return corev1.ContainerPort{ContainerPort: port, Protocol: corev1.ProtocolSCTP}
}

func addrPort(ip string, port int) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))
}
