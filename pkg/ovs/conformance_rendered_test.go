package ovs_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	. "github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
	"github.com/ovs-sdn/ovs-sdn/pkg/proxy"
)

// renderedSets are conformance sets rendered here rather than read from a
// golden file: the Services of every protocol with and without session
// affinity and externalTrafficPolicy Local on both datapaths (the proxy's
// golden has TCP and UDP on the kernel one), and egress IPs with tunnel
// buckets, local SNAT and none active. Together with the goldens they cover
// every construct the pipeline renders.
func renderedSets() []conformanceSet {
	var sets []conformanceSet
	for _, userspace := range []bool{false, true} {
		cfg := conformanceConfig(userspace)
		s := conformanceSet{name: fmt.Sprintf("services (userspace %v)", userspace)}
		id := uint32(0x100001)
		for _, proto := range []Proto{ProtoTCP, ProtoUDP, ProtoSCTP} {
			for _, variant := range []int{0, 1, 2} {
				f, g := proxy.Render(cfg, []proxy.ServicePort{conformancePort(proto, variant, id)})
				s.flows, s.groups = append(s.flows, f...), append(s.groups, g...)
				id++
			}
		}
		s.flows = append(s.flows, pipeline.ServiceProxyFlows(cfg)...)
		sets = append(sets, s)
	}
	cfg := conformanceConfig(false)
	eg := conformanceSet{name: "egress IPs"}
	remote := []pipeline.EgressNode{
		{IP: netip.MustParseAddr("192.168.126.100"), HostIP: netip.MustParseAddr("192.168.126.11")},
		{IP: netip.MustParseAddr("192.168.126.101"), HostIP: netip.MustParseAddr("192.168.126.12")},
	}
	local := []pipeline.EgressNode{{IP: netip.MustParseAddr("192.168.126.102"), HostIP: cfg.NodeIP, Local: true}}
	for vnid, active := range map[uint32][]pipeline.EgressNode{10: remote, 11: local, 12: nil} {
		f, g := pipeline.EgressIPFlows(cfg, vnid, active)
		eg.flows, eg.groups = append(eg.flows, f...), append(eg.groups, g...)
	}
	eg.flows = append(eg.flows, pipeline.EgressIPHostFlows(cfg, []netip.Addr{local[0].IP})...)
	return append(sets, eg, multipathSet())
}

// multipathSet has a multipath action of every field set and algorithm
// OVS 3.1 knows (the pipeline renders symmetric_l3l4+udp/modulo_n), so
// that the codec's numbering of each is checked against OVS.
func multipathSet() conformanceSet {
	s := conformanceSet{name: "multipath variants"}
	prio := uint16(100)
	for _, fields := range []string{"eth_src", "symmetric_l4", "symmetric_l3l4", "symmetric_l3l4+udp", "nw_src", "nw_dst", "symmetric_l3"} {
		for _, alg := range []string{"modulo_n", "hash_threshold", "hrw", "iter_hash"} {
			mp := Multipath{Fields: fields, Basis: prio, Algorithm: alg, NLinks: 3, Arg: 7, Dst: RegBits(6, 4, 11, "")}
			s.flows = append(s.flows, NewFlow(TableServiceLB, prio).MatchIPv4().Action(mp, ResubmitTo(TableServiceLB)))
			prio++
		}
	}
	return s
}

func conformanceConfig(userspace bool) pipeline.FlowConfig {
	return pipeline.FlowConfig{
		Mode:            clusternetwork.ModeNetworkPolicy,
		ClusterNetworks: []netip.Prefix{netip.MustParsePrefix("10.128.0.0/14")},
		ServiceNetwork:  netip.MustParsePrefix("172.30.0.0/16"),
		LocalSubnet:     netip.MustParsePrefix("10.128.0.0/23"),
		NodeIP:          netip.MustParseAddr("192.168.126.10"),
		Userspace:       userspace,
	}
}

// conformancePort is a Service port of proto: variant 0 plain ClusterIP
// with a local and a remote endpoint, 1 with sessionAffinity ClientIP and
// a NodePort, 2 with externalTrafficPolicy Local and one endpoint.
func conformancePort(proto Proto, variant int, id uint32) proxy.ServicePort {
	p := proxy.ServicePort{Namespace: "ns", Name: fmt.Sprintf("svc-%d", id), PortName: "p", ID: id, Protocol: proto,
		ClusterIP: netip.AddrFrom4([4]byte{172, 30, byte(id >> 8), byte(id)}), Port: 80,
		Endpoints: []proxy.Endpoint{{IP: netip.MustParseAddr("10.128.0.3"), Port: 8080, Local: true},
			{IP: netip.MustParseAddr("10.128.2.7"), Port: 8080}}}
	switch variant {
	case 1:
		p.AffinityTimeout, p.NodePort = 10*time.Second, uint16(30000+id%1000)
	case 2:
		p.ExternalLocal, p.NodePort, p.Endpoints = true, uint16(31000+id%1000), p.Endpoints[:1]
	}
	return p
}
