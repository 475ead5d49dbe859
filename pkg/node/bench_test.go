package node_test

// Benchmarks of the dataplane budgets of SPEC §10, against a private real
// OVS (ovstest: root, OVS installed; skipped otherwise and under -short).
// Every number is reported next to a baseline measured in the same
// benchmark, on the same bridge, interleaved with our own iterations, so
// that the ratio survives a busy machine. How to run them and the latest
// numbers: docs/benchmarks.md.
//
//	BenchmarkOVSFullSync/<cluster>/<transport>/empty      FullSync on an empty bridge vs raw `ovs-ofctl --bundle add-flows`
//	BenchmarkOVSFullSync/<cluster>/<transport>/unchanged  FullSync of an already synced bridge vs raw `ovs-ofctl dump-flows`
//	BenchmarkOVSFullSync/<cluster>/<transport>/repair1pct FullSync after 1% out-of-band deletions vs raw `ovs-ofctl --bundle replace-flows`
//	BenchmarkOVSPodChurn/<cluster>/<transport>            one pod add and one pod delete (Set/Delete + Sync), p50/p99 per op
//
// <transport> is openflow (the agent's default: one persistent OpenFlow
// connection, pkg/ovs/openflow) or ofctl (an ovs-ofctl process per
// operation).
//	BenchmarkRenderNode/<cluster>             rendering + FlowStore.Set of a whole node, no OVS

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/node"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/openflow"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovstest"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// benchCluster is one node's view of a 10,000-pod / 500-node cluster: the
// base pipeline, its local pods (5 flows each), the other 499 nodes (3
// flows each), the table-111 multicast flow and the version note.
type benchCluster struct {
	name        string
	localPods   int
	remoteNodes int
}

// benchClusters are the sizes of SPEC §10 "full node sync of a
// 10,000-pod / 500-node cluster". share is the node's fair share of pods;
// alltables a busier node; heavy puts all 10,000 pods' worth of pod flows
// on one node (~51k flows), the stress interpretation.
var benchClusters = []benchCluster{
	{name: "share-20pods", localPods: 20, remoteNodes: 499},
	{name: "alltables-200pods", localPods: 200, remoteNodes: 499},
	{name: "heavy-10000pods", localPods: 10000, remoteNodes: 499},
}

// config is the node's FlowConfig: cluster network 10.128.0.0/12, local
// subnet at its start (a /18 when the pods do not fit a /23), remote /23s
// from 10.129.0.0.
func (c benchCluster) config() pipeline.FlowConfig {
	local := netip.MustParsePrefix("10.128.0.0/23")
	if c.localPods > 500 {
		local = netip.MustParsePrefix("10.128.0.0/18")
	}
	return pipeline.FlowConfig{
		Mode:            clusternetwork.ModeNetworkPolicy,
		ClusterNetworks: []netip.Prefix{netip.MustParsePrefix("10.128.0.0/12")},
		ServiceNetwork:  netip.MustParsePrefix("172.30.0.0/16"),
		LocalSubnet:     local,
		NodeIP:          netip.MustParseAddr("192.168.0.1"),
	}
}

// pod returns local pod i: 100 namespaces, addresses from .2, ports from 3.
func (c benchCluster) pod(cfg pipeline.FlowConfig, i int) pipeline.PodInfo {
	base := cfg.LocalSubnet.Addr().As4()
	ip := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	ip += uint32(i) + 2
	return pipeline.PodInfo{
		Namespace: fmt.Sprintf("ns-%d", i%100),
		Name:      fmt.Sprintf("pod-%d", i),
		IP:        netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)}),
		OFPort:    uint32(i) + 3,
		VNID:      uint32(10 + i%100),
	}
}

// remote returns remote node i: host 192.168.<i/250+1>.<i%250+2>, subnet the
// i-th /23 from 10.129.0.0.
func benchRemote(i int) pipeline.RemoteNode {
	subnet := uint32(10)<<24 + uint32(129)<<16 + uint32(i)<<9
	return pipeline.RemoteNode{
		Name:   fmt.Sprintf("node-%d", i),
		UID:    fmt.Sprintf("00000000-0000-0000-0000-%012d", i),
		HostIP: netip.AddrFrom4([4]byte{192, 168, byte(i/250 + 1), byte(i%250 + 2)}),
		Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(subnet >> 24), byte(subnet >> 16), byte(subnet >> 8), 0}), 23),
	}
}

