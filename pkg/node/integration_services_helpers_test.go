package node_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// Services on real OVS (issue 11): three nodes, an endpoint pod and a
// client pod on each, Services and EndpointSlices written to the API
// server by the test (no kube-controller-manager: the test decides which
// endpoints are ready), the agents' flows and groups doing the rest.

const svcNS = "svc"

// svcCluster is the Service lab: web-<node> endpoints (WhoAmI on
// itEchoPort, TCP and UDP) and cl-<node> clients.
type svcCluster struct {
	*itCluster
	ns      string // of the Services and EndpointSlices the helpers write
	web, cl []*netlab.Pod
	ext     *netlab.ExternalHost
}

func newSvcCluster(t *testing.T, prefix, plugin string, nodes int) *svcCluster {
	c := &svcCluster{itCluster: newITCluster(t, prefix, plugin, nodes, 0), ns: svcNS}
	ext, err := c.lab.AddExternalHost("ext", netlab.ExternalConfig{})
	if err != nil {
		t.Fatalf("external host: %v", err)
	}
	c.ext = ext
	c.netNamespace(svcNS, 30)
	for _, n := range c.nodes {
		suffix := strings.TrimPrefix(n.name, "node-")
		w := n.addLabeledPod(svcNS, "web-"+suffix, map[string]string{"app": "web"})
		if _, err := w.ServeWhoAmI(itEchoPort); err != nil {
			t.Fatal(err)
		}
		c.web = append(c.web, w)
		c.cl = append(c.cl, n.addLabeledPod(svcNS, "cl-"+suffix, map[string]string{"app": "client", "client": suffix}))
	}
	return c
}

// svcPort is one port of a test Service: its name, protocol, port.
type svcPort struct {
	name  string
	proto corev1.Protocol
	port  int32
}

var (
	tcpPort = svcPort{"tcp", corev1.ProtocolTCP, 80}
	udpPort = svcPort{"udp", corev1.ProtocolUDP, 80}
)

// createService creates Service ns/name (type NodePort when nodePort) with
// the ports, targeting itEchoPort, and lets mutate adjust the spec first.
func (c *svcCluster) createService(name string, nodePort bool, ports []svcPort, mutate func(*corev1.ServiceSpec)) *corev1.Service {
	c.t.Helper()
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}}
	if nodePort {
		s.Spec.Type = corev1.ServiceTypeNodePort
	}
	for _, p := range ports {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: p.name, Protocol: p.proto, Port: p.port,
			TargetPort: intstr.FromInt32(itEchoPort)})
	}
	if mutate != nil {
		mutate(&s.Spec)
	}
	s, err := c.kube.CoreV1().Services(c.ns).Create(context.Background(), s, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatalf("create Service %s: %v", name, err)
	}
	return s
}

// setEndpoints writes the one EndpointSlice of Service name: the pods eps
// (ready), on the ports.
func (c *svcCluster) setEndpoints(name string, ports []svcPort, eps ...*netlab.Pod) {
	c.t.Helper()
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: name + "-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, p := range ports {
		es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: ptr(p.name), Protocol: ptr(p.proto), Port: ptr(int32(itEchoPort))})
	}
	for _, p := range eps {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{p.IP.Addr().String()},
			NodeName: ptr("node-" + p.Node.Name), Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}})
	}
	api := c.kube.DiscoveryV1().EndpointSlices(c.ns)
	cur, err := api.Get(context.Background(), es.Name, metav1.GetOptions{})
	if err == nil {
		es.ResourceVersion = cur.ResourceVersion
		_, err = api.Update(context.Background(), es, metav1.UpdateOptions{})
	} else {
		_, err = api.Create(context.Background(), es, metav1.CreateOptions{})
	}
	if err != nil {
		c.t.Fatalf("EndpointSlice of %s: %v", name, err)
	}
}

func ptr[T any](v T) *T { return &v }

// serviceCookie is the owner part of the cookie of Service svcNS/name.
func serviceCookie(name string) uint64 {
	return pipeline.ServiceOwner(svcNS, name).Cookie() & ovs.OwnerMask
}

// vip is the Service's ClusterIP:port for port p.
func vip(s *corev1.Service, p svcPort) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(s.Spec.ClusterIP), uint16(p.port))
}

// nodePort is the Service's node port for p.
func nodePortOf(s *corev1.Service, p svcPort) uint16 {
	for _, sp := range s.Spec.Ports {
		if sp.Name == p.name {
			return uint16(sp.NodePort)
		}
	}
	panic("no port " + p.name)
}

// waitServiceFlows waits until every node has n endpoints programmed for
// Service name (its DNAT flows, p210, one per endpoint and port).
func (c *svcCluster) waitServiceFlows(name string, n int) {
	c.t.Helper()
	for _, nd := range c.nodes {
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := 0
			for _, f := range nd.dumpFlows(fmt.Sprintf("table=%d", ovs.TableServiceLB.ID)) {
				if f.Priority == 210 && f.Cookie&ovs.OwnerMask == pipeline.ServiceOwner(c.ns, name).Cookie()&ovs.OwnerMask {
					got++
				}
			}
			if got == n {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("node %s: %d DNAT flows for Service %s after 10 s, want %d", nd.Name, got, name, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// who connects (TCP) or sends (UDP) from pod from to dst.
func who(from netlab.NetNS, proto corev1.Protocol, dst netip.AddrPort) (netlab.Who, error) {
	if proto == corev1.ProtocolUDP {
		return from.UDPWho(dst, 2*time.Second)
	}
	return from.TCPWho(dst, 2*time.Second)
}

// spread makes n connections from from to dst and counts the servers.
func spread(t *testing.T, from netlab.NetNS, proto corev1.Protocol, dst netip.AddrPort, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		w, err := who(from, proto, dst)
		if err != nil {
			t.Fatalf("%s %s → %s (#%d): %v", proto, from.Name, dst, i, err)
		}
		seen[w.Server]++
	}
	return seen
}
