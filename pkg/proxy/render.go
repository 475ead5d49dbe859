package proxy

import (
	"net/netip"
	"slices"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// Priorities of a Service's flows in ServiceLB (pipeline.StageServices),
// highest first. An entry flow matches the virtual address and port of a
// new connection; a bucket of the Service's select group (or a learned
// affinity flow) loads the endpoint and resubmits the packet to ServiceLB,
// where the endpoint's DNAT flow commits the connection.
const (
	// PriorityAffinityEntry: sessionAffinity ClientIP — look the client up
	// in ServiceAffinity first, then come back.
	PriorityAffinityEntry uint16 = 240
	// PriorityDNATHairpin, PriorityDNATSNAT, PriorityDNAT: the endpoint's
	// DNAT for a client that is the endpoint itself (hairpin), for NodePort
	// traffic that is SNATed, and for everything else.
	PriorityDNATHairpin uint16 = 230
	PriorityDNATSNAT    uint16 = 220
	PriorityDNAT        uint16 = 210
	// PriorityUDPBucket: the endpoint a UDP port's multipath chose (the
	// "bucket" of UDP ports, which have no group).
	PriorityUDPBucket uint16 = 205
	// PriorityAffinitySelect: affinity missed (or the learned endpoint is
	// gone), pick through the group; the DNAT flow learns the new choice.
	PriorityAffinitySelect uint16 = 200
	// PriorityEntry: a Service without affinity.
	PriorityEntry uint16 = 190
)

// nodePortGroupBit marks the group of a port's NodePort traffic (its
// endpoints may differ: externalTrafficPolicy). Port IDs are < 2^31.
const nodePortGroupBit uint32 = 1 << 31

// bucketWeight is every endpoint's weight: equal shares.
const bucketWeight = 100

// Render returns the flows and groups of one Service's ports, owned by
// pipeline.ServiceOwner(ns, name) (their cookie is set). c gives the node
// gateway, the SNAT address of NodePort and hairpin traffic. A port with no
// usable endpoint for a kind of traffic gets no flow for it: that traffic
// then reaches the host through table 60 and is rejected there. It is pure.
func Render(c pipeline.FlowConfig, ports []ServicePort) ([]ovs.Flow, []ovs.GroupEntry) {
	var flows []ovs.Flow
	var groups []ovs.GroupEntry
	var owner pipeline.Owner
	for _, p := range ports {
		owner = pipeline.ServiceOwner(p.Namespace, p.Name)
		f, g := renderPort(p, owner)
		flows, groups = append(flows, f...), append(groups, g...)
	}
	if len(flows) == 0 {
		return nil, nil
	}
	return owner.Stamp(flows), groups
}

// entry is one way into a port: the ClusterIP, or the NodePort address.
type entry struct {
	vip       netip.Addr
	port      uint16
	group     uint32
	endpoints []Endpoint
	nodePort  bool
	snat      bool // NodePort with externalTrafficPolicy Cluster
}

func (p ServicePort) entries() []entry {
	var out []entry
	if eps := p.clusterEndpoints(); len(eps) > 0 {
		out = append(out, entry{vip: p.ClusterIP, port: p.Port, group: p.ID, endpoints: eps})
	}
	if eps := p.externalEndpoints(); p.NodePort > 0 && len(eps) > 0 {
		out = append(out, entry{vip: pipeline.NodePortVIP, port: p.NodePort, group: p.ID | nodePortGroupBit,
			endpoints: eps, nodePort: true, snat: !p.ExternalLocal})
	}
	return out
}

func renderPort(p ServicePort, owner pipeline.Owner) ([]ovs.Flow, []ovs.GroupEntry) {
	entries := p.entries()
	if len(entries) == 0 {
		return nil, nil
	}
	var flows []ovs.Flow
	var groups []ovs.GroupEntry
	snat := false
	for _, e := range entries {
		flows = append(flows, p.entryFlows(e)...)
		if p.Protocol == ovs.ProtoUDP {
			flows = append(flows, p.udpBuckets(e)...)
		} else {
			groups = append(groups, p.group(e))
		}
		snat = snat || e.snat
	}
	for _, ep := range p.dnatEndpoints(entries) {
		flows = append(flows, p.dnatFlows(ep, snat, owner)...)
	}
	return flows, groups
}

// entryFlows match a new connection to e's address and port.
func (p ServicePort) entryFlows(e entry) []ovs.Flow {
	base := ovs.NewFlow(ovs.TableServiceLB, 0).MatchProto(p.Protocol).MatchNwDst(ovs.HostPrefix(e.vip)).MatchTpDst(e.port)
	load := []ovs.Action{ovs.ServicePortIDField.Load(uint64(p.ID))}
	if e.snat {
		load = append(load, ovs.ServiceSNAT.Load())
	}
	if p.Protocol == ovs.ProtoUDP && e.nodePort {
		load = append(load, ovs.NodePortEntry.Load())
	}
	if p.AffinityTimeout == 0 {
		f := base
		f.Priority = PriorityEntry
		if p.Protocol == ovs.ProtoUDP {
			f = f.MatchMark(ovs.LBStateField.Value(0)) // the first pass only
		}
		return []ovs.Flow{f.Action(append(load, p.choose(e)...)...)}
	}
	first, then := base, base
	first.Priority, then.Priority = PriorityAffinityEntry, PriorityAffinitySelect
	return []ovs.Flow{
		first.MatchMark(ovs.LBStateField.Value(0)).
			Action(append(load, ovs.ResubmitTo(ovs.TableServiceAffinity), ovs.ResubmitTo(ovs.TableServiceLB))...),
		// Any state: LBStateToSelect (no learned choice), or a learned
		// choice whose endpoint is gone (no DNAT flow matched it).
		then.Action(p.choose(e)...),
	}
}

// choose picks one of e's endpoints for a new connection: its select group
// for TCP and SCTP; for UDP a multipath over the 5-tuple into
// EndpointIndexField and a resubmit to the index's flow (udpBuckets). The
// userspace datapath's group hash leaves UDP ports out (ovs.GroupEntry).
func (p ServicePort) choose(e entry) []ovs.Action {
	if p.Protocol != ovs.ProtoUDP {
		return []ovs.Action{ovs.GroupAction(e.group)}
	}
	return []ovs.Action{ovs.LBStateToSelect.Load(),
		ovs.NewMultipath("symmetric_l3l4+udp", uint16(len(e.endpoints)), ovs.EndpointIndexField),
		ovs.ResubmitTo(ovs.TableServiceLB)}
}

// udpBuckets are the flows that load the endpoint multipath chose: what a
// select group's buckets do for the other protocols.
func (p ServicePort) udpBuckets(e entry) []ovs.Flow {
	entryBit := uint64(0)
	if e.nodePort {
		entryBit = 1
	}
	var flows []ovs.Flow
	for i, ep := range e.endpoints {
		flows = append(flows, ovs.NewFlow(ovs.TableServiceLB, PriorityUDPBucket).MatchProto(p.Protocol).
			With(ovs.ServicePortIDField.Match(uint64(p.ID)), ovs.LBStateToSelect.Match(),
				ovs.NodePortEntry.Field.Match(entryBit), ovs.EndpointIndexField.Match(uint64(i))).
			Action(ovs.EndpointIPField.Load(addrValue(ep.IP)), ovs.EndpointPortField.Load(uint64(ep.Port)),
				ovs.LBStateSelected.Load(), ovs.ResubmitTo(ovs.TableServiceLB)))
	}
	return flows
}

// group is e's select group: one bucket per endpoint, equal weights. A
// bucket only loads the endpoint and resubmits: OVS runs bucket actions as
// an OpenFlow action set, which keeps set/load actions and one
// output/group/resubmit/ct and silently drops the rest (a learn there never
// runs: seen on OVS 3.1). The affinity learn is in the DNAT flows.
func (p ServicePort) group(e entry) ovs.GroupEntry {
	buckets := make([]ovs.Bucket, 0, len(e.endpoints))
	for _, ep := range e.endpoints {
		buckets = append(buckets, ovs.NewBucket(bucketWeight, ovs.EndpointIPField.Load(addrValue(ep.IP)),
			ovs.EndpointPortField.Load(uint64(ep.Port)), ovs.LBStateSelected.Load(), ovs.ResubmitTo(ovs.TableServiceLB)))
	}
	return ovs.SelectGroup(e.group, buckets...)
}

// learn records, in ServiceAffinity, the client's choice for this address
// and port until the client makes no new connection for the affinity
// timeout. It runs in the DNAT flow of every new connection of an affinity
// port, chosen by the group or by an earlier learned flow, so each new
// connection refreshes the choice, as kube-proxy's "recent --set" does.
// Learned flows carry the Service's learned cookie: OVS deletes them
// (delete_learned) when the Service's last DNAT flow goes; a learned choice
// of an endpoint that left before that matches no DNAT flow, and the group
// chooses again (PriorityAffinitySelect).
func (p ServicePort) learn(owner pipeline.Owner) ovs.Learn {
	secs := min(p.AffinityTimeout.Seconds(), 65535)
	return ovs.NewLearn(ovs.TableServiceAffinity, 200).WithIdleTimeout(uint16(secs)).WithDeleteLearned().
		WithCookie(ovs.CookieFor(ovs.CookieLearned, owner.String())).
		MatchProto(p.Protocol).MatchSame(ovs.FieldIPSrc, ovs.FieldIPDst, l4Dst[p.Protocol]).
		LoadFrom(ovs.EndpointIPField, ovs.EndpointIPField).LoadFrom(ovs.EndpointPortField, ovs.EndpointPortField).
		LoadMark(ovs.LBStateSelected)
}

var l4Dst = map[ovs.Proto]ovs.FieldID{ovs.ProtoTCP: ovs.FieldTCPDst, ovs.ProtoUDP: ovs.FieldUDPDst, ovs.ProtoSCTP: ovs.FieldSCTPDst}

// dnatEndpoints are the endpoints of every entry, once each.
func (p ServicePort) dnatEndpoints(entries []entry) []Endpoint {
	var out []Endpoint
	for _, e := range entries {
		out = append(out, e.endpoints...)
	}
	slices.SortFunc(out, compareEndpoints)
	return slices.CompactFunc(out, func(a, b Endpoint) bool { return compareEndpoints(a, b) == 0 })
}

// dnatFlows commit a new connection to ep with its DNAT and the flags its
// later packets need: the plain flow; with snat (the port has NodePort
// traffic to SNAT) a variant for packets flagged SNAT; for a local endpoint
// a hairpin variant for the endpoint reaching itself (SNATed too, so that
// its reply comes back through br0, and delivered out IN_PORT).
func (p ServicePort) dnatFlows(ep Endpoint, snat bool, owner pipeline.Owner) []ovs.Flow {
	match := ovs.NewFlow(ovs.TableServiceLB, PriorityDNAT).MatchProto(p.Protocol).
		With(ovs.ServicePortIDField.Match(uint64(p.ID)), ovs.EndpointIPField.Match(addrValue(ep.IP)),
			ovs.EndpointPortField.Match(uint64(ep.Port)), ovs.LBStateSelected.Match())
	commit := ovs.CTCommit().WithTable(ovs.TableServiceSNAT).WithDNAT(ep.IP, ep.Port)
	var pre []ovs.Action
	if p.AffinityTimeout > 0 {
		pre = []ovs.Action{p.learn(owner)}
	}
	actions := func(more ...ovs.Action) []ovs.Action { return append(slices.Clone(pre), more...) }
	flows := []ovs.Flow{match.Action(actions(commit.WithMark(ovs.ServiceCT))...)}
	if snat {
		f := match.MatchMark(ovs.ServiceSNAT).Action(actions(commit.WithMark(ovs.ServiceCT, ovs.ServiceSNATCT))...)
		f.Priority = PriorityDNATSNAT
		flows = append(flows, f)
	}
	if ep.Local {
		f := match.MatchNwSrc(ovs.HostPrefix(ep.IP)).Action(actions(ovs.ServiceSNAT.Load(), ovs.ServiceHairpin.Load(),
			commit.WithMark(ovs.ServiceCT, ovs.ServiceSNATCT, ovs.HairpinCT))...)
		f.Priority = PriorityDNATHairpin
		flows = append(flows, f)
	}
	return flows
}

func addrValue(a netip.Addr) uint64 {
	b := a.As4()
	return uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
}
