package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// Sources are the API objects one node's Services read.
type Sources struct {
	// Node is the node rendered for: its endpoints are Local.
	Node     string
	Services []*corev1.Service
	Slices   []*discoveryv1.EndpointSlice
}

// ServiceError reports a Service, or one of its ports, that the node cannot
// program: it gets no flows (the Service's other ports still do), and the
// agent reports it with an Event.
type ServiceError struct {
	Namespace, Name string
	Err             error
}

func (e *ServiceError) Error() string {
	return fmt.Sprintf("service %s/%s: %v", e.Namespace, e.Name, e.Err)
}

func (e *ServiceError) Unwrap() error { return e.Err }

// DefaultAffinityTimeout is Kubernetes' default sessionAffinity ClientIP
// timeout (10800 s).
const DefaultAffinityTimeout = 3 * time.Hour

// Build converts s into the node's service ports, sorted by key, with IDs
// still unassigned (AssignIDs), and the errors of the Services it cannot
// program. Headless Services and Services without a ClusterIP are skipped
// without error (they get no flows); so are endpoints that are not ready,
// terminating, or not IPv4.
func Build(s Sources) ([]ServicePort, []*ServiceError) {
	slicesOf := map[string][]*discoveryv1.EndpointSlice{}
	for _, es := range s.Slices {
		name := es.Labels[discoveryv1.LabelServiceName]
		if name == "" || es.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		key := es.Namespace + "/" + name
		slicesOf[key] = append(slicesOf[key], es)
	}
	var ports []ServicePort
	var errs []*ServiceError
	for _, svc := range s.Services {
		p, err := servicePorts(svc, slicesOf[svc.Namespace+"/"+svc.Name], s.Node)
		ports = append(ports, p...)
		for _, e := range err {
			errs = append(errs, &ServiceError{Namespace: svc.Namespace, Name: svc.Name, Err: e})
		}
	}
	slices.SortFunc(ports, func(a, b ServicePort) int { return strings.Compare(a.Key(), b.Key()) })
	return ports, errs
}

// servicePorts converts one Service.
func servicePorts(svc *corev1.Service, eps []*discoveryv1.EndpointSlice, node string) ([]ServicePort, []error) {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, []error{errors.New("type ExternalName is answered by the cluster DNS, not load-balanced: no flows")}
	}
	vip, err := clusterIPv4(svc)
	if err != nil || !vip.IsValid() {
		return nil, errsOf(err)
	}
	base := ServicePort{Namespace: svc.Namespace, Name: svc.Name, ClusterIP: vip,
		InternalLocal: svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal,
		ExternalLocal: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal}
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		base.AffinityTimeout = DefaultAffinityTimeout
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			base.AffinityTimeout = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
		}
	}
	var out []ServicePort
	var errs []error
	for i, sp := range svc.Spec.Ports {
		p, err := servicePort(base, sp, eps, node)
		if err != nil {
			errs = append(errs, fmt.Errorf("spec.ports[%d]: %w", i, err))
			continue
		}
		out = append(out, p)
	}
	return out, errs
}

// clusterIPv4 returns the Service's IPv4 cluster IP; the zero Addr (and no
// error) for a headless Service or one without a cluster IP.
func clusterIPv4(svc *corev1.Service) (netip.Addr, error) {
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	if len(ips) == 0 || ips[0] == corev1.ClusterIPNone {
		return netip.Addr{}, nil
	}
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("spec.clusterIPs %v: no IPv4 address (ovs-sdn is IPv4-only): no flows", ips)
}

var protocols = map[corev1.Protocol]ovs.Proto{
	corev1.ProtocolTCP: ovs.ProtoTCP, corev1.ProtocolUDP: ovs.ProtoUDP, corev1.ProtocolSCTP: ovs.ProtoSCTP,
}

func servicePort(base ServicePort, sp corev1.ServicePort, eps []*discoveryv1.EndpointSlice, node string) (ServicePort, error) {
	proto := sp.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	p := base
	var ok bool
	if p.Protocol, ok = protocols[proto]; !ok {
		return ServicePort{}, fmt.Errorf("protocol %q is not TCP, UDP or SCTP", proto)
	}
	if sp.Port < 1 || sp.Port > 65535 {
		return ServicePort{}, fmt.Errorf("port %d is out of range", sp.Port)
	}
	p.PortName, p.Port = sp.Name, uint16(sp.Port)
	if sp.NodePort > 0 && sp.NodePort < 65536 {
		p.NodePort = uint16(sp.NodePort)
	}
	p.Endpoints = endpoints(eps, sp.Name, proto, node)
	return p, nil
}

// endpoints collects the ready, non-terminating IPv4 endpoints of the slices
// for the port called name with protocol proto.
func endpoints(eps []*discoveryv1.EndpointSlice, name string, proto corev1.Protocol, node string) []Endpoint {
	var out []Endpoint
	for _, es := range eps {
		port, ok := slicePort(es, name, proto)
		if !ok {
			continue
		}
		for _, ep := range es.Endpoints {
			if !usable(ep.Conditions) {
				continue
			}
			local := ep.NodeName != nil && *ep.NodeName == node
			for _, a := range ep.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil && ip.Is4() {
					out = append(out, Endpoint{IP: ip, Port: port, Local: local})
				}
			}
		}
	}
	slices.SortFunc(out, compareEndpoints)
	return slices.CompactFunc(out, func(a, b Endpoint) bool { return compareEndpoints(a, b) == 0 })
}

func slicePort(es *discoveryv1.EndpointSlice, name string, proto corev1.Protocol) (uint16, bool) {
	for _, p := range es.Ports {
		pn, pp := "", corev1.ProtocolTCP
		if p.Name != nil {
			pn = *p.Name
		}
		if p.Protocol != nil {
			pp = *p.Protocol
		}
		if pn == name && pp == proto && p.Port != nil && *p.Port > 0 && *p.Port < 65536 {
			return uint16(*p.Port), true
		}
	}
	return 0, false
}

// usable: ready (nil means ready, as the API documents) and not
// terminating. Terminating endpoints get no new connections.
func usable(c discoveryv1.EndpointConditions) bool {
	return (c.Ready == nil || *c.Ready) && (c.Terminating == nil || !*c.Terminating)
}

func errsOf(err error) []error {
	if err == nil {
		return nil
	}
	return []error{err}
}
