package e2e

// The truth-table Services: as the upstream e2e framework does, every pod
// gets its own ClusterIP Service (same namespace and name as the pod),
// whose EndpointSlice kube-controller-manager writes from a selector, and
// every cell of a scenario's matrix is probed twice, at the pod's IP and at
// its Service's ClusterIP (npCell.Service). The datapath DNATs a Service
// connection to the pod before NetworkPolicy applies (SPEC §4.5), so the
// reference model's verdict is the same for both: connected, refused by the
// pod, or dropped silently (a timeout, never a reset from the proxy).

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/kubelet"
)

// npServiceLabel is what the per-pod Services select, with the pod's name as
// value. It is not pod=<name> because scenarios relabel pods (x/a becomes
// pod=aa), which must not take a pod out of its own Service; it is not in
// the model's labels (no policy selects on it), and apply's merge patches
// touch only the model's keys, so it stays on the pod throughout.
const npServiceLabel = "netpol-e2e/service"

// servicesReadyWithin bounds the wait for every Service to reach its pod
// from every node.
const servicesReadyWithin = 2 * time.Minute

// npServicePorts are the ports of every per-pod Service: each (protocol,
// port) some scenario probes, so that every cell has a Service twin. A port
// the pod does not serve (82) is a Service port too, targeting the same
// port on the pod: through the Service it must be refused by the pod after
// DNAT (or dropped, when denied), exactly as at the pod's IP.
func npServicePorts(scenarios []npScenario) []corev1.ServicePort {
	seen := map[string]bool{}
	var out []corev1.ServicePort
	for _, sc := range scenarios {
		for _, proto := range sc.protos() {
			for _, port := range sc.ports() {
				name := fmt.Sprintf("%s-%d", strings.ToLower(string(proto)), port)
				if seen[name] {
					continue
				}
				seen[name] = true
				out = append(out, corev1.ServicePort{Name: name, Protocol: proto, Port: int32(port),
					TargetPort: intstr.FromInt32(int32(port))})
			}
		}
	}
	slices.SortFunc(out, func(a, b corev1.ServicePort) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// podLabels are the labels a truth-table pod is created with: the model's,
// plus the selector label of its Service.
func podLabels(p *npPod) map[string]string {
	out := maps.Clone(p.Labels)
	out[npServiceLabel] = p.Key.Name
	return out
}

// createServices creates one ClusterIP Service per pod, then waits until
// kube-controller-manager has put each pod in its Service's EndpointSlice
// and every node forwards each Service to its pod. Without ports it creates
// none.
func (c *npCluster) createServices(ctx context.Context, ports []corev1.ServicePort) error {
	c.vips = map[types.NamespacedName]netip.Addr{}
	if len(ports) == 0 {
		return nil
	}
	for _, p := range c.base.Pods {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: p.Key.Namespace, Name: p.Key.Name},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: ports,
				Selector: map[string]string{npServiceLabel: p.Key.Name}}}
		got, err := c.l.Kube.CoreV1().Services(p.Key.Namespace).Create(ctx, svc, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating Service %s: %w", p.Key, err)
		}
		vip, err := netip.ParseAddr(got.Spec.ClusterIP)
		if err != nil {
			return fmt.Errorf("Service %s: spec.clusterIP %q: %w", p.Key, got.Spec.ClusterIP, err)
		}
		c.vips[p.Key] = vip
	}
	for _, p := range c.base.Pods {
		if err := c.waitEndpointSlice(ctx, p); err != nil {
			return err
		}
	}
	return c.waitServicesForward(ctx)
}

// waitEndpointSlice waits until the EndpointSlice of p's Service lists p's
// address, ready.
func (c *npCluster) waitEndpointSlice(ctx context.Context, p *npPod) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, servicesReadyWithin, true, func(ctx context.Context) (bool, error) {
		l, err := c.l.Kube.DiscoveryV1().EndpointSlices(p.Key.Namespace).List(ctx,
			metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + p.Key.Name})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		for _, es := range l.Items {
			for _, ep := range es.Endpoints {
				ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
				if ready && slices.Contains(ep.Addresses, p.IP.String()) {
					return true, nil
				}
			}
		}
		last = fmt.Sprintf("%d slices, none with %s ready", len(l.Items), p.IP)
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("EndpointSlice of Service %s: %v (%s)", p.Key, err, last)
	}
	return nil
}

// waitServicesForward waits until a pod on each node reaches every Service
// (TCP, the first served port): each node's agent has programmed them all.
func (c *npCluster) waitServicesForward(ctx context.Context) error {
	var cells []npCell
	for _, from := range c.podKeys()[:len(c.l.Nodes())] { // x/a, x/b, x/c: one per node
		for _, to := range c.podKeys() {
			cells = append(cells, npCell{From: from, To: to, Port: 80, Proto: corev1.ProtocolTCP, Service: true})
		}
	}
	exp := c.base.expectAll(cells)
	_, bad := c.waitCells(ctx, cells, exp, servicesReadyWithin)
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d Service probes still fail after %v, e.g. %s", len(bad), len(cells), servicesReadyWithin, bad[0])
	}
	return nil
}

// target is where a cell's probe goes: the pod's IP, or its Service's
// ClusterIP. via tells the SCTP witness where the INIT arrives after DNAT
// (the pod, same port) and from whom: the client's own address, except for
// a pod reaching itself through its Service, which the datapath SNATs to
// its node's gateway (hairpin).
func (c *npCluster) target(cell npCell) (netip.AddrPort, kubelet.Via) {
	ep := netip.AddrPortFrom(c.ips[cell.To], cell.Port)
	if !cell.Service {
		return ep, kubelet.Via{}
	}
	src := c.ips[cell.From]
	if cell.From == cell.To {
		subnet, _ := src.Prefix(32 - lab.HostSubnetLength)
		src = subnet.Addr().Next()
	}
	return netip.AddrPortFrom(c.vips[cell.To], cell.Port), kubelet.Via{Endpoint: ep, Source: src}
}

// probeCell probes one cell with a new connection. A Service answered by
// another pod than its own is an error.
func (c *npCluster) probeCell(ctx context.Context, cell npCell, timeout time.Duration) npResult {
	to, via := c.target(cell)
	r, err := c.l.Kubelets.ProbeVia(ctx, cell.From, to, cell.Proto, timeout, via)
	if err == nil && cell.Service && r.Reply != "" && r.Reply != cell.To.Name {
		err = fmt.Errorf("Service %s answered by pod %q", cell.To, r.Reply)
	}
	return npResult{Outcome: r.Outcome, Err: err}
}
