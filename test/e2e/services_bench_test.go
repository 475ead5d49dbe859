package e2e

// BenchmarkServicesLab measures Services (proxy mode ovs) on a 3-node lab
// with real traffic (SPEC §10; numbers in docs/benchmarks.md, "Services"):
//
//   - realization: one EndpointSlice loses and regains one endpoint,
//     svcChangeCycles times each; the time from the API write until every
//     node's br0 holds the change (the endpoint's DNAT flow deleted or
//     added, seen by polling ServiceLB on every node every 10 ms — the flow
//     and the group change in the same bundle), next to the agents' own
//     ovs_sdn_realization_seconds{feature="services"} over the same window;
//     after each change, probes through the ClusterIP check that forwarding
//     followed (no connection to a removed endpoint, the added one answers);
//   - datapath: the same pod pair, same node and across nodes, through the
//     ClusterIP and to the pod IP directly, interleaved: iperf3 throughput
//     and new TCP connections per second (tcpconnrate, TCP_CRR style, one
//     and eight connections in flight), both ends in the pods' network
//     namespaces (nsenter --net), with the userspace datapath's counters
//     (upcalls, recirculations) per run as evidence.
//
// It is a benchmark, so `go test` (make test) never runs it; `make bench`
// does (-bench .). The work runs once per process; later b.N rounds report
// the same numbers.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/kubelet"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

const (
	svcBenchNS      = "svcbench"
	svcChangeCycles = 25 // each: one endpoint removed, then added back
	svcChurnPort    = 80 // the kubelet stand-in answers with the pod name
	svcIperfPort    = 5201
	svcCRRPort      = 9000
	svcIperfRuns    = 5
	svcIperfSeconds = 3
	svcCRRRuns      = 5
	svcCRRDuration  = 2 * time.Second
)

// svcCRRConcurrency are the connections in flight of the rate runs.
var svcCRRConcurrency = []int{1, 8}

type svcBenchResult struct {
	load    string
	removed []time.Duration // API write → the last node's br0 without the endpoint
	added   []time.Duration // API write → the last node's br0 with it
	perNode map[string][]time.Duration
	agent   histogram // agents' realization histogram, all nodes, over the cycles
	// probe checks after each change that failed (a connection to a
	// removed endpoint, an added endpoint never answering).
	stale, missing int
	// throughput and rate runs: pair ("same-node", "cross-node") → mode
	// ("direct", "clusterip") → per-run values.
	tput map[string]map[string][]float64
	crr  map[string]map[string][]crrRun // pair/c<n> → mode → runs
}

type crrRun struct {
	PerSecond float64 `json:"per_second"`
	Errors    int     `json:"errors"`
	P50us     float64 `json:"p50_us"`
	P99us     float64 `json:"p99_us"`
	// dp: the datapath counters of the client's and the server's node
	// over the run (ovs-appctl dpif-netdev/pmd-stats-show, summed).
	dp dpStats
}

var (
	svcBenchOnce sync.Once
	svcBenchRes  *svcBenchResult
	svcBenchErr  error
)

func BenchmarkServicesLab(b *testing.B) {
	if testing.Short() {
		b.Skip("starts a multi-node lab")
	}
	if os.Geteuid() != 0 {
		b.Skip("needs root (network namespaces, Open vSwitch)")
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 is not installed (make tools)")
	}
	svcBenchOnce.Do(func() { svcBenchRes, svcBenchErr = runSvcBench(b) })
	if svcBenchErr != nil {
		b.Fatal(svcBenchErr)
	}
	r := svcBenchRes
	all := slices.Concat(r.removed, r.added)
	b.ReportMetric(ms(percentile(all, 50)), "change-p50-ms")
	b.ReportMetric(ms(percentile(all, 99)), "change-p99-ms")
	b.ReportMetric(r.agent.mean()*1000, "agent-mean-ms")
	b.ReportMetric(r.agent.quantileBound(0.99)*1000, "agent-p99-le-ms")
	b.ReportMetric(float64(r.stale+r.missing), "probe-failures")
	for _, pair := range []string{"same-node", "cross-node"} {
		b.ReportMetric(100*median(r.tput[pair]["clusterip"])/median(r.tput[pair]["direct"]), pair+"-tput-%")
		for _, c := range svcCRRConcurrency {
			k := fmt.Sprintf("%s/c%d", pair, c)
			b.ReportMetric(100*crrMedian(r.crr[k]["clusterip"])/crrMedian(r.crr[k]["direct"]), fmt.Sprintf("%s-crr-c%d-%%", pair, c))
		}
	}
	b.ReportMetric(0, "ns/op")
}