// store renders the node's whole desired state into a new FlowStore, owner
// by owner, as the agent does.
func (c benchCluster) store(tb testing.TB) *node.FlowStore {
	tb.Helper()
	cfg := c.config()
	s := node.NewFlowStore()
	set := func(owner pipeline.Owner, flows []ovs.Flow) {
		if err := s.Set(owner, flows); err != nil {
			tb.Fatal(err)
		}
	}
	set(pipeline.OwnerPipeline, pipeline.BaseFlows(cfg))
	set(pipeline.OwnerIsolation, cfg.Isolation().StaticFlows(cfg))
	set(pipeline.OwnerVersion, []ovs.Flow{pipeline.VersionFlow(cfg)})
	for i := range c.localPods {
		p := c.pod(cfg, i)
		set(pipeline.PodOwner(p.Namespace, p.Name), pipeline.PodFlows(cfg, p))
	}
	ips := make([]netip.Addr, 0, c.remoteNodes)
	for i := range c.remoteNodes {
		n := benchRemote(i)
		set(n.Owner(), pipeline.RemoteNodeFlows(cfg, n))
		ips = append(ips, n.HostIP)
	}
	set(pipeline.OwnerMulticastRemote, []ovs.Flow{pipeline.MulticastRemoteFlow(cfg, ips)})
	return s
}

// benchOVS is a private OVS with br0, plus raw ovs-ofctl helpers for the
// baselines.
type benchOVS struct {
	tb     testing.TB
	br     ovs.Bridge // the transport under test (use)
	target string
	dir    string
	ofctl  time.Duration // time inside br's operations (OnOperation)
	cpu    time.Duration // CPU time of this process inside FullSync
}

// benchTransports are the agent's two OpenFlow transports: a persistent
// OpenFlow connection (the default) and an ovs-ofctl process per
// operation.
var benchTransports = []string{node.TransportOpenFlow, node.TransportOfctl}

func startBenchOVS(tb testing.TB) *benchOVS {
	inst := ovstest.Start(tb)
	inst.AddBridge("br0")
	return &benchOVS{tb: tb, target: inst.Target("br0"), dir: inst.Dir}
}

// use makes the benchmark's bridge the given transport to br0.
func (o *benchOVS) use(transport string) {
	record := func(_ string, d time.Duration, _ error) { o.ofctl += d }
	switch transport {
	case node.TransportOpenFlow:
		br := openflow.New(o.target)
		br.OnOperation = record
		o.tb.Cleanup(br.Close)
		o.br = br
	default:
		o.br = &ovs.OfctlBridge{Name: o.target, OnOperation: record}
	}
}

// raw runs `ovs-ofctl -O OpenFlow13 [--bundle] cmd br0 args…` with stdout
// discarded and returns how long it took.
func (o *benchOVS) raw(cmd string, args ...string) time.Duration {
	o.tb.Helper()
	return o.rawFrom("", cmd, args...)
}

// rawFrom is raw with stdin read from the file stdin ("" for none).
func (o *benchOVS) rawFrom(stdin, cmd string, args ...string) time.Duration {
	o.tb.Helper()
	argv := append([]string{"-O", "OpenFlow13", cmd, o.target}, args...)
	if slices.Contains([]string{"add-flows", "del-flows", "replace-flows", "add-groups", "del-groups"}, cmd) {
		argv = append([]string{"--bundle"}, argv...)
	}
	c := exec.Command("ovs-ofctl", argv...)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	if stdin != "" {
		f, err := os.Open(stdin)
		if err != nil {
			o.tb.Fatal(err)
		}
		defer f.Close()
		c.Stdin = f
	}
	start := time.Now()
	if err := c.Run(); err != nil {
		o.tb.Fatalf("ovs-ofctl %s: %v: %s", strings.Join(argv, " "), err, stderr.String())
	}
	return time.Since(start)
}

