package e2e

// The truth-table cluster of the NetworkPolicy suite (the upstream
// Kubernetes framework's shape): namespaces x, y, z (label ns=<name>) with
// pods a, b, c (label pod=<name>) spread over the lab's nodes, every pod
// serving ports 80 and 81 over TCP, UDP and SCTP and a DNS-like port 53
// over TCP and UDP, each pod behind its own ClusterIP Service
// (netpol_services_test.go). It applies scenario states to the API and
// probes matrices of new connections in parallel, to the pods' IPs and
// through their Services.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/kubelet"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

var (
	npNamespaces = []string{"x", "y", "z"}
	npPodNames   = []string{"a", "b", "c"}
)

// npServedPorts is what every truth-table pod declares (and so serves).
func npServedPorts() []corev1.ContainerPort {
	var ports []corev1.ContainerPort
	for _, port := range []int32{80, 81} {
		for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP} {
			ports = append(ports, corev1.ContainerPort{
				Name: fmt.Sprintf("serve-%d-%s", port, strings.ToLower(string(proto))), ContainerPort: port, Protocol: proto})
		}
	}
	return append(ports,
		corev1.ContainerPort{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
		corev1.ContainerPort{Name: "dns-udp", ContainerPort: 53, Protocol: corev1.ProtocolUDP})
}

// npResult is one probe's observation.
type npResult struct {
	Outcome kubelet.Outcome
	Err     error
}

// npCluster is the truth-table cluster on a lab.
type npCluster struct {
	l        *lab.Lab
	base     *npState // default labels, no policies
	cur      *npState // what the API holds now
	sysLabel map[string]map[string]string
	ips      map[types.NamespacedName]netip.Addr
	vips     map[types.NamespacedName]netip.Addr // each pod's Service's ClusterIP
	workers  int
	timeout  time.Duration
}

func podKeyOf(s string) types.NamespacedName {
	ns, name, _ := strings.Cut(s, "/")
	return types.NamespacedName{Namespace: ns, Name: name}
}

// newNPCluster creates the namespaces, the pods and their Services (with
// servicePorts): pod j of namespace i runs on node (i+j) mod N, so every
// namespace spans every node and each pair of pods is on the same node or on
// different nodes.
func newNPCluster(ctx context.Context, l *lab.Lab, servicePorts []corev1.ServicePort) (*npCluster, error) {
	c := &npCluster{l: l, sysLabel: map[string]map[string]string{}, workers: 48, timeout: time.Second}
	base := &npState{NSLabels: map[string]map[string]string{}}
	for _, ns := range npNamespaces {
		if err := l.EnsureNamespaces(ctx, map[string]string{"ns": ns}, ns); err != nil {
			return nil, err
		}
	}
	if _, err := l.WaitNetNamespaces(ctx, npNamespaces...); err != nil {
		return nil, err
	}
	for _, ns := range npNamespaces {
		obj, err := l.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		sys := maps.Clone(obj.Labels)
		delete(sys, "ns")
		c.sysLabel[ns] = sys
		base.NSLabels[ns] = c.nsLabels(ns, map[string]string{"ns": ns})
	}
	nodes := l.Nodes()
	var keys []types.NamespacedName
	for i, ns := range npNamespaces {
		for j, name := range npPodNames {
			p := &npPod{Key: types.NamespacedName{Namespace: ns, Name: name}, Node: nodes[(i+j)%len(nodes)].Name,
				Labels: map[string]string{"pod": name}, Ports: npServedPorts()}
			err := l.CreatePod(ctx, lab.PodSpec{Namespace: ns, Name: name, Node: p.Node, Labels: podLabels(p), Ports: p.Ports})
			if err != nil {
				return nil, err
			}
			base.Pods = append(base.Pods, p)
			keys = append(keys, p.Key)
		}
	}
	ips, err := l.WaitPodsRunning(ctx, 3*time.Minute, keys...)
	if err != nil {
		return nil, err
	}
	for _, p := range base.Pods {
		p.IP = ips[p.Key]
	}
	c.ips, c.base, c.cur = ips, base, base.clone()
	if err := c.createServices(ctx, servicePorts); err != nil {
		return nil, err
	}
	return c, nil
}

