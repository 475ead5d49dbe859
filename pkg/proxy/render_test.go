package proxy

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovstest"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// The fixture: node-a (subnet 10.128.0.0/23, gateway 10.128.0.1) in
// multitenant mode, so that the traces also check that the endpoint's VNID
// still decides who may reach it. Project "shop" (VNID 10) runs the client
// and one endpoint here and one endpoint on node-b; "blog" (VNID 11) is
// another project.
var (
	rxCfg = pipeline.FlowConfig{
		Mode:            clusternetwork.ModeMultitenant,
		ClusterNetworks: []netip.Prefix{netip.MustParsePrefix("10.128.0.0/14")},
		ServiceNetwork:  netip.MustParsePrefix("172.30.0.0/16"),
		LocalSubnet:     netip.MustParsePrefix("10.128.0.0/23"),
		NodeIP:          netip.MustParseAddr("192.168.126.10"),
	}
	rxGateway = netip.MustParseAddr("10.128.0.1")
	rxClient  = pipeline.PodInfo{Namespace: "shop", Name: "client", IP: netip.MustParseAddr("10.128.0.2"), OFPort: 3, VNID: 10}
	rxLocal   = pipeline.PodInfo{Namespace: "shop", Name: "web-1", IP: netip.MustParseAddr("10.128.0.3"), OFPort: 4, VNID: 10}
	rxOther   = pipeline.PodInfo{Namespace: "blog", Name: "blog", IP: netip.MustParseAddr("10.128.0.4"), OFPort: 5, VNID: 11}
	rxNodeB   = pipeline.RemoteNode{Name: "node-b", UID: "6c1b6a6e-0b5d-4c55-9d59-0e3f4a1b2c01",
		HostIP: netip.MustParseAddr("192.168.126.11"), Subnet: netip.MustParsePrefix("10.128.2.0/23")}
	rxRemoteIP = netip.MustParseAddr("10.128.2.7")
	rxOutside  = netip.MustParseAddr("198.18.0.254")
	rxVIP      = netip.MustParseAddr("172.30.0.10")
	rxVIPAff   = netip.MustParseAddr("172.30.0.11")
)

const rxTarget = 8080

// rxWeb is shop/web: ClusterIP 172.30.0.10:80 and NodePort 30080 to the
// two endpoints on 8080, externalTrafficPolicy Cluster.
func rxWeb() ServicePort {
	return ServicePort{Namespace: "shop", Name: "web", PortName: "http", ID: 0x100001, Protocol: ovs.ProtoTCP,
		ClusterIP: rxVIP, Port: 80, NodePort: 30080,
		Endpoints: []Endpoint{{IP: rxLocal.IP, Port: rxTarget, Local: true}, {IP: rxRemoteIP, Port: rxTarget}}}
}

// rxSticky is shop/sticky: sessionAffinity ClientIP (10s), NodePort 30081
// with externalTrafficPolicy Local.
func rxSticky() ServicePort {
	p := rxWeb()
	p.Name, p.ID, p.ClusterIP, p.NodePort = "sticky", 0x100002, rxVIPAff, 30081
	p.AffinityTimeout, p.ExternalLocal = 10*time.Second, true
	return p
}

// rxNodeFlows is everything but Services that the agent installs on node-a.
func rxNodeFlows(cfg pipeline.FlowConfig) []ovs.Flow {
	iso := cfg.Isolation()
	flows := append(pipeline.BaseFlows(cfg), iso.StaticFlows(cfg)...)
	flows = append(flows, pipeline.ServiceProxyFlows(cfg)...)
	seen := map[uint32]bool{}
	for _, p := range []pipeline.PodInfo{rxClient, rxLocal, rxOther} {
		flows = append(flows, pipeline.PodFlows(cfg, p)...)
		if !seen[p.VNID] {
			seen[p.VNID] = true
			flows = append(flows, iso.TenantFlows(p.VNID)...)
		}
	}
	flows = append(flows, pipeline.RemoteNodeFlows(cfg, rxNodeB)...)
	return append(flows, pipeline.VersionFlow(cfg))
}