// empty deletes every flow of br0.
func (o *benchOVS) empty() { o.raw("del-flows") }

var benchFlowCountRE = regexp.MustCompile(`flow_count=(\d+)`)

// count returns the number of flows on br0.
func (o *benchOVS) count() int {
	o.tb.Helper()
	out, err := exec.Command("ovs-ofctl", "-O", "OpenFlow13", "dump-aggregate", o.target).CombinedOutput()
	m := benchFlowCountRE.FindSubmatch(out)
	if err != nil || m == nil {
		o.tb.Fatalf("dump-aggregate: %v: %s", err, out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// writeFile writes lines to a file in the instance directory.
func (o *benchOVS) writeFile(name string, lines []string) string {
	o.tb.Helper()
	path := filepath.Join(o.dir, name)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		o.tb.Fatal(err)
	}
	return path
}

func benchFlowText(flows []ovs.Flow) []string {
	out := make([]string, len(flows))
	for i, f := range flows {
		out[i] = f.String()
	}
	return out
}

func benchMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// benchCPU returns the CPU time (user+system, all threads) this process
// has used: unlike wall time it hardly moves when other builds share the
// cores, so it tells the Go share of a sync apart from waiting.
func benchCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchLoadAvg returns the 1-minute load average, to say how busy the machine was.
func benchLoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return math.NaN()
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	return f
}

// BenchmarkOVSFullSync measures FlowStore.FullSync (ReplaceFlows) of a
// whole node against raw ovs-ofctl doing the same work from a prepared file.
// SPEC §10 target: empty ≤ 1.5× raw add-flows. Run with -benchtime=Nx.
func BenchmarkOVSFullSync(b *testing.B) {
	for _, c := range benchClusters {
		b.Run(c.name, func(b *testing.B) {
			o := startBenchOVS(b)
			flows := c.store(b).All()
			file := o.writeFile("flows.txt", benchFlowText(flows))
			for _, tr := range benchTransports {
				b.Run(tr, func(b *testing.B) {
					o.use(tr)
					store := c.store(b) // a fresh store: no applied state from the other transport
					b.Run("empty", func(b *testing.B) { benchFullSyncEmpty(b, o, store, file, len(flows)) })
					b.Run("unchanged", func(b *testing.B) { benchFullSyncUnchanged(b, o, store, len(flows)) })
					b.Run("repair1pct", func(b *testing.B) { benchFullSyncRepair(b, o, store, flows, file) })
				})
			}
		})
	}
}

// benchFullSyncEmpty alternates raw add-flows and FullSync, each on an
// emptied bridge. ns/op is FullSync; ofctl-ms is the part spent inside
// ovs-ofctl, the rest is Go (snapshot, String, temp file).
func benchFullSyncEmpty(b *testing.B, o *benchOVS, store *node.FlowStore, file string, n int) {
	ctx := context.Background()
	load := benchLoadAvg()
	var raw time.Duration
	o.ofctl, o.cpu = 0, 0
	for b.Loop() {
		b.StopTimer()
		o.empty()
		raw += o.raw("add-flows", file)
		o.empty()
		b.StartTimer()
		cpu0 := benchCPU()
		if err := store.FullSync(ctx, o.br); err != nil {
			b.Fatal(err)
		}
		o.cpu += benchCPU() - cpu0
	}
	b.StopTimer()
	if got := o.count(); got != n {
		b.Fatalf("bridge holds %d flows after FullSync, want %d", got, n)
	}
	benchReport(b, o, "raw-add", raw, n, load)
}

// benchFullSyncUnchanged measures FullSync of a bridge that already holds
// exactly the desired flows, against one raw dump-flows of it.
func benchFullSyncUnchanged(b *testing.B, o *benchOVS, store *node.FlowStore, n int) {
	ctx := context.Background()
	if err := store.FullSync(ctx, o.br); err != nil {
		b.Fatal(err)
	}
	load := benchLoadAvg()
	var raw time.Duration
	o.ofctl, o.cpu = 0, 0
	for b.Loop() {
		b.StopTimer()
		raw += o.raw("dump-flows")
		b.StartTimer()
		cpu0 := benchCPU()
		if err := store.FullSync(ctx, o.br); err != nil {
			b.Fatal(err)
		}
		o.cpu += benchCPU() - cpu0
	}
	b.StopTimer()
	benchReport(b, o, "raw-dump", raw, n, load)
}

// benchFullSyncRepair deletes a different 1% of the flows out of band before
// each FullSync, and before each raw `replace-flows` of the same file (the
// ovs-ofctl floor of our implementation), and checks the repair.
func benchFullSyncRepair(b *testing.B, o *benchOVS, store *node.FlowStore, flows []ovs.Flow, file string) {
	ctx := context.Background()
	damage := func(round int) {
		var victims []string
		for i := round % 100; i < len(flows); i += 100 {
			victims = append(victims, flows[i].MatchString())
		}
		o.rawFrom(o.writeFile("victims.txt", victims), "del-flows", "--strict", "-")
	}
	load := benchLoadAvg()
	var raw time.Duration
	o.ofctl, o.cpu = 0, 0
	round := 0
	for b.Loop() {
		b.StopTimer()
		damage(round)
		raw += o.raw("replace-flows", file)
		damage(round + 50)
		round++
		b.StartTimer()
		cpu0 := benchCPU()
		if err := store.FullSync(ctx, o.br); err != nil {
			b.Fatal(err)
		}
		o.cpu += benchCPU() - cpu0
	}
	b.StopTimer()
	if got := o.count(); got != len(flows) {
		b.Fatalf("bridge holds %d flows after repair, want %d", got, len(flows))
	}
	benchReport(b, o, "raw-replace", raw, len(flows), load)
}

// benchReport reports the baseline per op, our time as a multiple of it, the
// ovs-ofctl share of our time, the flow count and the load average.
func benchReport(b *testing.B, o *benchOVS, baseline string, raw time.Duration, flows int, load float64) {
	ours := b.Elapsed()
	b.ReportMetric(benchMS(raw)/float64(b.N), baseline+"-ms/op")
	b.ReportMetric(float64(ours)/float64(raw), "x-"+baseline)
	b.ReportMetric(benchMS(o.ofctl)/float64(b.N), "ofctl-ms/op")
	b.ReportMetric(benchMS(o.cpu)/float64(b.N), "go-cpu-ms/op")
	b.ReportMetric(float64(flows), "flows")
	b.ReportMetric(load, "load1")
}

// benchBundleSizer records the size of every bundle sent through it.
type benchBundleSizer struct {
	ovs.Bridge
	last int
}

func (c *benchBundleSizer) Bundle(ctx context.Context, changes []ovs.Change) error {
	c.last = len(changes)
	return c.Bridge.Bundle(ctx, changes)
}

// benchLatencies records per-operation benchLatencies and reports percentiles.
type benchLatencies []time.Duration

func (l benchLatencies) percentile(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(i, 0)]
}

