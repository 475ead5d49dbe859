package node_test

// NetworkPolicy on real OVS: two netlab nodes, in-process agents in
// networkpolicy mode with a Kubernetes client, a real API server holding
// Namespaces, Pods and NetworkPolicies. Every verdict is a TCP connection
// between pod network namespaces through the agents' flows; "blocked"
// always means the connect timed out (a silent drop), never a refusal.

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// TestIntegrationPolicy: deny-all, namespaceSelector across nodes, pod
// label changes, egress ipBlock, a new pod in an isolated namespace, policy
// delete, realization latency.
func TestIntegrationPolicy(t *testing.T) {
	c := newPolCluster(t)
	for _, p := range c.toWeb() {
		checkVerdict(t, p, vOpen)
	}
	if t.Failed() {
		t.FailNow()
	}

	t.Run("deny-all ingress is a silent drop for every source", func(t *testing.T) {
		drop := fmt.Sprintf("table=%d,reg1=%d", ovs.TablePolicyIngress.ID, polVNIDA)
		c.createPolicy(t, ingressPolicy(polNSA, "deny-all", nil))
		c.a.waitFlows(t, drop, isNamespaceDrop)
		before, _ := c.a.flowPackets(t, drop, isNamespaceDrop)
		for _, p := range c.toWeb() {
			waitVerdict(t, p, vTimeout)
			checkVerdict(t, p, vTimeout)
		}
		after := waitCounted(t, "the namespace-default drop of "+polNSA, before, func() uint64 {
			n, _ := c.a.flowPackets(t, drop, isNamespaceDrop)
			return n
		})
		t.Logf("node a: the namespace-default drop of %s (%s) counted %d packets during the probes", polNSA, drop, after-before)
		// Egress of the isolated namespace and traffic to np-b are not
		// affected.
		checkVerdict(t, polPair{c.web, c.bRemote}, vOpen)
		checkVerdict(t, polPair{c.aLocal, c.bLocal}, vOpen)
	})

	t.Run("namespaceSelector admits np-b across nodes by VNID", func(t *testing.T) {
		c.createPolicy(t, ingressPolicy(polNSA, "from-team-b", nil, nsPeer(map[string]string{"team": "b"})))
		vnidFlows := fmt.Sprintf("table=%d,reg0=%d", ovs.TablePolicyIngress.ID, polVNIDB)
		c.a.waitFlows(t, vnidFlows, nil)
		before, n := c.a.flowPackets(t, vnidFlows, nil)
		waitVerdict(t, polPair{c.bRemote, c.web}, vOpen)
		waitVerdict(t, polPair{c.bLocal, c.web}, vOpen)
		checkVerdict(t, polPair{c.aRemote, c.web}, vTimeout)
		checkVerdict(t, polPair{c.aLocal, c.web}, vTimeout)
		after := waitCounted(t, fmt.Sprintf("the reg0=%d allow", polVNIDB), before, func() uint64 {
			n, _ := c.a.flowPackets(t, vnidFlows, nil)
			return n
		})
		t.Logf("node a: %d PolicyIngress flows match reg0=%d (np-b's VNID, from the VXLAN key for bremote); they counted %d packets",
			n, polVNIDB, after-before)
		c.deletePolicy(t, polNSA, "from-team-b")
		waitVerdict(t, polPair{c.bRemote, c.web}, vTimeout)
	})

	t.Run("pod label changes move pods in and out of selectors", func(t *testing.T) {
		// Target side: web leaves and rejoins the podSelector of the
		// allowing policy (deny-all still isolates it).
		c.createPolicy(t, ingressPolicy(polNSA, "web-from-b", map[string]string{"app": "web"}, nsPeer(map[string]string{"team": "b"})))
		pair := polPair{c.bRemote, c.web}
		waitVerdict(t, pair, vOpen)
		relabel := func(ns, pod, patch string, want verdict) {
			t0 := time.Now()
			c.patchPod(t, ns, pod, patch)
			if at := waitVerdict(t, pair, want); !at.IsZero() {
				t.Logf("%s %s: %s → %v after %v", pod, patch, pair, want, at.Sub(t0).Round(time.Millisecond))
			}
		}
		relabel(polNSA, "web", `{"metadata":{"labels":{"app":"other"}}}`, vTimeout)
		relabel(polNSA, "web", `{"metadata":{"labels":{"app":"web"}}}`, vOpen)
		c.deletePolicy(t, polNSA, "web-from-b")

		// Peer side: aremote, on the other node, gains and loses the
		// label a podSelector peer asks for.
		c.createPolicy(t, ingressPolicy(polNSA, "web-from-frontend", map[string]string{"app": "web"}, podPeer(map[string]string{"role": "frontend"})))
		pair = polPair{c.aRemote, c.web}
		time.Sleep(300 * time.Millisecond)
		checkVerdict(t, pair, vTimeout)
		relabel(polNSA, "aremote", `{"metadata":{"labels":{"role":"frontend"}}}`, vOpen)
		checkVerdict(t, polPair{c.aLocal, c.web}, vTimeout) // not a frontend
		relabel(polNSA, "aremote", `{"metadata":{"labels":{"role":null}}}`, vTimeout)
		c.deletePolicy(t, polNSA, "web-from-frontend")
	})

	t.Run("policy delete restores reachability", func(t *testing.T) {
		t0 := c.deletePolicy(t, polNSA, "deny-all")
		for _, p := range c.toWeb() {
			if at := waitVerdict(t, p, vOpen); !at.IsZero() {
				t.Logf("deny-all deleted: %s open after %v", p, at.Sub(t0).Round(time.Millisecond))
			}
		}
	})

	t.Run("egress ipBlock with except", func(t *testing.T) {
		except := netip.PrefixFrom(c.web.IP.Addr(), 32).String()
		np := &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: polNSB, Name: "egress-node-a"},
			Spec: networkingv1.NetworkPolicySpec{
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{
					IPBlock: &networkingv1.IPBlock{CIDR: c.a.subnet.String(), Except: []string{except}}}}}},
			},
		}
		c.createPolicy(t, np)
		waitVerdict(t, polPair{c.bRemote, c.web}, vTimeout)  // the except, cross-node
		waitVerdict(t, polPair{c.bLocal, c.web}, vTimeout)   // the except, same node
		checkVerdict(t, polPair{c.bRemote, c.aLocal}, vOpen) // in the block, cross-node
		checkVerdict(t, polPair{c.bLocal, c.aLocal}, vOpen)  // in the block, same node
		checkVerdict(t, polPair{c.bRemote, c.aRemote}, vTimeout)
		checkVerdict(t, polPair{c.aRemote, c.bRemote}, vOpen) // np-a has no policy; np-b no ingress policy
		c.deletePolicy(t, polNSB, "egress-node-a")
		waitVerdict(t, polPair{c.bRemote, c.web}, vOpen)
		waitVerdict(t, polPair{c.bRemote, c.aRemote}, vOpen)
	})

	t.Run("a new pod in an isolated namespace is never reachable before it is allowed", func(t *testing.T) {
		testNewPodIsolated(t, c)
	})

	t.Run("realization latency", func(t *testing.T) {
		testPolicyLatency(t, c)
	})
}

