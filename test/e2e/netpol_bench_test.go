package e2e

// BenchmarkNetworkPolicyLab measures NetworkPolicy on a 3-node lab with real
// traffic (SPEC §10; numbers in docs/benchmarks.md, "NetworkPolicy"):
//
//   - realization: with 1,000 extra Pod objects known to every agent, a policy
//     created → enforced on all three nodes, and deleted → isolation back on
//     all three, over npBenchCycles cycles, measured by probes;
//   - datapath: pod-to-pod TCP throughput across nodes (iperf3 in the pod
//     network namespaces) with only the base pipeline, then with 1,000
//     policies installed.
//
// It is a benchmark, so `go test` (make test) never runs it; `make bench`
// does (-bench .). The work runs once per process; later b.N rounds report
// the same numbers.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/kubelet"
)

const (
	npBenchCycles   = 30
	npGhostPods     = 1000
	npGhostNS       = 10
	npBenchPolicies = 1000
	iperfPort       = 5201
	iperfSeconds    = 3
	iperfRuns       = 5
)

// npGhostNet holds the ghost pods' addresses: inside the cluster CIDR, far
// from the node subnets the controller hands out first.
var npGhostNet = netip.MustParsePrefix("10.131.128.0/22")

type npBenchResult struct {
	create, delete     []time.Duration
	base, withPolicies []float64 // bits/s
	flows              map[string][2]int
	load               string
}

var (
	npBenchOnce sync.Once
	npBenchRes  *npBenchResult
	npBenchErr  error
)