// report adds <name>-p50-ms and <name>-p99-ms metrics and logs the spread.
func (l benchLatencies) report(b *testing.B, name string) {
	b.ReportMetric(benchMS(l.percentile(50)), name+"-p50-ms")
	b.ReportMetric(benchMS(l.percentile(99)), name+"-p99-ms")
	b.Logf("%s: n=%d p50=%v p90=%v p99=%v max=%v", name, len(l),
		l.percentile(50), l.percentile(90), l.percentile(99), l.percentile(100))
}

// BenchmarkOVSPodChurn adds and deletes one pod per iteration on a bridge
// that holds a whole node (Set/Delete + Sync, one bundle each) and reports
// per-op latency percentiles and the bundle size. SPEC §10: O(1) flows
// (5 per pod) and p99 < 20 ms. The baseline, interleaved, is raw
// `ovs-ofctl bundle br0 -` of the same five changes: the floor of a
// transport that execs ovs-ofctl. Run with -benchtime=200x or more.
func BenchmarkOVSPodChurn(b *testing.B) {
	for _, c := range benchClusters[1:] {
		b.Run(c.name, func(b *testing.B) {
			o := startBenchOVS(b)
			for _, tr := range benchTransports {
				b.Run(tr, func(b *testing.B) {
					o.use(tr)
					benchPodChurn(b, o, c)
				})
			}
		})
	}
}