// prober probes a pair in a loop and records every outcome.
type prober struct {
	from *netlab.Pod
	dst  netip.Addr
	quit chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	log  []probeResult
}

type probeResult struct {
	start time.Time
	v     verdict
}

func startProber(from *netlab.Pod, dst netip.Addr) *prober {
	p := &prober{from: from, dst: dst, quit: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			select {
			case <-p.quit:
				return
			default:
			}
			start := time.Now()
			v := probe(p.from, p.dst, 100*time.Millisecond)
			p.mu.Lock()
			p.log = append(p.log, probeResult{start, v})
			p.mu.Unlock()
			if v != vTimeout {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	return p
}

func (p *prober) stop() []probeResult {
	close(p.quit)
	p.wg.Wait()
	return p.log
}

func (p *prober) firstOpen() (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.log {
		if r.v == vOpen {
			return r.start, true
		}
	}
	return time.Time{}, false
}

// testNewPodIsolated: np-a is isolated (deny-all). Probers from both nodes
// start before two new np-a pods exist: fresh1 gets its Pod object before
// its port (the kubelet order), fresh2 its port 300 ms before its Pod
// object. No probe may connect (or be refused: that too means the SYN got
// through) before the policy that allows them is created.
func testNewPodIsolated(t *testing.T, c *polCluster) {
	c.createPolicy(t, ingressPolicy(polNSA, "deny-all", nil))
	waitVerdict(t, polPair{c.bRemote, c.web}, vTimeout)
	fresh := map[string]string{"app": "fresh"}
	ip1, ip2 := c.a.nextPodIP(), c.a.nextPodIP()
	var probers []*prober
	for _, from := range []*netlab.Pod{c.bRemote, c.bLocal} {
		probers = append(probers, startProber(from, ip1), startProber(from, ip2))
	}
	defer func() {
		for _, p := range probers {
			select {
			case <-p.quit:
			default:
				p.stop()
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)

	c.createPod(polNSA, "fresh1", c.a.name, ip1, fresh)
	f1 := c.a.plugPod(polNSA, "fresh1", ip1)
	if _, err := f1.ServeTCP(itEchoPort); err != nil {
		t.Fatal(err)
	}
	f2 := c.a.plugPod(polNSA, "fresh2", ip2)
	if _, err := f2.ServeTCP(itEchoPort); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	c.createPod(polNSA, "fresh2", c.a.name, ip2, fresh)
	served := time.Now()
	c.a.waitFlows(t, fmt.Sprintf("table=70,ip,nw_dst=%s", ip2), nil)
	time.Sleep(1500 * time.Millisecond) // the pods are fully set up and isolated for a while

	allowed := c.createPolicy(t, ingressPolicy(polNSA, "fresh-from-b", fresh, nsPeer(map[string]string{"team": "b"})))
	deadline := time.Now().Add(polConverge)
	for _, p := range probers {
		for {
			if at, ok := p.firstOpen(); ok {
				t.Logf("%s → %s: first connection %v after the allowing policy was created", p.from.Name, p.dst, at.Sub(allowed).Round(time.Millisecond))
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s → %s: not open %v after the allowing policy", p.from.Name, p.dst, polConverge)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, p := range probers {
		log := p.stop()
		counts := map[verdict]int{}
		isolated := 0
		for _, r := range log {
			if r.start.After(allowed) {
				continue
			}
			counts[r.v]++
			if r.start.After(served) {
				isolated++
			}
			if r.v == vOpen || r.v == vRefused {
				t.Errorf("%s → %s: %v at %v, before the allowing policy (%v)", p.from.Name, p.dst, r.v,
					r.start.Format("15:04:05.000"), allowed.Format("15:04:05.000"))
			}
		}
		t.Logf("%s → %s before the allowing policy: %v (%d while the pod was fully set up)", p.from.Name, p.dst, counts, isolated)
		if isolated < 5 {
			t.Errorf("%s → %s: only %d probes while the pod was set up and isolated; the check proves nothing", p.from.Name, p.dst, isolated)
		}
	}
	c.deletePolicy(t, polNSA, "fresh-from-b")
	c.deletePolicy(t, polNSA, "deny-all")
	waitVerdict(t, polPair{c.bRemote, c.web}, vOpen)
}

// testPolicyLatency creates and deletes a deny policy for web 20 times
// and measures, from the API call, when bremote (node b) first sees web
// (node a, where ingress is enforced) blocked, and open again.
func testPolicyLatency(t *testing.T, c *polCluster) {
	pair := polPair{c.bRemote, c.web}
	checkVerdict(t, pair, vOpen)
	var block, open []time.Duration
	for i := 0; i < 20 && !t.Failed(); i++ {
		t0 := c.createPolicy(t, ingressPolicy(polNSA, "deny-web", map[string]string{"app": "web"}))
		if at := waitVerdict(t, pair, vTimeout); !at.IsZero() {
			block = append(block, at.Sub(t0))
		}
		t0 = c.deletePolicy(t, polNSA, "deny-web")
		if at := waitVerdict(t, pair, vOpen); !at.IsZero() {
			open = append(open, at.Sub(t0))
		}
	}
	if len(block) == 0 || len(open) == 0 {
		return
	}
	for _, m := range []struct {
		what string
		ds   []time.Duration
	}{{"create → blocked", block}, {"delete → open", open}} {
		p50, p99 := percentile(m.ds, 50), percentile(m.ds, 99)
		t.Logf("NetworkPolicy %s (node b → node a): p50 %v, p99 %v, n=%d", m.what,
			p50.Round(time.Millisecond), p99.Round(time.Millisecond), len(m.ds))
		if p99 > time.Second {
			t.Errorf("NetworkPolicy %s: p99 %v, SPEC §10 wants < 1 s", m.what, p99)
		}
	}
	cnt, sum := c.a.currentAgent().histogram(t, "ovs_sdn_networkpolicy_realization_seconds")
	if cnt > 0 {
		t.Logf("node a agent: ovs_sdn_networkpolicy_realization_seconds count %d, mean %v", cnt,
			time.Duration(sum/float64(cnt)*float64(time.Second)).Round(time.Microsecond))
	}
}

// percentile is the nearest-rank percentile of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return s[max(0, min(i, len(s)-1))]
}