// rxBridge is node-a's bridge with ports rendered per Service, as the agent
// installs them (one Render call per Service).
func rxBridge(ports ...ServicePort) ([]ovs.Flow, []ovs.GroupEntry) {
	flows := rxNodeFlows(rxCfg)
	var groups []ovs.GroupEntry
	for _, p := range ports {
		f, g := Render(rxCfg, []ServicePort{p})
		flows, groups = append(flows, f...), append(groups, g...)
	}
	return flows, groups
}

func trace(t *testing.T, flows []ovs.Flow, groups []ovs.GroupEntry, p ovs.Packet) ovs.Trace {
	t.Helper()
	tr, err := ovs.TraceWithGroups(flows, groups, p)
	if err != nil {
		t.Fatalf("trace: %v\n%s", err, tr)
	}
	return tr
}

func tcp(inPort uint32, src netip.Addr, srcPort uint16, dst netip.Addr, dstPort uint16) ovs.Packet {
	return ovs.Packet{InPort: inPort, Proto: ovs.ProtoTCP, Src: src, Dst: dst, TpSrc: srcPort, TpDst: dstPort}
}

func TestRenderGolden(t *testing.T) {
	var flows []ovs.Flow
	var groups []ovs.GroupEntry
	dns := rxSticky()
	dns.Name, dns.ID, dns.Protocol, dns.ClusterIP, dns.Port, dns.NodePort = "dns", 0x100003, ovs.ProtoUDP,
		netip.MustParseAddr("172.30.0.12"), 53, 30053
	for _, p := range []ServicePort{rxWeb(), rxSticky(), dns} {
		f, g := Render(rxCfg, []ServicePort{p})
		flows, groups = append(flows, f...), append(groups, g...)
	}
	ovstest.AssertGoldenWithGroups(t, "services", groups, flows)
	for _, f := range flows {
		if err := ovs.ValidateFlow(f); err != nil {
			t.Error(err)
		}
	}
}

// TestRenderValid: every flow and group is valid OpenFlow for our
// validator, every flow stays in the Services bands, groups are referenced
// and owned by the Service's cookie.
func TestRenderValid(t *testing.T) {
	flows, groups := rxBridge(rxWeb(), rxSticky())
	for _, f := range flows {
		if err := ovs.ValidateFlow(f); err != nil {
			t.Error(err)
		}
	}
	if err := ovs.ValidateGroups(groups, flows); err != nil {
		t.Error(err)
	}
	for _, p := range []ServicePort{rxWeb(), rxSticky()} {
		f, _ := Render(rxCfg, []ServicePort{p})
		if err := pipeline.CheckFlowBands(pipeline.StageServices, f); err != nil {
			t.Errorf("%s: %v", p.Key(), err)
		}
		owner := pipeline.ServiceOwner(p.Namespace, p.Name)
		for _, fl := range f {
			if fl.Cookie != owner.Cookie() {
				t.Errorf("%s: flow %s has cookie %#x, want the Service's %#x", p.Key(), fl, fl.Cookie, owner.Cookie())
			}
		}
	}
}

// TestTraceClusterIP: a new connection to the ClusterIP reaches, bucket by
// bucket, the local endpoint on its port and the remote one through the
// tunnel with the client's VNID, with the destination rewritten and the
// source kept.
func TestTraceClusterIP(t *testing.T) {
	flows, groups := rxBridge(rxWeb())
	want := []string{"Output(4)", "Tunnel(192.168.126.11, 0xa)"}
	for bucket, ep := range rxWeb().Endpoints {
		p := tcp(rxClient.OFPort, rxClient.IP, 40000, rxVIP, 80)
		p.Bucket = bucket
		tr := trace(t, flows, groups, p)
		if tr.Verdict.String() != want[bucket] {
			t.Fatalf("bucket %d: %s, want %s\n%s", bucket, tr.Verdict, want[bucket], tr)
		}
		out := tr.OutputPackets[0]
		if out.Dst != ep.IP || out.TpDst != rxTarget || out.Src != rxClient.IP || out.TpSrc != 40000 {
			t.Errorf("bucket %d: output %s:%d → %s:%d, want %s:40000 → %s:%d", bucket, out.Src, out.TpSrc, out.Dst, out.TpDst, rxClient.IP, ep.IP, rxTarget)
		}
		if out.CtMark&1 == 0 {
			t.Errorf("bucket %d: ct_mark %#x lacks the service bit", bucket, out.CtMark)
		}
		if len(tr.Groups) != 1 || tr.Groups[0].ID != rxWeb().ID {
			t.Errorf("bucket %d: groups %v, want the ClusterIP group %#x", bucket, tr.Groups, rxWeb().ID)
		}
	}
}

