package e2e

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/kubelet"
	"github.com/ovs-sdn/ovs-sdn/pkg/sdnctl"
)

// fwLab is a lab with egress-firewall test pods: fw1/a on node1, fw1/b on
// node2, fw1/s on node3 (serving TCP 8080), fw2/c on node1.
type fwLab struct {
	l   *lab.Lab
	ips map[types.NamespacedName]netip.Addr
}

var (
	fwA = key("fw1", "a")
	fwB = key("fw1", "b")
	fwS = key("fw1", "s")
	fwC = key("fw2", "c")
)

func newFWLab(t *testing.T, l *lab.Lab) *fwLab {
	t.Helper()
	ips, err := createFWPods(context.Background(), l, map[types.NamespacedName]string{fwA: "node1", fwB: "node2", fwS: "node3", fwC: "node1"})
	if err != nil {
		t.Fatal(err)
	}
	return &fwLab{l: l, ips: ips}
}

// createFWPods creates the namespaces and the pods (key → node), serving
// TCP, UDP and SCTP, and returns their IPs once they run.
func createFWPods(ctx context.Context, l *lab.Lab, place map[types.NamespacedName]string) (map[types.NamespacedName]netip.Addr, error) {
	nss := map[string]bool{}
	var keys []types.NamespacedName
	for k := range place {
		nss[k.Namespace] = true
		keys = append(keys, k)
	}
	for ns := range nss {
		if err := l.EnsureNamespaces(ctx, nil, ns); err != nil {
			return nil, err
		}
		if _, err := l.WaitNetNamespaces(ctx, ns); err != nil {
			return nil, err
		}
	}
	for k, node := range place {
		if err := l.CreatePod(ctx, lab.PodSpec{Namespace: k.Namespace, Name: k.Name, Node: node, Ports: servePorts,
			Labels: map[string]string{"fw-pod": k.Name}}); err != nil {
			return nil, err
		}
	}
	return l.WaitPodsRunning(ctx, 2*time.Minute, keys...)
}

// ext is 203.0.113.<n>, an address of the external host.
func ext(n byte) netip.Addr { return netip.AddrFrom4([4]byte{203, 0, 113, n}) }

func fwRule(typ networkv1.EgressNetworkPolicyRuleType, cidr, dns string) networkv1.EgressNetworkPolicyRule {
	return networkv1.EgressNetworkPolicyRule{Type: typ, To: networkv1.EgressNetworkPolicyPeer{CIDRSelector: cidr, DNSName: dns}}
}

func allowTo(cidr string) networkv1.EgressNetworkPolicyRule {
	return fwRule(networkv1.EgressNetworkPolicyRuleAllow, cidr, "")
}

func denyTo(cidr string) networkv1.EgressNetworkPolicyRule {
	return fwRule(networkv1.EgressNetworkPolicyRuleDeny, cidr, "")
}

func allowName(name string) networkv1.EgressNetworkPolicyRule {
	return fwRule(networkv1.EgressNetworkPolicyRuleAllow, "", name)
}

// setPolicy creates or replaces EgressNetworkPolicy ns/name.
func setPolicy(t *testing.T, l *lab.Lab, ns, name string, rules ...networkv1.EgressNetworkPolicyRule) {
	t.Helper()
	ctx := context.Background()
	api := l.Network.NetworkV1().EgressNetworkPolicies(ns)
	cur, err := api.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		enp := &networkv1.EgressNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: networkv1.EgressNetworkPolicySpec{Egress: rules}}
		_, err = api.Create(ctx, enp, metav1.CreateOptions{})
	case err == nil:
		cur.Spec.Egress = rules
		_, err = api.Update(ctx, cur, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("EgressNetworkPolicy %s/%s: %v", ns, name, err)
	}
}

func deletePolicy(t *testing.T, l *lab.Lab, ns, name string) {
	t.Helper()
	err := l.Network.NetworkV1().EgressNetworkPolicies(ns).Delete(context.Background(), name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}

// fwCell is one probe and the outcome it should have.
type fwCell struct {
	from  types.NamespacedName
	to    netip.Addr
	port  uint16
	proto corev1.Protocol
	want  kubelet.Outcome
}

func (c fwCell) String() string {
	return fmt.Sprintf("%s → %s:%d/%s", c.from, c.to, c.port, c.proto)
}

func tcpTo(from types.NamespacedName, to netip.Addr, want kubelet.Outcome) fwCell {
	return fwCell{from: from, to: to, port: 80, proto: corev1.ProtocolTCP, want: want}
}

// fwProbeTimeout bounds one probe; a drop is a timeout.
const fwProbeTimeout = 700 * time.Millisecond

// probeAll probes every cell once, in parallel, and returns the outcomes.
func probeAll(l *lab.Lab, cells []fwCell, timeout time.Duration) []kubelet.Outcome {
	out := make([]kubelet.Outcome, len(cells))
	var wg sync.WaitGroup
	for i, c := range cells {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, err := l.Probe(context.Background(), c.from, c.to, c.port, c.proto, timeout)
			if err != nil {
				o = 0
			}
			out[i] = o
		}()
	}
	wg.Wait()
	return out
}

