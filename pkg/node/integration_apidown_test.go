package node_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
)

// TestIntegrationAPIServerDown (SPEC §11 "API server down: the dataplane
// keeps forwarding; the agent catches up after" and "API server back after
// an outage: every agent applies new changes within 5 s"): with both
// agents running and pods connected, kube-apiserver is SIGKILLed
// (connections reset, then refused) and started again after apiDownFor on
// the same address, certificates and etcd data (its own command line, read
// from /proc), so the agents' clients reconnect without any change of
// configuration.
//
//   - While it is down, new TCP connections a1 ↔ b1 every 200 ms and one
//     long-lived stream a1 → b1 never fail, and the agent wires a pod
//     plugged into br0 meanwhile (from its caches: multitenant mode needs
//     only the NetNamespace it already knows).
//   - After it is back, a NetNamespace netid change (joining proj2 to
//     proj1) and a new HostSubnet are applied by both agents within
//     catchUpBound of the API write.
//   - An OpenFlow monitor on each br0 from the kill to the end sees no flow
//     deleted and added again (no flap): the re-listed objects change
//     nothing.
//
// The agents' clients are built by node.NewClients, as in sdn-node: their
// API gate (pkg/apigate) holds the informers' reads while the server is
// unreachable and releases them when /readyz answers. Without it (today's
// main before issue 17) the changes took 18–53 s after a 15–20 s outage:
// client-go's reflector back-off. BenchmarkAPIServerCatchUp measures both,
// for 15 s and 60 s outages.
//
// The outage is 15 s, not the spec's minute, to keep the test short (the
// benchmark runs the minute).
func TestIntegrationAPIServerDown(t *testing.T) {
	const apiDownFor = 15 * time.Second
	c := newITCluster(t, "itapi", networkv1.MultiTenantPluginName, 2, 2*time.Second)
	a, b := c.nodes[0], c.nodes[1]
	c.netNamespace("proj1", 11)
	c.netNamespace("proj2", 12)
	a1 := a.addPod("proj1", "a1")
	b1 := b.addPod("proj1", "b1")
	b2 := b.addPod("proj2", "b2")
	for _, p := range []*netlab.Pod{a1, b1, b2} {
		if _, err := p.ServeTCP(itEchoPort); err != nil {
			t.Fatal(err)
		}
	}
	if err := reachable(a1, b1, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := reachable(b1, a1, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := a1.TCPConnect(b2.IP.Addr(), itEchoPort, 500*time.Millisecond); err == nil {
		t.Fatal("a1 (proj1) → b2 (proj2) connected before the join")
	}

	sp := newSpawner(t)
	api := c.apiServer(t, sp)
	s := startStream(t, a1, b1)
	pr := startPairProber(t, [][2]*netlab.Pod{{a1, b1}, {b1, a1}}, 200*time.Millisecond)
	monDir := t.TempDir()
	mons := []*flowMonitor{startFlowMonitor(t, sp, a, monDir), startFlowMonitor(t, sp, b, monDir)}

	// Down.
	t0 := time.Now()
	api.kill(t)

	// A pod plugged while the API server is down (no Pod object: the
	// multitenant agent takes the VNID from its NetNamespace cache).
	a2ip := a.nextPodIP()
	a2 := a.plugPod("proj1", "a2", a2ip)
	took := a.waitFlow(fmt.Sprintf("table=70,ip,nw_dst=%s", a2ip), true, 10*time.Second)
	t.Logf("pod a2 plugged while the API server is down: table-70 flow after %v", took.Round(time.Millisecond))
	if err := reachable(a2, b1, 3*time.Second); err != nil {
		t.Errorf("a2 → b1 while the API server is down: %v", err)
	}
	for _, n := range c.nodes {
		if ag := n.currentAgent(); ag == nil || !ag.Ready() {
			t.Errorf("agent %s not ready while the API server is down", n.name)
		}
	}
	if d := apiDownFor - time.Since(t0); d > 0 {
		time.Sleep(d)
	}

	api.start(t)
	t.Logf("kube-apiserver down %v", time.Since(t0).Round(time.Millisecond))
	catchUp := catchUpBound

	// Changes right after it is back.
	tw := time.Now()
	c.netNamespace("proj2", 11)
	_, err := c.cs.NetworkV1().HostSubnets().Create(context.Background(), &networkv1.HostSubnet{
		ObjectMeta: metav1.ObjectMeta{Name: "node-c"},
		Host:       "node-c", HostIP: "198.18.0.13", Subnet: "10.130.0.0/23",
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	res := map[string]time.Duration{}
	wait := func(what string, ok func() bool) {
		defer wg.Done()
		for !ok() {
			if time.Since(tw) > catchUp {
				mu.Lock()
				res[what] = -1
				mu.Unlock()
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		mu.Lock()
		res[what] = time.Since(tw)
		mu.Unlock()
	}
	wg.Add(5)
	go wait("join: b2's table-70 flow on node-b loads VNID 11", func() bool {
		out, err := b.Ofctl("dump-flows", netlab.PodBridge, fmt.Sprintf("table=70,ip,nw_dst=%s", b2.IP.Addr()))
		return err == nil && strings.Contains(out, "0xb->NXM_NX_REG1")
	})
	go wait("join: a1 → b2 reachable", func() bool { return reachable(a1, b2, 300*time.Millisecond) == nil })
	go wait("join: b2 → a1 reachable", func() bool { return reachable(b2, a1, 300*time.Millisecond) == nil })
	for _, n := range []*itNode{a, b} {
		go wait("HostSubnet node-c on "+n.name, func() bool {
			out, err := n.Ofctl("dump-flows", netlab.PodBridge, "table=90,ip,nw_dst=10.130.0.0/23")
			return err == nil && strings.Contains(out, "198.18.0.13")
		})
	}
	wg.Wait()
	for what, d := range res {
		switch {
		case d < 0:
			t.Errorf("%s: not within %v of the API write", what, catchUp.Round(time.Millisecond))
		default:
			t.Logf("%s: %v after the API write (bound %v)", what, d.Round(time.Millisecond), catchUp.Round(time.Millisecond))
		}
	}

	for i, m := range mons {
		if f := flaps(m.events()); len(f) > 0 {
			t.Errorf("node %s: flows deleted and added again across the outage:\n%s", c.nodes[i].name, joinLines(f))
		}
	}
	n, fails := pr.stop()
	t.Logf("probes a1 ↔ b1 every 200 ms from the kill to the end (%v): %d, %d failed", time.Since(t0).Round(time.Millisecond), n, len(fails))
	if len(fails) > 0 || n < int(apiDownFor/(400*time.Millisecond)) {
		t.Errorf("%d of %d probes failed:\n%s", len(fails), n, joinLines(fails))
	}
	sent, maxGap, err := s.stop()
	t.Logf("TCP stream a1 → b1 over one connection: %d round trips, longest gap %v", sent, maxGap.Round(time.Microsecond))
	if err != nil {
		t.Errorf("TCP stream a1 → b1 across the API server outage: %v", err)
	}
	if maxGap > time.Second {
		t.Errorf("TCP stream stalled for %v", maxGap)
	}
}

// catchUpBound is SPEC §11's bound from an API write after an outage to
// every agent applying it.
const catchUpBound = 5 * time.Second

// flaps returns the flows an OpenFlow monitor saw deleted and then added
// again unchanged.
func flaps(events []string) []string {
	norm := func(ev string) (string, string) {
		var kind string
		var rest []string
		for _, f := range strings.Fields(ev) {
			switch {
			case strings.HasPrefix(f, "event="):
				kind = strings.TrimPrefix(f, "event=")
			case strings.HasPrefix(f, "reason="), strings.HasPrefix(f, "duration="),
				strings.HasPrefix(f, "n_packets="), strings.HasPrefix(f, "n_bytes="), strings.HasPrefix(f, "idle_age="):
			default:
				rest = append(rest, f)
			}
		}
		return kind, strings.Join(rest, " ")
	}
	deleted := map[string]bool{}
	var out []string
	for _, ev := range events {
		kind, flow := norm(ev)
		switch kind {
		case "DELETED":
			deleted[flow] = true
		case "ADDED":
			if deleted[flow] {
				out = append(out, flow)
			}
		}
	}
	return out
}

// apiServer is the cluster's kube-apiserver process, killed and restarted
// on the same command line (same port, serving certificate in its
// cert-dir, client CA and etcd), so clients reconnect with no change of
// configuration.
type apiServer struct {
	c    *itCluster
	sp   *spawner
	pid  int
	argv []string
}

func (c *itCluster) apiServer(t testing.TB, sp *spawner) *apiServer {
	pid, argv := findProcess(t, "--cert-dir="+filepath.Join(c.env.Dir, "apiserver-certs"))
	return &apiServer{c: c, sp: sp, pid: pid, argv: argv}
}

// kill SIGKILLs the API server (connections reset, then refused) and
// checks that a client gets no answer.
func (s *apiServer) kill(t testing.TB) {
	t.Helper()
	if err := syscall.Kill(s.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, s.pid, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := s.c.cs.NetworkV1().HostSubnets().List(ctx, metav1.ListOptions{})
	cancel()
	if err == nil {
		t.Fatal("the API server answers after SIGKILL")
	}
	t.Logf("kube-apiserver (pid %d) SIGKILLed; a client gets: %v", s.pid, err)
}

// start starts the API server again and waits until /readyz says ok; it
// returns how long that took. The agents are stopped at test end before
// the spawner kills the API server (cleanups run last-in first-out).
func (s *apiServer) start(t testing.TB) time.Duration {
	t.Helper()
	p := s.sp.startProc(t, "kube-apiserver", filepath.Join(s.c.env.Dir, "kube-apiserver.log"), s.argv...)
	t.Cleanup(func() {
		for _, n := range s.c.nodes {
			n.stopAgent()
		}
	})
	s.pid = p.pid()
	up := waitAPIReady(t, s.c, p, 60*time.Second)
	t.Logf("kube-apiserver restarted (pid %d), ready %v after its start", s.pid, up.Round(time.Millisecond))
	return up
}

// findProcess returns the pid and command line of the one process whose
// command line has the argument arg.
func findProcess(t testing.TB, arg string) (int, []string) {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []int
	var argv []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
		for _, a := range args[1:] {
			if a == arg {
				found = append(found, pid)
				argv = args
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("processes with %s: %v, want one", arg, found)
	}
	return found[0], argv
}

// waitGone waits until pid no longer exists (killed and reaped).
func waitGone(t testing.TB, pid int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still exists %v after SIGKILL", pid, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitAPIReady waits until the API server answers /readyz with ok through
// the cluster's client.
func waitAPIReady(t testing.TB, c *itCluster, p *proc, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		body, err := c.kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			return time.Since(start)
		}
		if p.exited() {
			t.Fatalf("kube-apiserver exited: %v", p.err)
		}
		if time.Since(start) > timeout {
			t.Fatalf("kube-apiserver not ready after %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pairProber opens a new TCP connection for each pair every period until stopped.
type pairProber struct {
	quit  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	n     int
	fails []string
}

func startPairProber(t *testing.T, pairs [][2]*netlab.Pod, period time.Duration) *pairProber {
	p := &pairProber{quit: make(chan struct{})}
	start := time.Now()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			for _, pr := range pairs {
				err := reachable(pr[0], pr[1], time.Second)
				p.mu.Lock()
				p.n++
				if err != nil {
					p.fails = append(p.fails, fmt.Sprintf("%v: %s → %s: %v", time.Since(start).Round(time.Millisecond), pr[0].Name, pr[1].Name, err))
				}
				p.mu.Unlock()
			}
			select {
			case <-p.quit:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { p.stop() })
	return p
}

// stop ends the probes and returns how many ran and the failures.
func (p *pairProber) stop() (int, []string) {
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n, p.fails
}