// TestTraceClusterIPConnection: later packets of a connection skip the
// group through conntrack's DNAT; replies leave the endpoint as the VIP.
func TestTraceClusterIPConnection(t *testing.T) {
	flows, groups := rxBridge(rxWeb())
	dnat := ovs.NATBinding{From: netip.AddrPortFrom(rxVIP, 80), To: netip.AddrPortFrom(rxLocal.IP, rxTarget)}
	est := tcp(rxClient.OFPort, rxClient.IP, 40000, rxVIP, 80)
	est.CtEst, est.CtDNAT, est.CtMark, est.Bucket = true, dnat, 1, 1
	tr := trace(t, flows, groups, est)
	if tr.Verdict.String() != "Output(4)" || len(tr.Groups) != 0 || tr.OutputPackets[0].Dst != rxLocal.IP {
		t.Errorf("established: %s groups=%v\n%s", tr.Verdict, tr.Groups, tr)
	}
	reply := tcp(rxLocal.OFPort, rxLocal.IP, rxTarget, rxClient.IP, 40000)
	reply.CtReply, reply.CtDNAT, reply.CtMark = true, dnat, 1
	tr = trace(t, flows, groups, reply)
	if tr.Verdict.String() != "Output(3)" {
		t.Fatalf("reply: %s, want Output(3)\n%s", tr.Verdict, tr)
	}
	if out := tr.OutputPackets[0]; out.Src != rxVIP || out.TpSrc != 80 {
		t.Errorf("reply leaves from %s:%d, want %s:80", out.Src, out.TpSrc, rxVIP)
	}
}

// TestTraceNodePort: host traffic to NodePortVIP (what the host's DNAT of
// a node port makes of it) comes in from tun0: externalTrafficPolicy
// Cluster SNATs it to the gateway, Local keeps the client's address and
// only reaches the local endpoint.
func TestTraceNodePort(t *testing.T) {
	flows, groups := rxBridge(rxWeb(), rxSticky())
	for bucket, ep := range rxWeb().Endpoints {
		p := tcp(pipeline.OFPortTun0, rxOutside, 50000, pipeline.NodePortVIP, 30080)
		p.Bucket = bucket
		tr := trace(t, flows, groups, p)
		if len(tr.OutputPackets) == 0 {
			t.Fatalf("bucket %d: %s\n%s", bucket, tr.Verdict, tr)
		}
		out := tr.OutputPackets[0]
		if out.Dst != ep.IP || out.TpDst != rxTarget || out.Src != rxGateway {
			t.Errorf("bucket %d: output %s → %s:%d, want %s → %s:%d\n%s", bucket, out.Src, out.Dst, out.TpDst, rxGateway, ep.IP, rxTarget, tr)
		}
		if len(tr.Groups) != 1 || tr.Groups[0].ID != rxWeb().ID|nodePortGroupBit {
			t.Errorf("bucket %d: groups %v, want the NodePort group", bucket, tr.Groups)
		}
	}
	for bucket := range 2 {
		p := tcp(pipeline.OFPortTun0, rxOutside, 50000, pipeline.NodePortVIP, 30081)
		p.Bucket = bucket
		tr := trace(t, flows, groups, p)
		if tr.Verdict.String() != "Output(4)" {
			t.Fatalf("eTP Local, bucket %d: %s, want the local endpoint\n%s", bucket, tr.Verdict, tr)
		}
		if out := tr.OutputPackets[0]; out.Src != rxOutside || out.Dst != rxLocal.IP {
			t.Errorf("eTP Local: output %s → %s, want %s → %s", out.Src, out.Dst, rxOutside, rxLocal.IP)
		}
	}
}