// svcBench is the lab and the benchmark's pods and Services.
type svcBench struct {
	b   *testing.B
	l   *lab.Lab
	ips map[types.NamespacedName]netip.Addr
	// srv serves iperf3 and tcpconnrate; cl1 (its node) and cl2 are its
	// clients; ep1..ep3 (one per node) are the endpoints that come and go.
	srv, cl1, cl2, cl3 types.NamespacedName
	eps                []types.NamespacedName
	nodeOf             map[types.NamespacedName]string
	churn, bench       *corev1.Service
	slice              *discoveryv1.EndpointSlice // churn's, as last written
}

func runSvcBench(b *testing.B) (*svcBenchResult, error) {
	ctx := context.Background()
	res := &svcBenchResult{load: loadavg(), perNode: map[string][]time.Duration{}}
	prefix := "e2esvbench"
	l, err := lab.Up(ctx, lab.Config{Nodes: 3, PluginName: networkv1.NetworkPolicyPluginName,
		StateDir: filepath.Join("/run", prefix), Prefix: prefix, CNIPlugin: filepath.Join(binDir, "sdn-cni"), NodeAgent: filepath.Join(binDir, "sdn-node")})
	if err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	defer l.Close()
	b.Logf("load average at start %s", res.load)
	s := &svcBench{b: b, l: l, nodeOf: map[types.NamespacedName]string{}}
	if err := s.setup(ctx); err != nil {
		return nil, err
	}
	// A failed realization phase still lets the datapath phase run (and
	// fails the benchmark afterwards): the two are independent.
	realErr := s.realization(ctx, res)
	if realErr != nil {
		b.Logf("realization: %v", realErr)
	}
	all := slices.Concat(res.removed, res.added)
	b.Logf("realization over %d removals and %d additions: all nodes p50 %v p99 %v (removed p99 %v, added p99 %v); agents' histogram %s; probe failures: %d stale, %d missing",
		len(res.removed), len(res.added), percentile(all, 50), percentile(all, 99),
		percentile(res.removed, 99), percentile(res.added, 99), res.agent, res.stale, res.missing)
	for _, n := range l.Nodes() {
		d := res.perNode[n.Name]
		b.Logf("  %s: p50 %v p99 %v", n.Name, percentile(d, 50), percentile(d, 99))
	}
	if err := s.datapath(ctx, res); err != nil {
		return nil, errors.Join(realErr, err)
	}
	if realErr != nil {
		return nil, realErr
	}
	return res, nil
}

// setup creates the pods and the two Services: churn (ep1..ep3 on port 80)
// and bench (srv on the iperf3 and tcpconnrate ports). Both have no
// selector; the benchmark writes their EndpointSlices.
func (s *svcBench) setup(ctx context.Context) error {
	if err := s.l.EnsureNamespaces(ctx, nil, svcBenchNS); err != nil {
		return err
	}
	k := func(name string) types.NamespacedName { return key(svcBenchNS, name) }
	s.srv, s.cl1, s.cl2, s.cl3 = k("srv"), k("cl1"), k("cl2"), k("cl3")
	s.eps = []types.NamespacedName{k("ep1"), k("ep2"), k("ep3")}
	specs := []lab.PodSpec{{Name: "srv", Node: "node1"}, {Name: "cl1", Node: "node1"}, {Name: "cl2", Node: "node2"}, {Name: "cl3", Node: "node3"}}
	for i := range s.eps {
		specs = append(specs, lab.PodSpec{Name: s.eps[i].Name, Node: fmt.Sprintf("node%d", i+1),
			Ports: []corev1.ContainerPort{{ContainerPort: svcChurnPort, Protocol: corev1.ProtocolTCP}}})
	}
	var keys []types.NamespacedName
	for _, p := range specs {
		p.Namespace = svcBenchNS
		if err := s.l.CreatePod(ctx, p); err != nil {
			return err
		}
		keys = append(keys, k(p.Name))
		s.nodeOf[k(p.Name)] = p.Node
	}
	ips, err := s.l.WaitPodsRunning(ctx, 2*time.Minute, keys...)
	if err != nil {
		return err
	}
	s.ips = ips
	svcPort := func(name string, port int32) corev1.ServicePort {
		return corev1.ServicePort{Name: name, Protocol: corev1.ProtocolTCP, Port: port, TargetPort: intstr.FromInt32(port)}
	}
	if s.churn, err = s.createService(ctx, "churn", svcPort("http", svcChurnPort)); err != nil {
		return err
	}
	if s.bench, err = s.createService(ctx, "bench", svcPort("iperf", svcIperfPort), svcPort("crr", svcCRRPort)); err != nil {
		return err
	}
	if _, err := s.writeSlice(ctx, s.bench, nil, s.srv); err != nil {
		return err
	}
	s.slice, err = s.writeSlice(ctx, s.churn, nil, s.eps...)
	return err
}

