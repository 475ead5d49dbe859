package proxy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

func svc(ns, name, ip string, ports ...corev1.ServicePort) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: ip, Ports: ports}}
	if ip != "" {
		s.Spec.ClusterIPs = []string{ip}
	}
	return s
}

func sport(name string, proto corev1.Protocol, port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: proto, Port: port}
}

type ep struct {
	ip                 string
	node               string
	ready, terminating *bool
}

func slice(ns, svcName, name string, af discoveryv1.AddressType, ports map[string]int32, eps ...ep) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
		Labels: map[string]string{discoveryv1.LabelServiceName: svcName}}, AddressType: af}
	for pn, p := range ports {
		pn, p, proto := pn, p, corev1.ProtocolTCP
		if strings.HasPrefix(pn, "udp") {
			proto = corev1.ProtocolUDP
		}
		es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: &pn, Port: &p, Protocol: &proto})
	}
	for _, e := range eps {
		node := e.node
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{e.ip}, NodeName: &node,
			Conditions: discoveryv1.EndpointConditions{Ready: e.ready, Terminating: e.terminating}})
	}
	return es
}

func b(v bool) *bool { return &v }

func TestBuild(t *testing.T) {
	local := corev1.ServiceInternalTrafficPolicyLocal
	timeout := int32(60)
	affinity := svc("a", "sticky", "172.30.0.20", sport("http", corev1.ProtocolTCP, 80))
	affinity.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	affinity.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}}
	defaultAffinity := svc("a", "sticky2", "172.30.0.21", sport("", corev1.ProtocolTCP, 80))
	defaultAffinity.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	np := svc("a", "np", "172.30.0.22", corev1.ServicePort{Name: "", Protocol: corev1.ProtocolTCP, Port: 80, NodePort: 30080})
	np.Spec.Type, np.Spec.ExternalTrafficPolicy, np.Spec.InternalTrafficPolicy = corev1.ServiceTypeNodePort, corev1.ServiceExternalTrafficPolicyLocal, &local
	dual := svc("a", "dual", "fd00::1", sport("", corev1.ProtocolUDP, 53))
	dual.Spec.ClusterIPs = []string{"fd00::1", "172.30.0.23"}
	ext := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "ext"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.org"}}

	in := Sources{Node: "node1",
		Services: []*corev1.Service{
			svc("a", "web", "172.30.0.10", sport("http", corev1.ProtocolTCP, 80), sport("dns", corev1.ProtocolUDP, 53), sport("bad", "ICMP", 1)),
			svc("a", "headless", corev1.ClusterIPNone, sport("http", corev1.ProtocolTCP, 80)),
			svc("a", "v6", "fd00::2", sport("http", corev1.ProtocolTCP, 80)),
			affinity, defaultAffinity, np, dual, ext,
		},
		Slices: []*discoveryv1.EndpointSlice{
			slice("a", "web", "web-1", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 8080, "udp-dns": 5353},
				ep{ip: "10.128.0.5", node: "node1"}, ep{ip: "10.128.2.5", node: "node2", ready: b(true)},
				ep{ip: "10.128.2.6", node: "node2", ready: b(false)},
				ep{ip: "10.128.2.7", node: "node2", ready: b(true), terminating: b(true)}),
			slice("a", "web", "web-2", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 8080},
				ep{ip: "10.128.0.5", node: "node1"}, ep{ip: "10.128.4.5", node: "node3"}), // 10.128.0.5 twice
			slice("a", "web", "web-v6", discoveryv1.AddressTypeIPv6, map[string]int32{"http": 8080}, ep{ip: "fd00::5", node: "node1"}),
			slice("a", "np", "np-1", discoveryv1.AddressTypeIPv4, map[string]int32{"": 8080},
				ep{ip: "10.128.0.9", node: "node1"}, ep{ip: "10.128.2.9", node: "node2"}),
			slice("b", "web", "other-ns", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 9999}, ep{ip: "10.128.9.9", node: "node1"}),
		}}
	ports, errs := Build(in)
	var keys []string
	for _, p := range ports {
		keys = append(keys, fmt.Sprintf("%s %s %s:%d np%d eps%v aff%v il%v el%v", p.Key(), p.Protocol, p.ClusterIP, p.Port, p.NodePort,
			p.Endpoints, p.AffinityTimeout, p.InternalLocal, p.ExternalLocal))
	}
	want := []string{
		"a/dual: udp 172.30.0.23:53 np0 eps[] aff0s ilfalse elfalse",
		"a/np: tcp 172.30.0.22:80 np30080 eps[{10.128.0.9 8080 true} {10.128.2.9 8080 false}] aff0s iltrue eltrue",
		"a/sticky2: tcp 172.30.0.21:80 np0 eps[] aff3h0m0s ilfalse elfalse",
		"a/sticky:http tcp 172.30.0.20:80 np0 eps[] aff1m0s ilfalse elfalse",
		"a/web:dns udp 172.30.0.10:53 np0 eps[] aff0s ilfalse elfalse",
		"a/web:http tcp 172.30.0.10:80 np0 eps[{10.128.0.5 8080 true} {10.128.2.5 8080 false} {10.128.4.5 8080 false}] aff0s ilfalse elfalse",
	}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}
	var errText []string
	for _, e := range errs {
		errText = append(errText, e.Error())
	}
	wantErrs := []string{
		`service a/web: spec.ports[2]: protocol "ICMP" is not TCP, UDP or SCTP`,
		`service a/v6: spec.clusterIPs [fd00::2]: no IPv4 address (ovs-sdn is IPv4-only): no flows`,
		`service a/ext: type ExternalName is answered by the cluster DNS, not load-balanced: no flows`,
	}
	if diff := cmp.Diff(wantErrs, errText); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	for _, p := range ports {
		if p.Key() == "a/web:http" {
			if got := p.LocalEndpoints(); len(got) != 1 || got[0].IP != netip.MustParseAddr("10.128.0.5") {
				t.Errorf("local endpoints of a/web:http = %v", got)
			}
		}
	}
	if DefaultAffinityTimeout != 10800*time.Second {
		t.Errorf("DefaultAffinityTimeout = %v", DefaultAffinityTimeout)
	}
	_ = ovs.ProtoTCP
}