// TestTraceNodePortReply: the endpoint's reply to the gateway is un-SNATed
// and un-DNATed and leaves through tun0 to the client as NodePortVIP.
func TestTraceNodePortReply(t *testing.T) {
	flows, groups := rxBridge(rxWeb())
	reply := tcp(rxLocal.OFPort, rxLocal.IP, rxTarget, rxGateway, 50000)
	reply.CtReply, reply.CtMark = true, 1|2
	reply.CtDNAT = ovs.NATBinding{From: netip.AddrPortFrom(pipeline.NodePortVIP, 30080), To: netip.AddrPortFrom(rxLocal.IP, rxTarget)}
	reply.CtSNAT = ovs.NATBinding{From: netip.AddrPortFrom(rxOutside, 50000), To: netip.AddrPortFrom(rxGateway, 50000), Zone: ovs.SNATZone}
	tr := trace(t, flows, groups, reply)
	if tr.Verdict.String() != "Output(2)" {
		t.Fatalf("reply: %s, want Output(2) (tun0)\n%s", tr.Verdict, tr)
	}
	if out := tr.OutputPackets[0]; out.Src != pipeline.NodePortVIP || out.TpSrc != 30080 || out.Dst != rxOutside {
		t.Errorf("reply %s:%d → %s, want %s:30080 → %s", out.Src, out.TpSrc, out.Dst, pipeline.NodePortVIP, rxOutside)
	}
}

// TestTraceHairpin: an endpoint reaching itself through the ClusterIP is
// SNATed to the gateway and sent back out of its own port.
func TestTraceHairpin(t *testing.T) {
	flows, groups := rxBridge(rxWeb())
	p := tcp(rxLocal.OFPort, rxLocal.IP, 40000, rxVIP, 80) // bucket 0: itself
	tr := trace(t, flows, groups, p)
	if tr.Verdict.String() != "Output(4)" {
		t.Fatalf("hairpin: %s, want Output(4) (IN_PORT)\n%s", tr.Verdict, tr)
	}
	if out := tr.OutputPackets[0]; out.Src != rxGateway || out.Dst != rxLocal.IP || out.TpDst != rxTarget {
		t.Errorf("hairpin output %s → %s:%d, want %s → %s:%d", out.Src, out.Dst, out.TpDst, rxGateway, rxLocal.IP, rxTarget)
	}
	p.Bucket = 1 // the remote endpoint: no SNAT
	tr = trace(t, flows, groups, p)
	if tr.Verdict.String() != "Tunnel(192.168.126.11, 0xa)" || tr.OutputPackets[0].Src != rxLocal.IP {
		t.Errorf("to the other endpoint: %s from %s\n%s", tr.Verdict, tr.OutputPackets[0].Src, tr)
	}
}

// TestTraceIsolation: the Service does not bypass multitenant isolation:
// a pod of another project reaches the VIP, is DNATed and dropped at the
// endpoint's ingress check like a direct connection.
func TestTraceIsolation(t *testing.T) {
	flows, groups := rxBridge(rxWeb())
	tr := trace(t, flows, groups, tcp(rxOther.OFPort, rxOther.IP, 40000, rxVIP, 80))
	if tr.Verdict.Kind != ovs.VerdictDrop || tr.Verdict.Table != ovs.TablePolicyIngress {
		t.Errorf("blog → shop/web: %s, want a drop in PolicyIngress\n%s", tr.Verdict, tr)
	}
}

