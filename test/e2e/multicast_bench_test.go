package e2e

// BenchmarkMulticastLab measures how fast enabling and disabling multicast
// takes effect on a 3-node networkpolicy lab (SPEC §4.8; numbers in
// docs/benchmarks.md, "Multicast"): over mcBenchCycles enable/disable
// cycles of one namespace with a pod per node, while one pod sends a
// datagram to the group every mcBenchGap,
//
//   - cmd: `sdnctl pod-network enable-multicast|disable-multicast` from its
//     start (the annotation write) until it returns, i.e. until table 110 of
//     br0 on all three nodes has (or no longer has) the VNID's flow;
//   - pkt: from the same start until datagrams reach both remote receivers
//     (enable: the later of their first receptions), or stop reaching them
//     (disable: the later of their last receptions).
//
// It is a benchmark, so `go test` (make test) never runs it; `make bench`
// does. The work runs once per process; later b.N rounds report the same
// numbers.

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
	"github.com/ovs-sdn/ovs-sdn/pkg/sdnctl"
)

const (
	mcBenchCycles = 30
	mcBenchGap    = 5 * time.Millisecond
)

type mcBenchResult struct {
	enableCmd, enablePkt, disableCmd, disablePkt []time.Duration
	load                                         string
}

var (
	mcBenchOnce sync.Once
	mcBenchRes  *mcBenchResult
	mcBenchErr  error
)

func BenchmarkMulticastLab(b *testing.B) {
	if testing.Short() {
		b.Skip("starts a multi-node lab")
	}
	if os.Geteuid() != 0 {
		b.Skip("needs root (network namespaces, Open vSwitch)")
	}
	mcBenchOnce.Do(func() { mcBenchRes, mcBenchErr = runMCBench(b) })
	if mcBenchErr != nil {
		b.Fatal(mcBenchErr)
	}
	r := mcBenchRes
	for _, m := range []struct {
		name string
		ds   []time.Duration
	}{{"enable-cmd", r.enableCmd}, {"enable-pkt", r.enablePkt}, {"disable-cmd", r.disableCmd}, {"disable-pkt", r.disablePkt}} {
		b.ReportMetric(ms(percentile(m.ds, 50)), m.name+"-p50-ms")
		b.ReportMetric(ms(percentile(m.ds, 99)), m.name+"-p99-ms")
	}
	b.ReportMetric(0, "ns/op")
	b.Logf("%d cycles, load average at start %s", mcBenchCycles, r.load)
}

func runMCBench(b *testing.B) (*mcBenchResult, error) {
	ctx := context.Background()
	prefix := "e2emcbench"
	l, err := lab.Up(ctx, lab.Config{Nodes: 3, PluginName: networkv1.NetworkPolicyPluginName,
		StateDir: filepath.Join("/run", prefix), Prefix: prefix, CNIPlugin: filepath.Join(binDir, "sdn-cni"), NodeAgent: filepath.Join(binDir, "sdn-node")})
	if err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	defer l.Close()
	c := newMCCluster(l)
	var pods []mcPod
	for i, n := range l.Nodes() {
		pods = append(pods, mcPod{ns: "mc-bench", name: fmt.Sprintf("p%d", i+1), node: n.Name})
	}
	keys, err := c.addPodsE(ctx, pods...)
	defer func() {
		for _, k := range keys {
			c.closeListener(k)
		}
	}()
	if err != nil {
		return nil, err
	}
	stop := make(chan struct{})
	sent := make(chan error, 1)
	go func() { sent <- sendEvery(ctx, l, keys[0], stop) }()
	res := &mcBenchResult{load: loadavg()}
	for range mcBenchCycles {
		for _, enable := range []bool{true, false} {
			cmd, pkt, err := c.toggle(ctx, enable, keys[1:])
			if err != nil {
				close(stop)
				return nil, err
			}
			if enable {
				res.enableCmd, res.enablePkt = append(res.enableCmd, cmd), append(res.enablePkt, pkt)
			} else {
				res.disableCmd, res.disablePkt = append(res.disableCmd, cmd), append(res.disablePkt, pkt)
			}
		}
	}
	close(stop)
	if err := <-sent; err != nil {
		return nil, err
	}
	return res, nil
}

// sendEvery sends a datagram from `from` every mcBenchGap until stop.
func sendEvery(ctx context.Context, l *lab.Lab, from types.NamespacedName, stop <-chan struct{}) error {
	tick := time.NewTicker(mcBenchGap)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
		if err := l.Kubelets.SendMulticast(ctx, from, mcGroup, fmt.Sprintf("bench %d", i)); err != nil {
			return err
		}
	}
}

// toggle enables or disables mc-bench and returns the command's time and the
// time until the receivers' datagrams started (enable) or stopped (disable).
func (c *mcCluster) toggle(ctx context.Context, enable bool, receivers []types.NamespacedName) (cmd, pkt time.Duration, err error) {
	start := time.Now()
	err = sdnctl.SetMulticast(ctx, &sdnctl.Clients{Kube: c.l.Kube, Network: c.l.Network}, enable, []string{"mc-bench"}, rundirs(c.l), io.Discard)
	if err != nil {
		return 0, 0, err
	}
	cmd = time.Since(start)
	deadline := time.Now().Add(5 * time.Second)
	for {
		time.Sleep(200 * time.Millisecond) // a disable shows as silence; give stragglers time
		var latest time.Duration
		missing := false
		for _, k := range receivers {
			at, ok := c.edge(k, start, enable)
			missing = missing || !ok
			latest = max(latest, at.Sub(start))
		}
		if !missing {
			return cmd, latest, nil
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("enable=%v: a receiver got no datagram within 5 s of the change", enable)
		}
	}
}

// edge is, for datagrams received by k after start, the first reception
// (enable) or the last one (disable; start itself when none came).
func (c *mcCluster) edge(k types.NamespacedName, start time.Time, enable bool) (time.Time, bool) {
	var first, last time.Time
	for _, d := range c.listeners[k].Received("bench ") {
		if d.At.Before(start) {
			continue
		}
		if first.IsZero() {
			first = d.At
		}
		last = d.At
	}
	if enable {
		return first, !first.IsZero()
	}
	if last.IsZero() {
		return start, true
	}
	return last, true
}
