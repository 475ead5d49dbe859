package sdnctl

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// `sdnctl trace` to a Service: which DST names a Service (resolution here),
// and the trace itself (trace_service_run.go).
//
// Why not ofproto/trace: OVS's tracer cannot choose a bucket of a select
// group. On OVS 3.1 a select group with the default dp_hash method ends the
// trace at "hash(sym_l4(0)),recirc(…)" ("no live bucket"), so the endpoint,
// the DNAT and everything after them stay unknown. sdnctl therefore dumps
// the entry node's flows and groups and runs pkg/ovs's tracer
// (ovs.TraceWithGroups) over them, once per bucket: the path is computed
// from the very flows and groups the bridge holds, not from the API. Only
// the halves on other nodes (plain pod traffic after DNAT) use ofproto/trace.

// serviceDst is a DST that names a Service port: through its ClusterIP, or
// through a node's address and the port's node port.
type serviceDst struct {
	svc   *corev1.Service
	port  corev1.ServicePort
	proto ovs.Proto
	// addr is what the client connects to: ClusterIP:port or nodeIP:nodePort.
	addr netip.AddrPort
	// node is the node whose address a node port is reached on ("" for a ClusterIP).
	node string
}

func (s *serviceDst) name() string { return s.svc.Namespace + "/" + s.svc.Name }

func (s *serviceDst) nodePort() bool { return s.node != "" }

// describe is the "destination:" line.
func (s *serviceDst) describe() string {
	port := s.port.Name
	if port == "" {
		port = strconv.Itoa(int(s.port.Port))
	}
	if s.nodePort() {
		return fmt.Sprintf("service %s port %s, node port %d/%s on node %s (%s)", s.name(), port, s.addr.Port(), s.proto, s.node, s.addr.Addr())
	}
	return fmt.Sprintf("service %s port %s, ClusterIP %s/%s", s.name(), port, s.addr, s.proto)
}

// loadServices lists the Services and EndpointSlices a Service trace reads.
func (v *apiView) loadServices(ctx context.Context, c *cli) error {
	clients, err := c.Clients()
	if err != nil {
		return err
	}
	svcs, err := clients.Kube.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing services: %w", err)
	}
	for i := range svcs.Items {
		v.services = append(v.services, &svcs.Items[i])
	}
	eps, err := clients.Kube.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing endpointslices: %w", err)
	}
	for i := range eps.Items {
		v.endpointSlices = append(v.endpointSlices, &eps.Items[i])
	}
	return nil
}

// serviceDst resolves arg ("IP" or "IP:PORT") to a Service port, or returns
// nil when arg names no Service (a pod, or another address). IP:PORT must
// name one (a ClusterIP, or a node address and a node port); a node address
// with --port is a node port only when some Service holds that port.
func (v *apiView) serviceDst(arg string, o *traceOptions) (*serviceDst, error) {
	addr, port, inArg := splitAddrPort(arg)
	if !addr.IsValid() {
		return nil, nil
	}
	if inArg && o.portSet && port != o.port {
		return nil, fmt.Errorf("%s names port %d, --port %d: give one", arg, port, o.port)
	}
	hasPort := inArg || o.portSet
	if !inArg {
		port = o.port
	}
	for _, svc := range v.services {
		if slices.Contains(clusterIPs(svc), addr.String()) {
			return v.clusterIPDst(svc, addr, port, hasPort, o)
		}
	}
	hs, isNode := v.nodeByIP(addr)
	switch {
	case isNode && inArg:
		return v.nodePortDst(hs.Host, addr, port, o)
	case isNode && o.portSet && v.holdsNodePort(port):
		return v.nodePortDst(hs.Host, addr, port, o)
	case inArg:
		return nil, fmt.Errorf("%s: no Service has ClusterIP %s, and %s is no node's address with a node port", arg, addr, addr)
	}
	// A pod or another address: --port is its port.
	return nil, nil
}

// holdsNodePort reports whether some Service has node port port.
func (v *apiView) holdsNodePort(port uint16) bool {
	for _, svc := range v.services {
		if slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.NodePort == int32(port) }) {
			return true
		}
	}
	return false
}

// splitAddrPort parses "IP" or "IP:PORT"; addr is invalid for anything else.
func splitAddrPort(arg string) (addr netip.Addr, port uint16, hasPort bool) {
	if ap, err := netip.ParseAddrPort(arg); err == nil {
		return ap.Addr().Unmap(), ap.Port(), true
	}
	if a, err := netip.ParseAddr(arg); err == nil {
		return a.Unmap(), 0, false
	}
	return netip.Addr{}, 0, false
}

func clusterIPs(svc *corev1.Service) []string {
	if len(svc.Spec.ClusterIPs) > 0 {
		return svc.Spec.ClusterIPs
	}
	return []string{svc.Spec.ClusterIP}
}

