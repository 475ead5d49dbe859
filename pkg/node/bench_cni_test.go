package node_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
)

// BenchmarkCNIAdd measures CNI ADD and DEL latency the way a container
// runtime sees it — libcni executing the real sdn-cni binary, the agent's
// CNI server over its unix socket, IPAM, veth, the OVS port through OVSDB
// and the pod's flows through the full agent (networkpolicy mode) — with
// 1, 10 and 50 pods added at once, then deleted at once. Every iteration
// adds and deletes about 100 pods in rounds of that many. Each transport
// runs against the same node: the agent is restarted with it.
//
//	go test ./pkg/node -run '^$' -bench BenchmarkCNIAdd -benchtime 1x
//
// SPEC §10: p99 ≤ 150 ms at 10 and ≤ 400 ms at 50 concurrent ADDs.
func BenchmarkCNIAdd(b *testing.B) {
	c := newITCluster(b, "bcni", networkv1.NetworkPolicyPluginName, 1, 0)
	c.netNamespace(cniPodNS, cniPodVNID)
	n := newCNINode(b, c.nodes[0], buildCNIPlugin(b))
	for _, tr := range benchTransports {
		b.Run(tr, func(b *testing.B) {
			b.Setenv("OVS_SDN_IT_TRANSPORT", tr)
			n.stopAgent()
			n.startCNIAgent(true)
			n.loadConflist()
			for _, conc := range []int{1, 10, 50} {
				b.Run(fmt.Sprintf("concurrent-%d", conc), func(b *testing.B) { benchCNIRounds(b, n, tr, conc) })
			}
		})
	}
}

func benchCNIRounds(b *testing.B, n *cniNode, tr string, conc int) {
	load := benchLoadAvg()
	var adds, dels benchLatencies
	steps0 := opSteps(b, n)
	var cpu cniCPU
	round := 0
	for b.Loop() {
		for range max(1, 100/conc) {
			b.StopTimer()
			pods := make([]*cniPod, conc)
			for i := range pods {
				pods[i] = n.newPod(fmt.Sprintf("b%s%d-%d-%d", tr[:2], conc, round, i))
			}
			round++
			b.StartTimer()
			c0 := n.cpuNow()
			adds = append(adds, cniParallel(b, pods, func(p *cniPod) error { _, err := cniAdd(n, p); return err })...)
			dels = append(dels, cniParallel(b, pods, n.del)...)
			cpu.add(n.cpuNow().sub(c0))
			b.StopTimer()
			for _, p := range pods {
				_ = exec.Command("ip", "netns", "delete", p.probe.NetNS.Name).Run()
			}
			b.StartTimer()
		}
	}
	adds.report(b, "add")
	dels.report(b, "del")
	b.ReportMetric(load, "load1")
	ops := float64(len(adds))
	b.ReportMetric(benchMS(cpu.agent)/ops, "cpu-agent-ms/pod")
	b.ReportMetric(benchMS(cpu.children)/ops, "cpu-execs-ms/pod")
	b.ReportMetric(benchMS(cpu.vswitchd)/ops, "cpu-vswitchd-ms/pod")
	b.ReportMetric(benchMS(cpu.ovsdb)/ops, "cpu-ovsdb-ms/pod")
	for step, sum := range opSteps(b, n) {
		mean := (sum - steps0[step]) / float64(len(adds))
		b.ReportMetric(mean*1000, step+"-mean-ms")
	}
}

// opSteps returns the total seconds the agent's CNI server spent in each
// step of ADD and DEL so far (ovs_sdn_pod_operation_step_seconds), by
// "<operation>-<step>".
func opSteps(b *testing.B, n *cniNode) map[string]float64 {
	mfs, err := n.currentAgent().reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "ovs_sdn_pod_operation_step_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out[labels["operation"]+"-"+labels["step"]] = m.GetHistogram().GetSampleSum()
		}
	}
	return out
}

// cniAdd runs CNI ADD for p.
func cniAdd(n *cniNode, p *cniPod) (types.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return n.cni.AddNetworkList(ctx, n.list, p.rt)
}

// cniParallel runs op for every pod at once and returns each latency; an
// error fails the benchmark.
func cniParallel(b *testing.B, pods []*cniPod, op func(*cniPod) error) []time.Duration {
	lat := make([]time.Duration, len(pods))
	errs := make([]error, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			errs[i] = op(p)
			lat[i] = time.Since(start)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			b.Fatalf("%s: %v", pods[i].name, err)
		}
	}
	return lat
}

// cniCPU is CPU time spent on ADD and DEL, by where: this process (the
// agent and its CNI server), its short-lived children (the sdn-cni shims
// libcni runs, ovs-appctl), ovs-vswitchd and ovsdb-server.
type cniCPU struct{ agent, children, vswitchd, ovsdb time.Duration }

func (c *cniCPU) add(d cniCPU) {
	c.agent += d.agent
	c.children += d.children
	c.vswitchd += d.vswitchd
	c.ovsdb += d.ovsdb
}

func (c cniCPU) sub(d cniCPU) cniCPU {
	return cniCPU{c.agent - d.agent, c.children - d.children, c.vswitchd - d.vswitchd, c.ovsdb - d.ovsdb}
}

// cpuNow reads the CPU time used so far by each part.
func (n *cniNode) cpuNow() cniCPU {
	var self, kids syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(r syscall.Rusage) time.Duration { return time.Duration(r.Utime.Nano() + r.Stime.Nano()) }
	return cniCPU{agent: tv(self), children: tv(kids),
		vswitchd: procCPU(n.Process(netlab.OVSVswitchd).Pid()), ovsdb: procCPU(n.Process(netlab.OVSDBServer).Pid())}
}

// procCPU reads a process's user+system CPU time from /proc (0 if gone).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesized command; utime and stime are the
	// 14th and 15th fields of the line, in clock ticks (100 Hz).
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}