// expectCells probes until every cell has its outcome (realization takes a
// moment) or within passes; then it fails the test for each cell that
// differs. It returns how long it took.
func expectCells(t *testing.T, l *lab.Lab, what string, within time.Duration, cells ...fwCell) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := probeAll(l, cells, fwProbeTimeout)
		var bad []string
		for i, c := range cells {
			if got[i] != c.want {
				bad = append(bad, fmt.Sprintf("%s: %v, want %v", c, got[i], c.want))
			}
		}
		if len(bad) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Errorf("%s after %v:\n  %s", what, within, strings.Join(bad, "\n  "))
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// policyEvents returns "Type Reason: message" of the Events on an
// EgressNetworkPolicy.
func policyEvents(t *testing.T, l *lab.Lab, ns, name string) []string {
	t.Helper()
	list, err := l.Kube.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{
		FieldSelector: fields.AndSelectors(fields.OneTermEqualSelector("involvedObject.kind", "EgressNetworkPolicy"),
			fields.OneTermEqualSelector("involvedObject.name", name)).String()})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		out = append(out, e.Type+" "+e.Reason+": "+e.Message)
	}
	return out
}

// waitPolicyEvent waits until the policy has exactly one Event of reason.
func waitPolicyEvent(t *testing.T, l *lab.Lab, ns, name, reason string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ev := policyEvents(t, l, ns, name)
		n := 0
		for _, e := range ev {
			if strings.HasPrefix(e, "Warning "+reason+": ") {
				n++
			}
		}
		if n == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("EgressNetworkPolicy %s/%s: %d Warning %s Events, want 1: %q", ns, name, n, reason, ev)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// sdnLab runs the sdn-lab binary against l and returns its output.
func sdnLab(t *testing.T, l *lab.Lab, args ...string) string {
	t.Helper()
	args = append([]string{args[0], "--state-dir", l.Config().StateDir}, args[1:]...)
	out, err := exec.Command(filepath.Join(binDir, "sdn-lab"), args...).CombinedOutput()
	t.Logf("$ sdn-lab %s\n%s", strings.Join(args, " "), out)
	if err != nil {
		t.Fatalf("sdn-lab %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// flowMonitor is `ovs-ofctl monitor <br0> watch:!initial` on a node: one
// line per flow added, modified or deleted by anyone.
type flowMonitor struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	out strings.Builder
}

func startFlowMonitor(t *testing.T, n *lab.Node) *flowMonitor {
	t.Helper()
	m := &flowMonitor{}
	m.cmd = exec.Command("ovs-ofctl", "-O", "OpenFlow13", "monitor", n.OfctlTarget(), "watch:!initial")
	m.cmd.Stdout, m.cmd.Stderr = m, m
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.cmd.Process.Kill(); _ = m.cmd.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(m.text(), "reply") {
		if time.Now().After(deadline) {
			t.Fatalf("flow monitor on %s not running: %s", n.Name, m.text())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return m
}

func (m *flowMonitor) Write(b []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.out.Write(b)
}

func (m *flowMonitor) text() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.out.String()
}

// events returns the flow update lines seen so far.
func (m *flowMonitor) events() []string {
	var ev []string
	for _, l := range strings.Split(m.text(), "\n") {
		if strings.Contains(l, "event=") {
			ev = append(ev, strings.TrimSpace(l))
		}
	}
	return ev
}

// watcher launches a new probe of every cell each period until stopped
// (probes overlap: a short window between two launches is still probed) and
// records every outcome that is not the cell's want.
type watcher struct {
	stop     chan struct{}
	done     chan struct{}
	inflight sync.WaitGroup
	mu       sync.Mutex
	bad      []string
	n        int
}

func watchCells(l *lab.Lab, period time.Duration, cells ...fwCell) *watcher {
	w := &watcher{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			for _, c := range cells {
				w.inflight.Add(1)
				go func() {
					defer w.inflight.Done()
					launch := time.Now()
					o, err := l.Probe(context.Background(), c.from, c.to, c.port, c.proto, 400*time.Millisecond)
					w.mu.Lock()
					defer w.mu.Unlock()
					w.n++
					if err != nil || o != c.want {
						w.bad = append(w.bad, fmt.Sprintf("launched %s %s: %v (%v), want %v", launch.Format("15:04:05.000"), c, o, err, c.want))
					}
				}()
			}
			select {
			case <-w.stop:
				return
			case <-time.After(period):
			}
		}
	}()
	return w
}

// finish stops the watcher and returns the probes made and the violations.
func (w *watcher) finish() (int, []string) {
	close(w.stop)
	<-w.done
	w.inflight.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n, w.bad
}

// changePodNetwork is `sdnctl pod-network <verb>` (join, isolate, global).
func changePodNetwork(ctx context.Context, l *lab.Lab, verb, to string, projects ...string) error {
	clients := &sdnctl.Clients{Kube: l.Kube, Network: l.Network}
	return sdnctl.ChangePodNetwork(ctx, clients, verb, to, projects, io.Discard)
}