// TestTraceNoEndpoints: a port without endpoints has no flows; its VIP goes
// to the host (table 60 → tun0), where iptables rejects it.
func TestTraceNoEndpoints(t *testing.T) {
	empty := rxWeb()
	empty.Endpoints = nil
	if f, g := Render(rxCfg, []ServicePort{empty}); len(f)+len(g) != 0 {
		t.Fatalf("no endpoints rendered %d flows, %d groups", len(f), len(g))
	}
	flows, groups := rxBridge(empty)
	tr := trace(t, flows, groups, tcp(rxClient.OFPort, rxClient.IP, 40000, rxVIP, 80))
	if tr.Verdict.String() != "Output(2)" || tr.OutputPackets[0].Dst != rxVIP {
		t.Errorf("no endpoints: %s, want Output(2) unchanged\n%s", tr.Verdict, tr)
	}
	// internalTrafficPolicy Local without a local endpoint: cluster traffic
	// has none, NodePort traffic still has both.
	itp := rxWeb()
	itp.Endpoints, itp.InternalLocal = []Endpoint{{IP: rxRemoteIP, Port: rxTarget}}, true
	flows, groups = rxBridge(itp)
	if tr := trace(t, flows, groups, tcp(rxClient.OFPort, rxClient.IP, 40000, rxVIP, 80)); tr.Verdict.String() != "Output(2)" {
		t.Errorf("iTP Local without local endpoints: %s, want Output(2)\n%s", tr.Verdict, tr)
	}
	if tr := trace(t, flows, groups, tcp(pipeline.OFPortTun0, rxOutside, 1, pipeline.NodePortVIP, 30080)); !strings.HasPrefix(tr.Verdict.String(), "Tunnel(") {
		t.Errorf("iTP Local, NodePort: %s, want the remote endpoint\n%s", tr.Verdict, tr)
	}
}

// TestTraceAffinity: the first connection learns its endpoint; later ones
// from the client reach it whatever bucket the group would pick; when the
// learned endpoint is gone the group picks again.
func TestTraceAffinity(t *testing.T) {
	flows, groups := rxBridge(rxSticky())
	p := tcp(rxClient.OFPort, rxClient.IP, 40000, rxVIPAff, 80)
	p.Bucket = 1
	tr := trace(t, flows, groups, p)
	if !strings.HasPrefix(tr.Verdict.String(), "Tunnel(") || len(tr.Learned) != 1 {
		t.Fatalf("first connection: %s, learned %d\n%s", tr.Verdict, len(tr.Learned), tr)
	}
	learned := tr.Learned[0]
	if learned.Table != ovs.TableServiceAffinity {
		t.Errorf("learned into %s", learned.Table.Named())
	}
	for bucket := range 2 {
		next := tcp(rxClient.OFPort, rxClient.IP, 40001, rxVIPAff, 80)
		next.Bucket = bucket
		tr := trace(t, append(flows, learned), groups, next)
		if !strings.HasPrefix(tr.Verdict.String(), "Tunnel(") || len(tr.Groups) != 0 {
			t.Errorf("bucket %d after learning: %s groups %v, want the remote endpoint without the group\n%s", bucket, tr.Verdict, tr.Groups, tr)
		}
	}
	other := tcp(rxOther.OFPort, rxOther.IP, 40001, rxVIPAff, 80)
	other.Bucket = 0
	if tr := trace(t, append(flows, learned), groups, other); len(tr.Groups) != 1 {
		t.Errorf("another client used the learned choice: groups %v\n%s", tr.Groups, tr)
	}
	// The remote endpoint leaves: the learned flow points nowhere, the
	// group picks the local one and learns it.
	gone := rxSticky()
	gone.Endpoints = gone.Endpoints[:1]
	flows, groups = rxBridge(gone)
	next := tcp(rxClient.OFPort, rxClient.IP, 40002, rxVIPAff, 80)
	tr = trace(t, append(flows, learned), groups, next)
	if tr.Verdict.String() != "Output(4)" || len(tr.Groups) != 1 || len(tr.Learned) != 1 {
		t.Errorf("learned endpoint gone: %s groups %v learned %d, want the local endpoint chosen again\n%s", tr.Verdict, tr.Groups, len(tr.Learned), tr)
	}
}