// nsLabels is the full label set of a namespace whose own labels are mine
// (the lab's name=<ns> and kubernetes.io/metadata.name stay).
func (c *npCluster) nsLabels(ns string, mine map[string]string) map[string]string {
	out := maps.Clone(c.sysLabel[ns])
	maps.Copy(out, mine)
	return out
}

func (s *npState) clone() *npState {
	out := &npState{NSLabels: map[string]map[string]string{}, Policies: append([]*networkingv1.NetworkPolicy(nil), s.Policies...)}
	for k, v := range s.NSLabels {
		out.NSLabels[k] = maps.Clone(v)
	}
	for _, p := range s.Pods {
		cp := *p
		cp.Labels = maps.Clone(p.Labels)
		out.Pods = append(out.Pods, &cp)
	}
	return out
}

// podKeys lists the pods in table order (x/a … z/c).
func (c *npCluster) podKeys() []types.NamespacedName {
	var out []types.NamespacedName
	for _, p := range c.base.Pods {
		out = append(out, p.Key)
	}
	return out
}

func (c *npCluster) nodeOf(k types.NamespacedName) string { return c.base.pod(k).Node }

// cells is the probe set: every pod to every pod, for each port and
// protocol, to the pod's IP and through its Service (if the pods have
// Services).
func (c *npCluster) cells(protos []corev1.Protocol, ports []uint16) []npCell {
	var out []npCell
	for _, svc := range []bool{false, true} {
		if svc && len(c.vips) == 0 {
			break
		}
		for _, proto := range protos {
			for _, port := range ports {
				for _, from := range c.podKeys() {
					for _, to := range c.podKeys() {
						out = append(out, npCell{From: from, To: to, Port: port, Proto: proto, Service: svc})
					}
				}
			}
		}
	}
	return out
}

// apply makes the API hold want: namespace and pod labels patched where they
// differ, policies created, updated or deleted.
func (c *npCluster) apply(ctx context.Context, want *npState) error {
	for _, ns := range npNamespaces {
		if patch := labelPatch(c.cur.NSLabels[ns], want.NSLabels[ns]); patch != nil {
			if _, err := c.l.Kube.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				return fmt.Errorf("labelling namespace %s: %w", ns, err)
			}
		}
	}
	for _, p := range want.Pods {
		if patch := labelPatch(c.cur.pod(p.Key).Labels, p.Labels); patch != nil {
			if _, err := c.l.Kube.CoreV1().Pods(p.Key.Namespace).Patch(ctx, p.Key.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				return fmt.Errorf("labelling pod %s: %w", p.Key, err)
			}
		}
	}
	have := map[types.NamespacedName]*networkingv1.NetworkPolicy{}
	for _, p := range c.cur.Policies {
		have[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}] = p
	}
	for _, p := range want.Policies {
		k := types.NamespacedName{Namespace: p.Namespace, Name: p.Name}
		old, ok := have[k]
		delete(have, k)
		api := c.l.Kube.NetworkingV1().NetworkPolicies(p.Namespace)
		switch {
		case !ok:
			if _, err := api.Create(ctx, p, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("creating policy %s: %w", k, err)
			}
		case !reflect.DeepEqual(old.Spec, p.Spec):
			obj, err := api.Get(ctx, p.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			obj.Spec = *p.Spec.DeepCopy()
			if _, err := api.Update(ctx, obj, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("updating policy %s: %w", k, err)
			}
		}
	}
	for k := range have {
		err := c.l.Kube.NetworkingV1().NetworkPolicies(k.Namespace).Delete(ctx, k.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting policy %s: %w", k, err)
		}
	}
	c.cur = want
	return nil
}