func BenchmarkNetworkPolicyLab(b *testing.B) {
	if testing.Short() {
		b.Skip("starts a multi-node lab")
	}
	if os.Geteuid() != 0 {
		b.Skip("needs root (network namespaces, Open vSwitch)")
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 is not installed (make tools)")
	}
	npBenchOnce.Do(func() { npBenchRes, npBenchErr = runNPBench(b) })
	if npBenchErr != nil {
		b.Fatal(npBenchErr)
	}
	r := npBenchRes
	b.ReportMetric(ms(percentile(r.create, 50)), "create-p50-ms")
	b.ReportMetric(ms(percentile(r.create, 99)), "create-p99-ms")
	b.ReportMetric(ms(percentile(r.delete, 50)), "delete-p50-ms")
	b.ReportMetric(ms(percentile(r.delete, 99)), "delete-p99-ms")
	base, pol := median(r.base), median(r.withPolicies)
	b.ReportMetric(base/1e6, "base-Mbit/s")
	b.ReportMetric(pol/1e6, "1000pol-Mbit/s")
	b.ReportMetric(100*pol/base, "throughput-%")
	b.ReportMetric(0, "ns/op")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100 // nearest rank
	return s[max(i-1, 0)]
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	return s[len(s)/2]
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func runNPBench(b *testing.B) (*npBenchResult, error) {
	ctx := context.Background()
	res := &npBenchResult{flows: map[string][2]int{}, load: loadavg()}
	prefix := "e2enpbench"
	l, err := lab.Up(ctx, lab.Config{Nodes: 3, PluginName: networkv1.NetworkPolicyPluginName,
		StateDir: filepath.Join("/run", prefix), Prefix: prefix, CNIPlugin: filepath.Join(binDir, "sdn-cni"), NodeAgent: filepath.Join(binDir, "sdn-node")})
	if err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	defer l.Close()
	c, err := newNPCluster(ctx, l, nil) // no Services: the benchmark probes pod IPs
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := createGhostPods(ctx, l); err != nil {
		return nil, err
	}
	b.Logf("%d ghost pods (unscheduled, status.podIP in %s) in %v", npGhostPods, npGhostNet, time.Since(start).Round(time.Millisecond))

	// Realization. x is isolated by deny-ingress; the measured policy lets
	// z/a and every ghost pod (namespaces labelled bench=peer, pods pod in
	// (a, ghost)) reach x on TCP 80: x/a, x/b, x/c are on node1, 2, 3.
	if err := c.apply(ctx, c.benchState(denyIngress("x"))); err != nil {
		return nil, err
	}
	targets := []types.NamespacedName{key("x", "a"), key("x", "b"), key("x", "c")}
	from := key("z", "a")
	if _, ok := c.waitOutcome(ctx, from, targets, kubelet.TimedOut, time.Time{}, 30*time.Second); !ok {
		return nil, fmt.Errorf("deny-ingress in x not realized within 30 s")
	}
	allow := pol("x", "bench-allow", sel(), ingress(ports(port(tcp, 80)),
		nsPodPeer(sel("bench", "peer"), expr("pod", metav1.LabelSelectorOpIn, "a", "ghost"))))
	polAPI := l.Kube.NetworkingV1().NetworkPolicies("x")
	for i := range npBenchCycles {
		t0 := time.Now()
		if _, err := polAPI.Create(ctx, allow, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		d, ok := c.waitOutcome(ctx, from, targets, kubelet.Connected, t0, 10*time.Second)
		if !ok {
			return nil, fmt.Errorf("cycle %d: policy not enforced on every node within 10 s", i)
		}
		res.create = append(res.create, d)
		t1 := time.Now()
		if err := polAPI.Delete(ctx, allow.Name, metav1.DeleteOptions{}); err != nil {
			return nil, err
		}
		d, ok = c.waitOutcome(ctx, from, targets, kubelet.TimedOut, t1, 10*time.Second)
		if !ok {
			return nil, fmt.Errorf("cycle %d: deletion not enforced on every node within 10 s", i)
		}
		res.delete = append(res.delete, d)
		time.Sleep(100 * time.Millisecond)
	}
	b.Logf("realization over %d cycles: create p50 %v p99 %v; delete p50 %v p99 %v", npBenchCycles,
		percentile(res.create, 50), percentile(res.create, 99), percentile(res.delete, 50), percentile(res.delete, 99))

	// Throughput z/b (node1) → x/b (node2): base pipeline, then 1,000 policies.
	client, server := key("z", "b"), key("x", "b")
	if err := c.apply(ctx, c.benchState()); err != nil {
		return nil, err
	}
	if _, ok := c.waitOutcome(ctx, from, targets, kubelet.Connected, time.Time{}, 30*time.Second); !ok {
		return nil, fmt.Errorf("policies not removed within 30 s")
	}
	res.flows["base"] = [2]int{agentFlows(ctx, l.Node("node1")), agentFlows(ctx, l.Node("node2"))}
	for range iperfRuns {
		bps, err := c.iperf(ctx, client, server)
		if err != nil {
			return nil, err
		}
		res.base = append(res.base, bps)
	}
	many := benchPolicies()
	start = time.Now()
	if err := c.apply(ctx, c.benchState(many...)); err != nil {
		return nil, err
	}
	if err := waitFlowsSettled(ctx, l, 2*time.Minute); err != nil {
		return nil, err
	}
	// The iperf port is allowed (nothing listens yet: Refused), port 80 not.
	if out, _ := l.Probe(ctx, client, c.ips[server], iperfPort, tcp, time.Second); out != kubelet.Refused {
		return nil, fmt.Errorf("with %d policies, %s → %s:%d is %v, want Refused (allowed, no server)", len(many), client, server, iperfPort, out)
	}
	if out, _ := l.Probe(ctx, client, c.ips[server], 80, tcp, time.Second); out != kubelet.TimedOut {
		return nil, fmt.Errorf("with %d policies, %s → %s:80 is %v, want TimedOut", len(many), client, server, out)
	}
	b.Logf("%d policies realized in %v", len(many), time.Since(start).Round(time.Millisecond))
	res.flows["policies"] = [2]int{agentFlows(ctx, l.Node("node1")), agentFlows(ctx, l.Node("node2"))}
	for range iperfRuns {
		bps, err := c.iperf(ctx, client, server)
		if err != nil {
			return nil, err
		}
		res.withPolicies = append(res.withPolicies, bps)
	}
	b.Logf("throughput %s → %s: base %v Mbit/s (flows node1/node2 %v), with %d policies %v Mbit/s (flows %v); load1 %s",
		client, server, mbits(res.base), res.flows["base"], len(many), mbits(res.withPolicies), res.flows["policies"], res.load)
	return res, nil
}

func mbits(xs []float64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = int(x / 1e6)
	}
	return out
}

// benchState is the base state with bench labels (namespaces z and the
// ghost ones are bench=peer) and the given policies.
func (c *npCluster) benchState(ps ...*networkingv1.NetworkPolicy) *npState {
	s := c.base.clone()
	s.NSLabels["z"] = c.nsLabels("z", map[string]string{"ns": "z", "bench": "peer"})
	s.Policies = ps
	return s
}

// createGhostPods creates npGhostPods Pod objects in npGhostNS namespaces
// labelled bench=peer: not bound to any node (the lab has no scheduler, so
// they stay Pending and no kubelet runs them), each with a status.podIP
// written through the status subresource, so every agent's informer and
// policy compiler sees 1,000 more pods with addresses.
func createGhostPods(ctx context.Context, l *lab.Lab) error {
	var names []string
	for i := range npGhostNS {
		names = append(names, fmt.Sprintf("ghost-%d", i))
	}
	if err := l.EnsureNamespaces(ctx, map[string]string{"bench": "peer"}, names...); err != nil {
		return err
	}
	ip := npGhostNet.Addr()
	work := make(chan int)
	errs := make(chan error, npGhostPods)
	var wg sync.WaitGroup
	ips := make([]netip.Addr, npGhostPods)
	for i := range ips {
		ip = ip.Next()
		ips[i] = ip
	}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				ns, name := names[i%npGhostNS], fmt.Sprintf("ghost-%d", i)
				if err := l.CreatePod(ctx, lab.PodSpec{Namespace: ns, Name: name,
					Labels: map[string]string{"pod": "ghost", "ghost": fmt.Sprint(i)}}); err != nil {
					errs <- err
					continue
				}
				p, err := l.Kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					errs <- err
					continue
				}
				p.Status.PodIP = ips[i].String()
				p.Status.PodIPs = []corev1.PodIP{{IP: ips[i].String()}}
				if _, err := l.Kube.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
					errs <- fmt.Errorf("ghost pod %s/%s status: %w", ns, name, err)
				}
			}
		}()
	}
	for i := range npGhostPods {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	return nil
}