func benchPodChurn(b *testing.B, o *benchOVS, c benchCluster) {
	store := c.store(b)
	ctx := context.Background()
	if err := store.FullSync(ctx, o.br); err != nil {
		b.Fatal(err)
	}
	cfg := c.config()
	br := &benchBundleSizer{Bridge: o.br}
	var add, del, rawAdd, rawDel benchLatencies
	var changes, ops int
	apply := func(rec *benchLatencies, change func()) {
		start := time.Now()
		change()
		if err := store.Sync(ctx, br); err != nil {
			b.Fatal(err)
		}
		*rec = append(*rec, time.Since(start))
		if br.last != 5 {
			b.Errorf("op %d: bundle of %d changes, want 5", ops, br.last)
		}
		changes += br.last
		ops++
	}
	load := benchLoadAvg()
	i := 0
	for b.Loop() {
		// 50 free addresses after the node's pods, reused in turn.
		p := c.pod(cfg, c.localPods+i%50)
		p.Namespace, p.Name = "churn", fmt.Sprintf("churn-%d", i)
		owner := pipeline.PodOwner(p.Namespace, p.Name)
		flows := pipeline.PodFlows(cfg, p)
		i++
		b.StopTimer()
		addFile, delFile := o.bundleFiles(flows)
		rawAdd = append(rawAdd, o.rawFrom(addFile, "bundle", "-"))
		rawDel = append(rawDel, o.rawFrom(delFile, "bundle", "-"))
		b.StartTimer()
		apply(&add, func() {
			if err := store.Set(owner, flows); err != nil {
				b.Fatal(err)
			}
		})
		apply(&del, func() { store.Delete(owner) })
	}
	b.StopTimer()
	if got, want := o.count(), store.Len(); got != want {
		b.Fatalf("bridge holds %d flows, store %d", got, want)
	}
	add.report(b, "add")
	del.report(b, "del")
	rawAdd.report(b, "raw-add")
	rawDel.report(b, "raw-del")
	b.ReportMetric(float64(changes)/float64(ops), "flowmods/op")
	b.ReportMetric(float64(store.Len()), "flows")
	b.ReportMetric(load, "load1")
}

// bundleFiles writes `ovs-ofctl bundle` input that adds flows and input
// that deletes them again, strictly.
func (o *benchOVS) bundleFiles(flows []ovs.Flow) (add, del string) {
	var a, d []string
	for _, f := range flows {
		a = append(a, ovs.AddFlow(f).String())
		d = append(d, ovs.DeleteFlow(f).String())
	}
	return o.writeFile("add.bundle", a), o.writeFile("del.bundle", d)
}

// BenchmarkRenderNode renders a whole node into a new FlowStore (no OVS):
// the CPU cost that precedes a start-up full sync.
func BenchmarkRenderNode(b *testing.B) {
	for _, c := range benchClusters {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var n int
			for b.Loop() {
				n = c.store(b).Len()
			}
			b.ReportMetric(float64(n), "flows")
		})
	}
}

// benchNopRunner stands in for ovs-ofctl: it accepts everything at once.
type benchNopRunner struct{}

func (benchNopRunner) RunOfctl(context.Context, []byte, ...string) ([]byte, error) { return nil, nil }

// BenchmarkFullSyncGo is FlowStore.FullSync through OfctlBridge with
// ovs-ofctl replaced by a no-op (no OVS, no root): the Go share of a full
// sync — snapshot, flow text, handing it to ovs-ofctl, commit.
func BenchmarkFullSyncGo(b *testing.B) {
	for _, c := range benchClusters {
		b.Run(c.name, func(b *testing.B) {
			store := c.store(b)
			br := &ovs.OfctlBridge{Name: "br0", Runner: benchNopRunner{}}
			if err := store.FullSync(context.Background(), br); err != nil {
				b.Fatal(err) // the first sync also builds the applied state
			}
			b.ReportAllocs()
			cpu0 := benchCPU()
			for b.Loop() {
				if err := store.FullSync(context.Background(), br); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(benchMS(benchCPU()-cpu0)/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(store.Len()), "flows")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*store.Len()), "ns/flow")
		})
	}
}