// TestRenderProtocols: UDP and SCTP ports match their protocol.
func TestRenderProtocols(t *testing.T) {
	for _, proto := range []ovs.Proto{ovs.ProtoUDP, ovs.ProtoSCTP} {
		p := rxWeb()
		p.Protocol = proto
		flows, groups := rxBridge(p)
		pkt := ovs.Packet{InPort: rxClient.OFPort, Proto: proto, Src: rxClient.IP, Dst: rxVIP, TpSrc: 5000, TpDst: 80}
		tr := trace(t, flows, groups, pkt)
		if tr.Verdict.String() != "Output(4)" || tr.OutputPackets[0].TpDst != rxTarget {
			t.Errorf("%s: %s\n%s", proto, tr.Verdict, tr)
		}
		if udp := proto == ovs.ProtoUDP; udp != (len(groups) == 0) {
			t.Errorf("%s: %d groups (UDP chooses with multipath, the others with a select group)", proto, len(groups))
		}
		if proto == ovs.ProtoUDP {
			// Every endpoint is reachable through the multipath index.
			seen := map[netip.Addr]bool{}
			for bucket := range 2 {
				pkt.Bucket = bucket
				tr := trace(t, flows, groups, pkt)
				if len(tr.OutputPackets) > 0 {
					seen[tr.OutputPackets[0].Dst] = true
				}
			}
			if len(seen) != 2 {
				t.Errorf("UDP over two multipath links reached %v, want both endpoints", seen)
			}
			pkt.Bucket = 0
		}
		pkt.Proto = ovs.ProtoTCP
		if tr := trace(t, flows, groups, pkt); tr.Verdict.String() != "Output(2)" {
			t.Errorf("%s Service answered TCP: %s", proto, tr.Verdict)
		}
	}
}

// TestTraceNodePortFromPod: a pod reaching a node port goes through the
// host (which DNATs it to NodePortVIP) and comes back from tun0. The
// endpoint's reply must return through tun0 for the host to un-DNAT it,
// also when the client is a local pod; an endpoint reaching itself this
// way is not sent back out IN_PORT (tun0).
func TestTraceNodePortFromPod(t *testing.T) {
	flows, groups := rxBridge(rxWeb(), rxSticky())
	// eTP Local: no SNAT, the client is the local pod rxClient.
	reply := tcp(rxLocal.OFPort, rxLocal.IP, rxTarget, rxClient.IP, 40000)
	reply.CtReply, reply.CtMark = true, 1
	reply.CtDNAT = ovs.NATBinding{From: netip.AddrPortFrom(pipeline.NodePortVIP, 30081), To: netip.AddrPortFrom(rxLocal.IP, rxTarget)}
	tr := trace(t, flows, groups, reply)
	if tr.Verdict.String() != "Output(2)" {
		t.Fatalf("reply to a local pod client: %s, want Output(2) (tun0)\n%s", tr.Verdict, tr)
	}
	if out := tr.OutputPackets[0]; out.Src != pipeline.NodePortVIP || out.DstMAC != rxCfg.GatewayMAC() {
		t.Errorf("reply from %s to MAC %s, want from %s to tun0's %s", out.Src, out.DstMAC, pipeline.NodePortVIP, rxCfg.GatewayMAC())
	}
	// The endpoint itself through its node port (bucket 0 of the eTP
	// Cluster group is the local endpoint).
	self := tcp(pipeline.OFPortTun0, rxLocal.IP, 40000, pipeline.NodePortVIP, 30080)
	tr = trace(t, flows, groups, self)
	if tr.Verdict.String() != "Output(4)" {
		t.Fatalf("endpoint to its own node port: %s, want Output(4)\n%s", tr.Verdict, tr)
	}
}