// TestAssignIDs: IDs are a function of the set (order-independent), stable
// for ports that stay, and unique under collisions.
func TestAssignIDs(t *testing.T) {
	mk := func(keys ...string) []ServicePort {
		var out []ServicePort
		for _, k := range keys {
			out = append(out, ServicePort{Namespace: "ns", Name: k, PortName: "p"})
		}
		return out
	}
	a := mk("x", "y", "z")
	b := mk("z", "x", "y")
	AssignIDs(a, nil)
	AssignIDs(b, nil)
	ids := map[string]uint32{}
	for _, p := range a {
		ids[p.Key()] = p.ID
		if p.ID < MinID || p.ID > MaxID {
			t.Errorf("%s: ID %#x out of range", p.Key(), p.ID)
		}
	}
	for _, p := range b {
		if ids[p.Key()] != p.ID {
			t.Errorf("%s: ID %d in one order, %d in another", p.Key(), ids[p.Key()], p.ID)
		}
	}
	// A port keeps its ID while it exists, even when a newcomer would hash
	// to it: force a collision by handing "w" the ID of "x" as its previous.
	c := mk("w", "x")
	AssignIDs(c, map[string]uint32{"ns/w:p": ids["ns/x:p"]})
	if c[0].ID != ids["ns/x:p"] || c[1].ID == c[0].ID || c[1].ID == 0 {
		t.Errorf("collision: w=%d x=%d (x's hash %d)", c[0].ID, c[1].ID, ids["ns/x:p"])
	}
	// Many ports: all distinct.
	var many []ServicePort
	for i := range 5000 {
		many = append(many, ServicePort{Namespace: "ns", Name: fmt.Sprint(i)})
	}
	AssignIDs(many, nil)
	seen := map[uint32]bool{}
	for _, p := range many {
		if seen[p.ID] {
			t.Fatalf("ID %d given twice", p.ID)
		}
		seen[p.ID] = true
	}
}

// TestIDAllocator: IDs stay while held, are reused after Release, and
// never collide among held ports.
func TestIDAllocator(t *testing.T) {
	a := NewIDAllocator()
	p := []ServicePort{{Namespace: "ns", Name: "a", PortName: "http"}, {Namespace: "ns", Name: "b", PortName: "http"}}
	a.Assign(p)
	if p[0].ID == p[1].ID || p[0].ID != idOf("ns/a:http") {
		t.Fatalf("IDs %#x %#x, want distinct, the first its hash %#x", p[0].ID, p[1].ID, idOf("ns/a:http"))
	}
	// A newcomer whose hash is taken gets another ID; the holder keeps it.
	a.used[idOf("ns/c:http")] = "someone"
	q := []ServicePort{{Namespace: "ns", Name: "c", PortName: "http"}, p[0]}
	q[1].ID = 0
	a.Assign(q)
	if q[0].ID == idOf("ns/c:http") || q[0].ID == 0 || q[1].ID != p[0].ID {
		t.Errorf("collision: c=%#x (hash %#x), a=%#x (was %#x)", q[0].ID, idOf("ns/c:http"), q[1].ID, p[0].ID)
	}
	a.Release("ns/a:http")
	if _, held := a.used[p[0].ID]; held {
		t.Errorf("released ID %#x still held", p[0].ID)
	}
}