// labelPatch is a JSON merge patch from labels have to want (nil if equal).
func labelPatch(have, want map[string]string) []byte {
	if maps.Equal(have, want) {
		return nil
	}
	set := map[string]any{}
	for k := range have {
		if _, ok := want[k]; !ok {
			set[k] = nil
		}
	}
	for k, v := range want {
		set[k] = v
	}
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": set}})
	return b
}

// probe probes the cells in parallel (c.workers at a time), each a new
// connection with c.timeout.
func (c *npCluster) probe(ctx context.Context, cells []npCell) map[npCell]npResult {
	return c.probeWith(ctx, cells, c.timeout)
}

// probeWith probes cells in parallel: every cell to a pod IP at once, SCTP
// included, both directions of every pair in the same batch and no
// conntrack flush. On the userspace datapath SCTP is never committed and
// its replies are recognised by exact-5-tuple learned flows (tables 28 and
// 82), so a probe A → B makes no later B → A look like a reply.
//
// The SCTP cells through Services go last, in two batches that never hold
// both directions of one pod pair, each after the Services' own SCTP
// entries are flushed. That is a limit of Services on OVS 3.1's userspace
// datapath, not of the policy: its conntrack keys SCTP by addresses only,
// so a DNATed association A → B's Service holds the reply tuple B → A
// (address-only) that another A ↔ B association would need, and the NAT
// cannot pick another port to tell them apart (docs/services.md, "Services:
// SCTP"). The flush removes only entries to the Services' addresses (and
// the SNAT zone's, for a pod reaching itself): to pod IPs there are none.
func (c *npCluster) probeWith(ctx context.Context, cells []npCell, timeout time.Duration) map[npCell]npResult {
	var main []npCell
	viaService := map[bool][]npCell{}
	for _, cell := range cells {
		if cell.Proto != corev1.ProtocolSCTP || !cell.Service {
			main = append(main, cell)
			continue
		}
		reverse := cell.From.String() >= cell.To.String()
		viaService[reverse] = append(viaService[reverse], cell)
	}
	c.flushServiceSCTPConntrack() // the previous matrix's, which the next batch could meet
	out := c.probeBatch(ctx, main, timeout)
	for _, reverse := range []bool{false, true} {
		if len(viaService[reverse]) == 0 {
			continue
		}
		c.flushServiceSCTPConntrack()
		maps.Copy(out, c.probeBatch(ctx, viaService[reverse], timeout))
	}
	return out
}

// flushServiceSCTPConntrack removes the SCTP connection entries to the
// Services' addresses on every lab node (zone 0), and the SNAT zone's SCTP
// entries (a pod reaching itself through its Service).
func (c *npCluster) flushServiceSCTPConntrack() {
	for _, n := range c.l.Nodes() {
		// A failure leaves stale entries, which shows up as mismatching
		// cells with the conntrack dump in the report.
		for _, vip := range c.vips {
			_, _ = n.Net.Appctl("dpctl/flush-conntrack", "zone=0", "ct_nw_proto=132,ct_nw_dst="+vip.String())
		}
		_, _ = n.Net.Appctl("dpctl/flush-conntrack", fmt.Sprintf("zone=%d", ovs.SNATZone), "ct_nw_proto=132")
	}
}

func (c *npCluster) probeBatch(ctx context.Context, cells []npCell, timeout time.Duration) map[npCell]npResult {
	out := make(map[npCell]npResult, len(cells))
	var mu sync.Mutex
	work := make(chan npCell)
	var wg sync.WaitGroup
	for range min(c.workers, len(cells)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for cell := range work {
				r := c.probeCell(ctx, cell, timeout)
				mu.Lock()
				out[cell] = r
				mu.Unlock()
			}
		}()
	}
	for _, cell := range cells {
		work <- cell
	}
	close(work)
	wg.Wait()
	return out
}

