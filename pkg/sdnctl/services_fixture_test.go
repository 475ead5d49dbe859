package sdnctl

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
	"github.com/ovs-sdn/ovs-sdn/pkg/proxy"
)

// Service fixtures: API objects (a Service and its EndpointSlice) and the
// flows and groups a node's agent programs for them, converted by
// proxy.Build and rendered by proxy.Render as the agent does, so that what
// sdnctl reads from the fake API and from the bridge agree.

// fxEndpoint is a ready endpoint of a fixture Service.
type fxEndpoint struct{ ip, node string }

// fxService is a one-port Service: ClusterIP ip, port → target, an optional
// node port (type NodePort, externalTrafficPolicy Cluster) and sessionAffinity
// ClientIP with a timeout when affinity > 0.
type fxService struct {
	ns, name, ip           string
	proto                  corev1.Protocol
	port, target, nodePort int32
	affinity               int32
	eps                    []fxEndpoint
}

func (s fxService) service() *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: s.name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: s.ip, ClusterIPs: []string{s.ip},
			Ports: []corev1.ServicePort{{Name: "p", Protocol: s.proto, Port: s.port, TargetPort: intstr.FromInt32(s.target), NodePort: s.nodePort}}},
	}
	if s.nodePort > 0 {
		svc.Spec.Type = corev1.ServiceTypeNodePort
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	}
	if s.affinity > 0 {
		timeout := s.affinity
		svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		svc.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}}
	}
	return svc
}

func (s fxService) slice() *discoveryv1.EndpointSlice {
	name, proto, port := "p", s.proto, s.target
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: s.ns, Name: s.name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: s.name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Protocol: &proto, Port: &port}},
	}
	for _, e := range s.eps {
		node, ready := e.node, true
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{e.ip}, NodeName: &node,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	return es
}

// serviceObjects are the Services and EndpointSlices of svcs, for a fake API.
func serviceObjects(svcs []fxService) []runtime.Object {
	var out []runtime.Object
	for _, s := range svcs {
		out = append(out, s.service(), s.slice())
	}
	return out
}

// serviceState is what the agent of node programs for svcs: one Render per
// Service over the ports proxy.Build converts, IDs from proxy.AssignIDs.
func serviceState(t testing.TB, c pipeline.FlowConfig, node string, svcs []fxService) ([]ovs.Flow, []ovs.GroupEntry) {
	t.Helper()
	src := proxy.Sources{Node: node}
	for _, s := range svcs {
		src.Services, src.Slices = append(src.Services, s.service()), append(src.Slices, s.slice())
	}
	ports, errs := proxy.Build(src)
	if len(errs) > 0 {
		t.Fatalf("proxy.Build: %v", errs)
	}
	proxy.AssignIDs(ports, nil)
	byService := map[string][]proxy.ServicePort{}
	var order []string
	for _, p := range ports {
		key := p.Namespace + "/" + p.Name
		if byService[key] == nil {
			order = append(order, key)
		}
		byService[key] = append(byService[key], p)
	}
	var flows []ovs.Flow
	var groups []ovs.GroupEntry
	for _, key := range order {
		f, g := proxy.Render(c, byService[key])
		flows, groups = append(flows, f...), append(groups, g...)
	}
	return flows, groups
}

// The Services of the flows scenario (node1, multitenant; see flows_test.go):
// proj1/web has a local and a remote endpoint and a node port, proj1/sticky
// (UDP: multipath, no group) session affinity, proj2/empty no endpoint (so
// no flows).
var fxFlowsServices = []fxService{
	{ns: "proj1", name: "web", ip: "172.30.0.10", proto: corev1.ProtocolTCP, port: 80, target: 8080, nodePort: 30080,
		eps: []fxEndpoint{{fxServer.IP.String(), "node1"}, {"10.128.2.7", "node2"}}},
	{ns: "proj1", name: "sticky", ip: "172.30.0.11", proto: corev1.ProtocolUDP, port: 53, target: 5353, affinity: 60,
		eps: []fxEndpoint{{fxServer.IP.String(), "node1"}}},
	{ns: "proj2", name: "empty", ip: "172.30.0.12", proto: corev1.ProtocolTCP, port: 80, target: 80},
}

// flowsServicesScenario is the flows scenario with fxFlowsServices, and the
// flow OVS learns when proj1/client-1 first reaches proj1/sticky (computed
// by the tracer from the learn action; it is added to the bridge by hand,
// since the agent never installs learned flows).
func flowsServicesScenario(t testing.TB) (flows []ovs.Flow, groups []ovs.GroupEntry, learned ovs.Flow) {
	t.Helper()
	svcFlows, groups := serviceState(t, fxFlowsConfig, "node1", fxFlowsServices)
	flows = append(flowsScenario(), svcFlows...)
	tr, err := ovs.TraceWithGroups(flows, groups, ovs.Packet{InPort: fxClient.OFPort, Proto: ovs.ProtoUDP,
		Src: fxClient.IP, Dst: netip.MustParseAddr("172.30.0.11"), TpSrc: 40000, TpDst: 53})
	if err != nil || len(tr.Learned) != 1 {
		t.Fatalf("client-1 to proj1/sticky: learned %v, %v\n%s", tr.Learned, err, tr)
	}
	return flows, groups, tr.Learned[0]
}