// TestTraceSCTPPortAware: an SCTP Service on a datapath whose conntrack
// knows SCTP ports, as the kernel's does (nf_conntrack_proto_sctp; OVS's
// ct(nat) rewrites SCTP ports there, and the in-process tracer models
// port-aware NAT): a new association is DNATed to the endpoint's address
// and port, its later packets follow the binding without the group, the
// endpoint's replies leave as the ClusterIP and Service port, and
// sessionAffinity ClientIP learns an sctp_dst flow that a later association
// from another port follows. (OVS 3.1's userspace datapath differs: see
// docs/services.md, "Services: SCTP".)
func TestTraceSCTPPortAware(t *testing.T) {
	web, sticky := rxWeb(), rxSticky()
	web.Protocol, sticky.Protocol = ovs.ProtoSCTP, ovs.ProtoSCTP
	flows, groups := rxBridge(web, sticky)
	sctp := func(inPort uint32, src netip.Addr, sport uint16, dst netip.Addr, dport uint16) ovs.Packet {
		return ovs.Packet{InPort: inPort, Proto: ovs.ProtoSCTP, Src: src, Dst: dst, TpSrc: sport, TpDst: dport}
	}
	for bucket, ep := range web.Endpoints {
		p := sctp(rxClient.OFPort, rxClient.IP, 40000, rxVIP, 80)
		p.Bucket = bucket
		tr := trace(t, flows, groups, p)
		if len(tr.OutputPackets) == 0 {
			t.Fatalf("INIT, bucket %d: %s\n%s", bucket, tr.Verdict, tr)
		}
		if out := tr.OutputPackets[0]; out.Dst != ep.IP || out.TpDst != rxTarget || out.Src != rxClient.IP || out.TpSrc != 40000 {
			t.Errorf("INIT, bucket %d: %s:%d → %s:%d, want %s:40000 → %s:%d", bucket, out.Src, out.TpSrc, out.Dst, out.TpDst, rxClient.IP, ep.IP, rxTarget)
		}
	}
	dnat := ovs.NATBinding{From: netip.AddrPortFrom(rxVIP, 80), To: netip.AddrPortFrom(rxLocal.IP, rxTarget)}
	est := sctp(rxClient.OFPort, rxClient.IP, 40000, rxVIP, 80)
	est.CtEst, est.CtDNAT, est.CtMark, est.Bucket = true, dnat, 1, 1
	if tr := trace(t, flows, groups, est); tr.Verdict.String() != "Output(4)" || len(tr.Groups) != 0 || tr.OutputPackets[0].TpDst != rxTarget {
		t.Errorf("COOKIE ECHO (established): %s groups=%v, want the bound endpoint\n%s", tr.Verdict, tr.Groups, tr)
	}
	reply := sctp(rxLocal.OFPort, rxLocal.IP, rxTarget, rxClient.IP, 40000)
	reply.CtReply, reply.CtDNAT, reply.CtMark = true, dnat, 1
	tr := trace(t, flows, groups, reply)
	if tr.Verdict.String() != "Output(3)" || tr.OutputPackets[0].Src != rxVIP || tr.OutputPackets[0].TpSrc != 80 {
		t.Errorf("INIT ACK (reply): %s, want Output(3) from %s:80\n%s", tr.Verdict, rxVIP, tr)
	}
	first := sctp(rxClient.OFPort, rxClient.IP, 40000, rxVIPAff, 80)
	first.Bucket = 1
	tr = trace(t, flows, groups, first)
	if len(tr.Learned) != 1 || !strings.Contains(tr.Learned[0].String(), "sctp") {
		t.Fatalf("affinity: learned %v, want one sctp flow\n%s", tr.Learned, tr)
	}
	next := sctp(rxClient.OFPort, rxClient.IP, 40001, rxVIPAff, 80)
	next.Bucket = 0
	if tr := trace(t, append(flows, tr.Learned[0]), groups, next); !strings.HasPrefix(tr.Verdict.String(), "Tunnel(") || len(tr.Groups) != 0 {
		t.Errorf("affinity, next association: %s groups %v, want the learned remote endpoint\n%s", tr.Verdict, tr.Groups, tr)
	}
}