// mismatches lists the cells whose probe differs from want.
func mismatches(want npExpectation, got map[npCell]npResult) []npCell {
	var bad []npCell
	for cell, w := range want {
		if r, ok := got[cell]; ok && (r.Err != nil || r.Outcome != w) {
			bad = append(bad, cell)
		}
	}
	sort.Slice(bad, func(i, j int) bool { return bad[i].String() < bad[j].String() })
	return bad
}

func outcomeMark(o kubelet.Outcome) string {
	switch o {
	case kubelet.Connected:
		return "."
	case kubelet.Refused:
		return "R"
	case kubelet.TimedOut:
		return "X"
	}
	return "?"
}

var protoOrder = map[corev1.Protocol]int{corev1.ProtocolTCP: 0, corev1.ProtocolUDP: 1, corev1.ProtocolSCTP: 2}

// renderMatrices prints, for each protocol and port, to pod IPs and through
// Services, the expected and the probed matrix side by side; a probed cell
// that differs is followed by "!".
func (c *npCluster) renderMatrices(w io.Writer, want npExpectation, got map[npCell]npResult) {
	type pp struct {
		proto   corev1.Protocol
		port    uint16
		service bool
	}
	seen := map[pp]bool{}
	var groups []pp
	for cell := range want {
		if g := (pp{cell.Proto, cell.Port, cell.Service}); !seen[g] {
			seen[g] = true
			groups = append(groups, g)
		}
	}
	sort.Slice(groups, func(i, j int) bool {
		a, b := groups[i], groups[j]
		switch {
		case a.service != b.service:
			return !a.service
		case a.proto != b.proto:
			return protoOrder[a.proto] < protoOrder[b.proto]
		}
		return a.port < b.port
	})
	keys := c.podKeys()
	fmt.Fprintln(w, "    . connected   X dropped (timeout)   R refused   ? error   ! differs from expected")
	for _, g := range groups {
		via := "pod IPs"
		if g.service {
			via = "through the Services"
		}
		fmt.Fprintf(w, "    %s/%d, %s\n", g.proto, g.port, via)
		var hdr strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&hdr, "%-4s", k.String())
		}
		fmt.Fprintf(w, "    %-5s expected: %s  probed: %s\n", "", hdr.String(), hdr.String())
		for _, from := range keys {
			var e, p strings.Builder
			for _, to := range keys {
				cell := npCell{From: from, To: to, Port: g.port, Proto: g.proto, Service: g.service}
				fmt.Fprintf(&e, "%-4s", outcomeMark(want[cell]))
				r := got[cell]
				mark := outcomeMark(r.Outcome)
				if r.Err != nil {
					mark = "?"
				}
				if r.Err != nil || r.Outcome != want[cell] {
					mark += "!"
				}
				fmt.Fprintf(&p, "%-4s", mark)
			}
			fmt.Fprintf(w, "    %-5s           %s          %s\n", from.String(), e.String(), p.String())
		}
	}
	for _, cell := range mismatches(want, got) {
		if err := got[cell].Err; err != nil {
			fmt.Fprintf(w, "    %s: %v\n", cell, err)
		}
	}
}

// spread picks up to n cells, preferring ones whose (source node,
// destination node) pair is not covered yet, so that a wait on them sees
// every node's agent.
func (c *npCluster) spread(cells []npCell, n int) []npCell {
	var out []npCell
	used := map[npCell]bool{}
	covered := map[[2]string]bool{}
	dsts := map[string]bool{}
	for pass := 0; pass < 3 && len(out) < n; pass++ {
		for _, cell := range cells {
			if len(out) >= n {
				break
			}
			if used[cell] {
				continue
			}
			pair := [2]string{c.nodeOf(cell.From), c.nodeOf(cell.To)}
			ok := pass == 2 || (pass == 0 && !dsts[pair[1]]) || (pass == 1 && !covered[pair])
			if ok {
				used[cell], covered[pair], dsts[pair[1]] = true, true, true
				out = append(out, cell)
			}
		}
	}
	return out
}
