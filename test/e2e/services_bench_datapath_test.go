package e2e

// The datapath half of BenchmarkServicesLab (services_bench_test.go) and
// the readers of the agents' histogram and the datapath's counters.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
)

// svcModes are the two ways to the server, run alternately.
var svcModes = []string{"direct", "clusterip"}

// svcPair is one client of the server pod.
type svcPair struct {
	name   string
	client types.NamespacedName
}

// datapath measures throughput and connection rate of both pairs in both
// modes. Each run alternates the order of the modes, so a slow drift of the
// machine's load does not favour one.
func (s *svcBench) datapath(ctx context.Context, res *svcBenchResult) error {
	srvNS := s.netns(s.srv)
	stop, err := startInNetNS(srvNS, "iperf3", "-s", "-p", strconv.Itoa(svcIperfPort))
	if err != nil {
		return err
	}
	defer stop()
	stopCRR, err := startInNetNS(srvNS, filepath.Join(binDir, "tcpconnrate"), "serve", "-listen", fmt.Sprintf(":%d", svcCRRPort))
	if err != nil {
		return err
	}
	defer stopCRR()
	pairs := []svcPair{{"same-node", s.cl1}, {"cross-node", s.cl2}}
	for _, p := range pairs {
		// tcpconnrate closes first: TIME_WAIT ports of the client must be
		// reusable after a second, and there must be many of them.
		if _, err := exec.CommandContext(ctx, "nsenter", "--net="+s.netns(p.client), "sysctl", "-q", "-w",
			"net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65535").CombinedOutput(); err != nil {
			return fmt.Errorf("sysctl in %s: %w", p.client, err)
		}
	}
	res.tput, res.crr = map[string]map[string][]float64{}, map[string]map[string][]crrRun{}
	for _, p := range pairs {
		if err := s.throughput(ctx, p, res); err != nil {
			return err
		}
	}
	for _, p := range pairs {
		for _, c := range svcCRRConcurrency {
			if err := s.connRate(ctx, p, c, res); err != nil {
				return err
			}
		}
	}
	return nil
}

// target is the server's address for mode on port.
func (s *svcBench) target(mode string, port uint16) netip.AddrPort {
	if mode == "clusterip" {
		return s.vip(s.bench, port)
	}
	return netip.AddrPortFrom(s.ips[s.srv], port)
}

func modeOrder(run int) []string {
	if run%2 == 1 {
		return []string{svcModes[1], svcModes[0]}
	}
	return svcModes
}

func (s *svcBench) throughput(ctx context.Context, p svcPair, res *svcBenchResult) error {
	res.tput[p.name] = map[string][]float64{}
	dp := map[string]dpStats{}
	for run := range svcIperfRuns {
		for _, mode := range modeOrder(run) {
			nodes := s.pairNodes(p)
			resetDP(nodes)
			bps, err := runIperf(ctx, s.netns(p.client), s.target(mode, svcIperfPort))
			if err != nil {
				return fmt.Errorf("iperf3 %s %s: %w", p.name, mode, err)
			}
			res.tput[p.name][mode] = append(res.tput[p.name][mode], bps)
			dp[mode] = dp[mode].plus(readDPStats(nodes))
		}
	}
	for _, mode := range svcModes {
		s.b.Logf("iperf3 %s %s → %s: %v Mbit/s (median %d); datapath: %s", p.name, mode, s.target(mode, svcIperfPort),
			mbits(res.tput[p.name][mode]), int(median(res.tput[p.name][mode])/1e6), dp[mode].perPacket())
	}
	return nil
}

func (s *svcBench) connRate(ctx context.Context, p svcPair, conc int, res *svcBenchResult) error {
	k := fmt.Sprintf("%s/c%d", p.name, conc)
	res.crr[k] = map[string][]crrRun{}
	for run := range svcCRRRuns {
		for _, mode := range modeOrder(run) {
			nodes := s.pairNodes(p)
			resetDP(nodes)
			r, err := runCRR(ctx, s.netns(p.client), s.target(mode, svcCRRPort), conc)
			if err != nil {
				return fmt.Errorf("tcpconnrate %s %s: %w", k, mode, err)
			}
			r.dp = readDPStats(nodes)
			res.crr[k][mode] = append(res.crr[k][mode], r)
		}
	}
	for _, mode := range svcModes {
		runs := res.crr[k][mode]
		var rates []int
		var dp dpStats
		conns := 0.0
		for _, r := range runs {
			rates = append(rates, int(r.PerSecond))
			dp = dp.plus(r.dp)
			conns += r.PerSecond * svcCRRDuration.Seconds()
		}
		last := runs[len(runs)-1]
		s.b.Logf("tcpconnrate %s %s: %v conn/s (median %d), last run p50 %.0f µs p99 %.0f µs, %d errors; datapath per connection: %s",
			k, mode, rates, int(crrMedian(runs)), last.P50us, last.P99us, last.Errors, dp.per(conns))
	}
	return nil
}