func (s *svcBench) createService(ctx context.Context, name string, ports ...corev1.ServicePort) (*corev1.Service, error) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: svcBenchNS, Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: ports}}
	out, err := s.l.Kube.CoreV1().Services(svcBenchNS).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating Service %s: %w", name, err)
	}
	return out, nil
}

// writeSlice writes the one EndpointSlice of svc with the given pods as
// ready endpoints on all of svc's ports: created when cur is nil, else an
// update of cur.
func (s *svcBench) writeSlice(ctx context.Context, svc *corev1.Service, cur *discoveryv1.EndpointSlice, pods ...types.NamespacedName) (*discoveryv1.EndpointSlice, error) {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name + "-bench",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: "e2e-bench"}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, p := range svc.Spec.Ports {
		es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: ptrTo(p.Name), Protocol: ptrTo(p.Protocol), Port: ptrTo(p.TargetPort.IntVal)})
	}
	for _, p := range pods {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{s.ips[p].String()},
			NodeName: ptrTo(s.nodeOf[p]), Conditions: discoveryv1.EndpointConditions{Ready: ptrTo(true)}})
	}
	api := s.l.Kube.DiscoveryV1().EndpointSlices(svc.Namespace)
	if cur == nil {
		return api.Create(ctx, es, metav1.CreateOptions{})
	}
	es.ResourceVersion = cur.ResourceVersion
	return api.Update(ctx, es, metav1.UpdateOptions{})
}

func (s *svcBench) vip(svc *corev1.Service, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(svc.Spec.ClusterIP), port)
}

// realization runs the endpoint change cycles and reads the agents'
// histogram before and after.
func (s *svcBench) realization(ctx context.Context, res *svcBenchResult) error {
	// Every node has the three endpoints before the first change.
	if err := s.waitAllAnswer(ctx, s.eps); err != nil {
		return err
	}
	before, err := s.agentHistograms(ctx)
	if err != nil {
		return err
	}
	for i := range svcChangeCycles {
		victim := s.eps[i%len(s.eps)]
		var rest []types.NamespacedName
		for _, e := range s.eps {
			if e != victim {
				rest = append(rest, e)
			}
		}
		d, err := s.change(ctx, res, false, victim, rest)
		if err != nil {
			return fmt.Errorf("cycle %d, removing %s: %w", i, victim.Name, err)
		}
		res.removed = append(res.removed, d)
		res.stale += s.checkGone(ctx, victim)
		if d, err = s.change(ctx, res, true, victim, s.eps); err != nil {
			return fmt.Errorf("cycle %d, adding %s back: %w", i, victim.Name, err)
		}
		res.added = append(res.added, d)
		if s.waitAllAnswer(ctx, []types.NamespacedName{victim}) != nil {
			res.missing++
		}
	}
	after, err := s.agentHistograms(ctx)
	if err != nil {
		return err
	}
	res.agent = after.minus(before)
	return nil
}