// clusterIPDst picks the Service port: the one with port (and --protocol,
// when given); without a port, the Service's only port.
func (v *apiView) clusterIPDst(svc *corev1.Service, addr netip.Addr, port uint16, hasPort bool, o *traceOptions) (*serviceDst, error) {
	cands := slices.DeleteFunc(slices.Clone(svc.Spec.Ports), func(p corev1.ServicePort) bool {
		return hasPort && uint16(p.Port) != port || o.protocolSet && !strings.EqualFold(string(protocolOf(p)), o.protocol)
	})
	if len(cands) > 1 && !o.protocolSet {
		// One port number over several protocols: the --protocol default, TCP.
		cands = slices.DeleteFunc(cands, func(p corev1.ServicePort) bool { return protocolOf(p) != corev1.ProtocolTCP })
	}
	name := svc.Namespace + "/" + svc.Name
	switch {
	case len(cands) == 0 && hasPort:
		return nil, fmt.Errorf("service %s (ClusterIP %s) has no port %d%s: its ports are %s", name, addr, port, protoWords(o), servicePorts(svc))
	case len(cands) == 0:
		return nil, fmt.Errorf("service %s (ClusterIP %s) has no %s port: its ports are %s", name, addr, strings.ToUpper(o.protocol), servicePorts(svc))
	case len(cands) > 1:
		return nil, fmt.Errorf("service %s has several ports (%s): give one with --port or %s:PORT", name, servicePorts(svc), addr)
	}
	return newServiceDst(svc, cands[0], netip.AddrPortFrom(addr, uint16(cands[0].Port)), "")
}

// nodePortDst finds the Service port holding node port port on a node's address.
func (v *apiView) nodePortDst(node string, addr netip.Addr, port uint16, o *traceOptions) (*serviceDst, error) {
	var found []*serviceDst
	for _, svc := range v.services {
		for _, p := range svc.Spec.Ports {
			if p.NodePort == int32(port) && (!o.protocolSet || strings.EqualFold(string(protocolOf(p)), o.protocol)) {
				sd, err := newServiceDst(svc, p, netip.AddrPortFrom(addr, port), node)
				if err != nil {
					return nil, err
				}
				found = append(found, sd)
			}
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("no Service has node port %d%s (the host of node %s refuses it)", port, protoWords(o), node)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("node port %d is held by %d Service ports (TCP and UDP?): give --protocol", port, len(found))
}

func newServiceDst(svc *corev1.Service, p corev1.ServicePort, addr netip.AddrPort, node string) (*serviceDst, error) {
	proto, ok := map[corev1.Protocol]ovs.Proto{corev1.ProtocolTCP: ovs.ProtoTCP, corev1.ProtocolUDP: ovs.ProtoUDP, corev1.ProtocolSCTP: ovs.ProtoSCTP}[protocolOf(p)]
	if !ok {
		return nil, fmt.Errorf("service %s/%s port %d: protocol %q is not TCP, UDP or SCTP", svc.Namespace, svc.Name, p.Port, p.Protocol)
	}
	return &serviceDst{svc: svc, port: p, proto: proto, addr: addr, node: node}, nil
}

func protocolOf(p corev1.ServicePort) corev1.Protocol {
	if p.Protocol == "" {
		return corev1.ProtocolTCP
	}
	return p.Protocol
}

func protoWords(o *traceOptions) string {
	if o.protocolSet {
		return "/" + strings.ToUpper(o.protocol)
	}
	return ""
}

// servicePorts is "80/TCP, 53/UDP".
func servicePorts(svc *corev1.Service) string {
	var out []string
	for _, p := range svc.Spec.Ports {
		out = append(out, fmt.Sprintf("%d/%s", p.Port, protocolOf(p)))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// slicesOf are the EndpointSlices of svc.
func (v *apiView) slicesOf(svc *corev1.Service) []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	for _, es := range v.endpointSlices {
		if es.Namespace == svc.Namespace && es.Labels[discoveryv1.LabelServiceName] == svc.Name {
			out = append(out, es)
		}
	}
	return out
}

// nodeOfIP is the node whose subnet holds ip ("" when none).
func (v *apiView) nodeOfIP(ip netip.Addr) string {
	for _, hs := range v.subnets {
		if p, err := netip.ParsePrefix(hs.Subnet); err == nil && p.Contains(ip) {
			return hs.Host
		}
	}
	return ""
}

// entryPacket is the packet at br0's door of the entry node: from the
// source pod's port to the ClusterIP, or from tun0 to the node-port address
// once the host has DNATed the node port.
func (s *serviceDst) entryPacket(src endpoint, inPort uint32) ovs.Packet {
	p := ovs.Packet{InPort: inPort, Proto: s.proto, Src: src.ip, Dst: s.addr.Addr(), TpSrc: 40000, TpDst: s.addr.Port()}
	if src.pod != nil && !s.nodePort() {
		p.SrcMAC = pipeline.PodMAC(src.ip)
	}
	if s.nodePort() {
		p.InPort, p.Dst = pipeline.OFPortTun0, pipeline.NodePortVIP
	}
	return p
}