func crrMedian(runs []crrRun) float64 {
	var xs []float64
	for _, r := range runs {
		xs = append(xs, r.PerSecond)
	}
	return median(xs)
}

// pairNodes are the lab nodes of the pair's client and of the server.
func (s *svcBench) pairNodes(p svcPair) []*lab.Node {
	nodes := []*lab.Node{s.l.Node(s.nodeOf[s.srv])}
	if n := s.nodeOf[p.client]; n != s.nodeOf[s.srv] {
		nodes = append(nodes, s.l.Node(n))
	}
	return nodes
}

func (s *svcBench) netns(k types.NamespacedName) string {
	for _, n := range s.l.Nodes() {
		if p := n.Kubelet.PodNetNS(k); p != "" {
			return p
		}
	}
	return ""
}

// startInNetNS starts argv in the network namespace at path (nsenter
// --net) and returns a function that kills it.
func startInNetNS(path string, argv ...string) (func(), error) {
	if path == "" {
		return nil, fmt.Errorf("%s: pod network namespace not found", argv[0])
	}
	cmd := exec.Command("nsenter", append([]string{"--net=" + path}, argv...)...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	return func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }, nil
}

// runIperf runs an iperf3 client in the network namespace clientNS against
// to for svcIperfSeconds and returns the received bits/s. It retries while
// the server is not listening yet or still busy with the previous test.
func runIperf(ctx context.Context, clientNS string, to netip.AddrPort) (float64, error) {
	var out []byte
	var err error
	for try := 0; try < 30; try++ {
		out, err = exec.CommandContext(ctx, "nsenter", "--net="+clientNS, "iperf3", "-c", to.Addr().String(),
			"-p", strconv.Itoa(int(to.Port())), "-t", strconv.Itoa(svcIperfSeconds), "-J").Output()
		if err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
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

// runCRR runs tcpconnrate dial in clientNS against to.
func runCRR(ctx context.Context, clientNS string, to netip.AddrPort, conc int) (crrRun, error) {
	out, err := exec.CommandContext(ctx, "nsenter", "--net="+clientNS, filepath.Join(binDir, "tcpconnrate"), "dial",
		"-addr", to.String(), "-duration", svcCRRDuration.String(), "-concurrency", strconv.Itoa(conc)).Output()
	if err != nil {
		return crrRun{}, fmt.Errorf("%v: %s", err, out)
	}
	var r crrRun
	var extra struct {
		Connections int    `json:"connections"`
		FirstError  string `json:"first_error"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return crrRun{}, fmt.Errorf("output %q: %v", out, err)
	}
	_ = json.Unmarshal(out, &extra)
	if extra.Connections == 0 {
		return crrRun{}, fmt.Errorf("no connection completed (%d errors, first: %s)", r.Errors, extra.FirstError)
	}
	return r, nil
}

// dpStats are the userspace datapath's counters (ovs-appctl
// dpif-netdev/pmd-stats-show, summed over its threads and the nodes):
// "packets received", "packet recirculations", "megaflow hits", "miss with
// success upcall", …
type dpStats map[string]float64

// resetDP gives every run the same start: the datapath counters cleared
// and the conntrack tables of the nodes emptied (the entries of the
// previous run would otherwise stay in TIME_WAIT, and a ClusterIP
// connection whose translated tuple is still held by a direct one cannot
// be created).
func resetDP(nodes []*lab.Node) {
	for _, n := range nodes {
		_, _ = n.Net.Appctl("dpif-netdev/pmd-stats-clear")
		_, _ = n.Net.Appctl("dpctl/flush-conntrack")
	}
}

// readDPStats reads the counters and the conntrack entries ("ct Total", …).
func readDPStats(nodes []*lab.Node) dpStats {
	st := dpStats{}
	for _, n := range nodes {
		if out, err := n.Net.Appctl("dpif-netdev/pmd-stats-show"); err == nil {
			st.parse(out, "")
		}
		if out, err := n.Net.Appctl("dpctl/ct-stats-show"); err == nil {
			st.parse(out, "ct ")
		}
	}
	return st
}

// parse adds the "key: number …" lines of out, keys prefixed.
func (d dpStats) parse(out, prefix string) {
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || strings.HasPrefix(k, "avg.") {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		if x, err := strconv.ParseFloat(f[0], 64); err == nil {
			d[prefix+k] += x
		}
	}
}

func (d dpStats) plus(e dpStats) dpStats {
	out := dpStats{}
	for k, v := range d {
		out[k] += v
	}
	for k, v := range e {
		out[k] += v
	}
	return out
}

// perPacket summarises d per packet received: datapath passes
// (recirculations) and upcalls.
func (d dpStats) perPacket() string {
	pk := d["packets received"]
	if pk == 0 {
		return "no counters"
	}
	return fmt.Sprintf("%.0f packets, %.2f passes/packet, %.0f upcalls (%.4f/packet)",
		pk, (pk+d["packet recirculations"])/pk, d["miss with success upcall"], d["miss with success upcall"]/pk)
}

// per summarises d per connection of conns.
func (d dpStats) per(conns float64) string {
	if conns == 0 || d["packets received"] == 0 {
		return "no counters"
	}
	pk := d["packets received"]
	return fmt.Sprintf("%.1f packets, %.2f passes/packet, %.3f upcalls, %.3f failed upcalls, %.2f conntrack entries",
		pk/conns, (pk+d["packet recirculations"])/pk, d["miss with success upcall"]/conns, d["miss with failed upcall"]/conns,
		d["ct Total"]/conns)
}

// histogram is a cumulative Prometheus histogram: bucket upper bound →
// count, plus sum and count.
type histogram struct {
	buckets    map[float64]float64
	sum, count float64
}

// agentHistograms returns ovs_sdn_realization_seconds{feature="services"}
// summed over every node's agent.
func (s *svcBench) agentHistograms(ctx context.Context) (histogram, error) {
	h := histogram{buckets: map[float64]float64{}}
	for _, n := range s.l.Nodes() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.MetricsAddr+"/metrics", nil)
		if err != nil {
			return h, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return h, fmt.Errorf("node %s metrics: %w", n.Name, err)
		}
		err = h.add(resp.Body, "ovs_sdn_realization_seconds", `feature="services"`)
		resp.Body.Close()
		if err != nil {
			return h, fmt.Errorf("node %s metrics: %w", n.Name, err)
		}
	}
	return h, nil
}

// add adds the series of histogram name with label from a text exposition.
func (h *histogram) add(r io.Reader, name, label string) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"_") || !strings.Contains(line, label) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return fmt.Errorf("%q: %w", line, err)
		}
		switch {
		case strings.HasPrefix(line, name+"_bucket{"):
			_, rest, _ := strings.Cut(line, `le="`)
			le, _, _ := strings.Cut(rest, `"`)
			bound, err := strconv.ParseFloat(le, 64) // "+Inf" parses too
			if err != nil {
				return fmt.Errorf("%q: %w", line, err)
			}
			h.buckets[bound] += v
		case strings.HasPrefix(line, name+"_sum{"):
			h.sum += v
		case strings.HasPrefix(line, name+"_count{"):
			h.count += v
		}
	}
	return sc.Err()
}

func (h histogram) minus(o histogram) histogram {
	out := histogram{buckets: map[float64]float64{}, sum: h.sum - o.sum, count: h.count - o.count}
	for le, v := range h.buckets {
		out.buckets[le] = v - o.buckets[le]
	}
	return out
}

func (h histogram) mean() float64 {
	if h.count == 0 {
		return 0
	}
	return h.sum / h.count
}

// quantileBound returns the upper bound of the bucket that holds the
// q-quantile (what histogram_quantile interpolates within).
func (h histogram) quantileBound(q float64) float64 {
	bounds := make([]float64, 0, len(h.buckets))
	for le := range h.buckets {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	for _, le := range bounds {
		if h.buckets[le] >= q*h.count {
			return le
		}
	}
	return 0
}

func (h histogram) String() string {
	return fmt.Sprintf("n=%.0f mean %.1f ms, p50 ≤ %g ms, p99 ≤ %g ms", h.count, h.mean()*1000,
		h.quantileBound(0.5)*1000, h.quantileBound(0.99)*1000)
}