// change writes churn's slice with pods and returns the time from just
// before the write until every node's br0 has (present) or no longer has
// the DNAT flow of ep. The nodes are polled with `ovs-ofctl dump-flows
// table=ServiceLB` every svcPollInterval, all three in parallel; a time is
// the start of the first dump that shows the change, so it is off by at most
// one interval plus one dump (about 10–20 ms). (An OpenFlow flow monitor
// would be exact, but `ovs-ofctl monitor` reported no update for the
// agents' bundles on the lab's OVS 3.1 in the first attempt.)
func (s *svcBench) change(ctx context.Context, res *svcBenchResult, present bool, ep types.NamespacedName, pods []types.NamespacedName) (time.Duration, error) {
	nat := "nat(dst=" + s.ips[ep].String() + ":"
	t0 := time.Now()
	es, err := s.writeSlice(ctx, s.churn, s.slice, pods...)
	if err != nil {
		return 0, err
	}
	s.slice = es
	nodes := s.l.Nodes()
	seen := make([]time.Duration, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen[i], errs[i] = pollServiceLB(n, t0, func(flows string) bool { return strings.Contains(flows, nat) == present })
			if errs[i] != nil {
				errs[i] = fmt.Errorf("%w\n%s", errs[i], s.diagnose(n.Name, s.ips[ep]))
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	for i, n := range nodes {
		res.perNode[n.Name] = append(res.perNode[n.Name], seen[i])
	}
	return slices.Max(seen), nil
}

const svcPollInterval = 10 * time.Millisecond

// pollServiceLB dumps n's ServiceLB table until done is true of it, and
// returns the time since t0 at which the dump that showed it started.
func pollServiceLB(n *lab.Node, t0 time.Time, done func(flows string) bool) (time.Duration, error) {
	deadline := t0.Add(10 * time.Second)
	for {
		at := time.Now()
		flows, err := n.Ofctl("dump-flows", "br0", fmt.Sprintf("table=%d", ovs.TableServiceLB.ID))
		if err == nil && done(flows) {
			return at.Sub(t0), nil
		}
		if at.After(deadline) {
			return 0, fmt.Errorf("node %s: the change did not reach br0 within 10 s (last dump error: %v)", n.Name, err)
		}
		time.Sleep(svcPollInterval)
	}
}

// diagnose describes a node whose br0 did not follow a change: the
// Service's DNAT flows there, the slice in the API, the agent's log.
func (s *svcBench) diagnose(node string, ep netip.Addr) string {
	n := s.l.Node(node)
	var b strings.Builder
	flows, err := n.Ofctl("dump-flows", "br0", fmt.Sprintf("table=%d", ovs.TableServiceLB.ID))
	fmt.Fprintf(&b, "%s ServiceLB flows naming %s (%v):\n", node, ep, err)
	for _, l := range strings.Split(flows, "\n") {
		if strings.Contains(l, ep.String()) {
			fmt.Fprintln(&b, "  "+strings.TrimSpace(l))
		}
	}
	if es, err := s.l.Kube.DiscoveryV1().EndpointSlices(svcBenchNS).Get(context.Background(), s.slice.Name, metav1.GetOptions{}); err == nil {
		for _, e := range es.Endpoints {
			fmt.Fprintf(&b, "slice %s rv %s endpoint %v\n", es.Name, es.ResourceVersion, e.Addresses)
		}
	}
	fmt.Fprintf(&b, "agent log %s ends:\n%s", n.AgentLog(), tailFile(n.AgentLog(), 4000))
	return b.String()
}

// checkGone makes 6 connections through churn's ClusterIP from a client on
// every node and returns how many reached ep.
func (s *svcBench) checkGone(ctx context.Context, ep types.NamespacedName) int {
	bad := 0
	for _, cl := range []types.NamespacedName{s.cl1, s.cl2, s.cl3} {
		for range 6 {
			r, err := s.l.Kubelets.Probe(ctx, cl, s.vip(s.churn, svcChurnPort), corev1.ProtocolTCP, time.Second)
			if err == nil && r.Outcome == kubelet.Connected && r.Reply == ep.Name {
				bad++
			}
		}
	}
	return bad
}

// waitAllAnswer waits (10 s at most) until every endpoint in eps has
// answered a connection through churn's ClusterIP from a client on every
// node.
func (s *svcBench) waitAllAnswer(ctx context.Context, eps []types.NamespacedName) error {
	for _, cl := range []types.NamespacedName{s.cl1, s.cl2, s.cl3} {
		seen := map[string]bool{}
		deadline := time.Now().Add(10 * time.Second)
		for len(seen) < len(eps) {
			if time.Now().After(deadline) {
				return fmt.Errorf("through the ClusterIP %s reached only %v of %v within 10 s", cl.Name, seen, eps)
			}
			r, err := s.l.Kubelets.Probe(ctx, cl, s.vip(s.churn, svcChurnPort), corev1.ProtocolTCP, time.Second)
			if err != nil || r.Outcome != kubelet.Connected {
				continue
			}
			for _, e := range eps {
				if r.Reply == e.Name {
					seen[e.Name] = true
				}
			}
		}
	}
	return nil
}