// benchPolicies is npBenchPolicies policies spread over x, y and z, half
// ingress and half egress, each selecting one pod label and peers by
// namespace and pod label on its own port (ports 10000…), so each renders
// real conjunction flows on every node; plus the two that let the iperf3
// stream through (x ingress and z egress on iperfPort) — the policies make
// x and z isolated in both directions they control.
func benchPolicies() []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	for i := range npBenchPolicies - 2 {
		ns := npNamespaces[i%3]
		target := sel("pod", npPodNames[(i/3)%3])
		peer := nsPodPeer(sel("ns", npNamespaces[(i/9)%3]), sel("pod", npPodNames[(i/27)%3]))
		p := port(tcp, int32(10000+i))
		if i%2 == 0 {
			out = append(out, pol(ns, fmt.Sprintf("bench-in-%d", i), target, typesOf(ingressT), ingress(ports(p), peer)))
		} else {
			out = append(out, pol(ns, fmt.Sprintf("bench-out-%d", i), target, typesOf(egressT), egress(ports(p), peer)))
		}
	}
	return append(out,
		pol("x", "iperf-in", sel(), typesOf(ingressT), ingress(ports(port(tcp, iperfPort)))),
		pol("z", "iperf-out", sel(), typesOf(egressT), egress(ports(port(tcp, iperfPort)))))
}

// waitOutcome probes from `from` to each target (TCP 80) until each has
// shown want and returns the latest per-target time since t0 (zero t0: just
// wait). Per target, a new probe is launched every 20 ms; realization is the
// end of the first Connected probe, or the launch of the first TimedOut one
// after which no later-launched probe got through.
func (c *npCluster) waitOutcome(ctx context.Context, from types.NamespacedName, targets []types.NamespacedName, want kubelet.Outcome, t0 time.Time, within time.Duration) (time.Duration, bool) {
	pairs := make([]probePair, len(targets))
	for i, to := range targets {
		pairs[i] = probePair{from: from, to: c.ips[to]}
	}
	return slowestOutcome(ctx, c.l, pairs, want, t0, within)
}

// agentFlows is the node agent's flow count (-1 when it cannot be read).
func agentFlows(ctx context.Context, n *lab.Node) int {
	v, err := n.AgentFlows(ctx)
	if err != nil {
		return -1
	}
	return v
}

// waitFlowsSettled waits until no agent's flow count changed for 3 s.
func waitFlowsSettled(ctx context.Context, l *lab.Lab, within time.Duration) error {
	last, since := map[string]int{}, time.Now()
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, within, true, func(ctx context.Context) (bool, error) {
		changed := false
		for _, n := range l.Nodes() {
			if v := agentFlows(ctx, n); v != last[n.Name] {
				last[n.Name], changed = v, true
			}
		}
		if changed {
			since = time.Now()
		}
		return time.Since(since) > 3*time.Second, nil
	})
}

// iperf runs an iperf3 server in the server pod's netns and a client in the
// client pod's netns for iperfSeconds and returns the received bits/s.
func (c *npCluster) iperf(ctx context.Context, client, server types.NamespacedName) (float64, error) {
	sNS, cNS := c.podNetNS(server), c.podNetNS(client)
	if sNS == "" || cNS == "" {
		return 0, fmt.Errorf("iperf: pod netns of %s or %s not found", server, client)
	}
	srv := exec.CommandContext(ctx, "nsenter", "--net="+sNS, "iperf3", "-s", "-1", "-p", fmt.Sprint(iperfPort))
	if err := srv.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	var out []byte
	var err error
	for try := 0; try < 20; try++ { // until the server listens
		time.Sleep(100 * time.Millisecond)
		out, err = exec.CommandContext(ctx, "nsenter", "--net="+cNS, "iperf3", "-c", c.ips[server].String(),
			"-p", fmt.Sprint(iperfPort), "-t", fmt.Sprint(iperfSeconds), "-J").Output()
		if err == nil {
			break
		}
	}
	if err != nil {
		return 0, fmt.Errorf("iperf3 client: %v: %s", err, out)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("iperf3 output: %v", err)
	}
	return r.End.SumReceived.BitsPerSecond, nil
}

func (c *npCluster) podNetNS(k types.NamespacedName) string {
	for _, n := range c.l.Nodes() {
		if p := n.PodNetNS(k); p != "" {
			return p
		}
	}
	return ""
}
