package e2e

// BenchmarkEgressIPFailover measures egress IP failover on a 3-node
// networkpolicy lab with an external host (SPEC §4.7, issue 13; numbers in
// docs/benchmarks.md, "Egress IP failover"). egressCIDRs on node1 and
// node2, one namespace with one egress IP and a pod on every node. Over
// eipBenchTrials trials the underlay link of the node holding the IP is cut
// while the namespace's pods on the two other nodes send a datagram to the
// external host every eipBenchGap, each from a new socket:
//
//   - failover: from the cut until the later of the two pods has a
//     datagram answered with the egress IP as source (a datagram sent
//     after the cut: it can only have left through the survivor);
//   - wrong-src: packets of the stream that reached the external host
//     (its packet capture) with any other source, over all trials — must
//     be 0; TestEgressIPLab asserts it.
//
// After each trial the link is restored and the node waits to be reachable
// again, so the next trial cuts the other node. A benchmark, not a timed
// assertion: `make bench` runs it, `go test` never does. The work runs once
// per process; later b.N rounds report the same numbers.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
)

const (
	eipBenchTrials = 5
	eipBenchGap    = 20 * time.Millisecond
	eipBenchNS     = "e2e-eipbench"
)

type eipBenchResult struct {
	failover         []time.Duration
	wrong, datagrams int
	load             string
}

var (
	eipBenchOnce sync.Once
	eipBenchRes  *eipBenchResult
	eipBenchErr  error
)

func BenchmarkEgressIPFailover(b *testing.B) {
	if testing.Short() {
		b.Skip("starts a multi-node lab")
	}
	if os.Geteuid() != 0 {
		b.Skip("needs root (network namespaces, Open vSwitch)")
	}
	eipBenchOnce.Do(func() { eipBenchRes, eipBenchErr = runEIPBench(b) })
	if eipBenchErr != nil {
		b.Fatal(eipBenchErr)
	}
	r := eipBenchRes
	b.ReportMetric(ms(percentile(r.failover, 50)), "failover-p50-ms")
	b.ReportMetric(ms(percentile(r.failover, 99)), "failover-p99-ms")
	b.ReportMetric(float64(r.wrong), "wrong-src-pkts")
	b.ReportMetric(0, "ns/op")
	b.Logf("%d trials %v; %d datagrams captured, %d with a wrong source; load average at start %s",
		len(r.failover), r.failover, r.datagrams, r.wrong, r.load)
}

func runEIPBench(b *testing.B) (_ *eipBenchResult, err error) {
	ctx := context.Background()
	prefix := "e2eeipb"
	l, err := lab.Up(ctx, lab.Config{Nodes: 3, PluginName: networkv1.NetworkPolicyPluginName,
		StateDir: filepath.Join("/run", prefix), Prefix: prefix, CNIPlugin: filepath.Join(binDir, "sdn-cni"), NodeAgent: filepath.Join(binDir, "sdn-node")})
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := l.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	e, err := newEIPLab(l)
	if err != nil {
		return nil, err
	}
	pods, err := e.benchSetup(ctx)
	if err != nil {
		return nil, err
	}
	r := &eipBenchResult{load: loadavg()}
	for i := range eipBenchTrials {
		d, wrong, total, err := e.failoverTrial(ctx, pods)
		if err != nil {
			return nil, fmt.Errorf("trial %d: %w", i+1, err)
		}
		b.Logf("trial %d: failover %v, %d/%d datagrams with a wrong source", i+1, d.Round(time.Millisecond), wrong, total)
		r.failover = append(r.failover, d)
		r.wrong += wrong
		r.datagrams += total
	}
	return r, nil
}

// benchSetup makes node1 and node2 egress nodes, gives the namespace its
// IP and a pod per node, and waits until the IP is in use.
func (e *eipLab) benchSetup(ctx context.Context) (map[string]netlab.NetNS, error) {
	if err := e.l.EnsureNamespaces(ctx, nil, eipBenchNS); err != nil {
		return nil, err
	}
	pods := map[string]netlab.NetNS{}
	for _, n := range e.l.Nodes() {
		k := key(eipBenchNS, "p-"+n.Name)
		if err := e.l.CreatePod(ctx, lab.PodSpec{Namespace: eipBenchNS, Name: k.Name, Node: n.Name}); err != nil {
			return nil, err
		}
		if _, err := e.l.WaitPodsRunning(ctx, 3*time.Minute, k); err != nil {
			return nil, err
		}
		pns, err := e.podNetNS(n.Name, k)
		if err != nil {
			return nil, err
		}
		pods[n.Name] = pns
	}
	for _, n := range []string{"node1", "node2"} {
		if err := e.setEgressCIDRs(ctx, n, eipCIDR); err != nil {
			return nil, err
		}
	}
	if err := e.setNamespaceEgressIPs(ctx, eipBenchNS, eipAddr(1)); err != nil {
		return nil, err
	}
	return pods, e.waitSource(pods["node3"], eipAddr(1), 30*time.Second)
}

// failoverTrial cuts the holder of the IP, measures, restores the link and
// waits until the node is reachable again.
func (e *eipLab) failoverTrial(ctx context.Context, pods map[string]netlab.NetNS) (time.Duration, int, int, error) {
	eip := eipAddr(1)
	a, err := e.waitAssignment(ctx, 30*time.Second, func(a assignment) bool {
		h := a.holder(eip)
		return (h == "node1" || h == "node2") && !a.unreachable["node1"] && !a.unreachable["node2"]
	})
	if err != nil {
		return 0, 0, 0, err
	}
	lost := a.holder(eip)
	survivor := map[string]string{"node1": "node2", "node2": "node1"}[lost]
	if err := e.waitSource(pods[survivor], eip, 15*time.Second); err != nil {
		return 0, 0, 0, fmt.Errorf("before the cut: %w", err)
	}
	mark := e.ext.Packets.Mark()
	s := e.startStream(eipBenchGap, map[string]netlab.NetNS{survivor: pods[survivor], "node3": pods["node3"]})
	time.Sleep(500 * time.Millisecond)
	t0 := time.Now()
	cutErr := e.setUnderlay(lost, false)
	deadline := time.Now().Add(60 * time.Second)
	var worst time.Duration
	ok := false
	for cutErr == nil && !ok && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		s.mu.Lock()
		worst, _, ok = recovered(s.log, t0, eip)
		s.mu.Unlock()
	}
	time.Sleep(time.Second)
	s.stop()
	wrong, total := e.wrongSources(mark, 5353, eip)
	if err := e.setUnderlay(lost, true); err != nil || cutErr != nil {
		return 0, 0, 0, fmt.Errorf("cutting/restoring %s: %v %v", lost, cutErr, err)
	}
	if !ok {
		return 0, 0, 0, fmt.Errorf("traffic did not come back through %s within 60 s with source %s", survivor, eip)
	}
	_, err = e.waitAssignment(ctx, 30*time.Second, func(a assignment) bool { return !a.unreachable[lost] })
	return worst, len(wrong), total, err
}
