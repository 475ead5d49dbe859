package ovs

import "net/netip"

// This file holds the tracer's model of conntrack: one connection, described
// by the Packet (see Packet and TraceWithGroups).

// ctTuple is a connection's original-direction tuple, what ct_nw_src/dst,
// ct_tp_src/dst and ct_nw_proto match.
type ctTuple struct {
	valid        bool
	src, dst     netip.Addr
	tpSrc, tpDst uint16
	proto        uint8
}

// conntrack applies one ct action to p.
func (tr *tracer) conntrack(a ConnTrack, p *Packet) {
	if !p.ct.valid {
		p.ct = origTuple(p)
	}
	state := ctResult(p)
	p.CtZone = a.Zone
	if a.Commit && state&CtNew != 0 {
		bindNAT(a.NATSpec, a.Zone, p)
	}
	if a.NAT || a.NATSpec.Kind != NATNone {
		state |= translate(p, a.Zone)
	}
	if a.Commit {
		e := a.Exec
		p.CtMark = p.CtMark&^e.MarkMask | e.Mark&e.MarkMask
		p.CtLabel = p.CtLabel.andNot(e.LabelMask).or(e.Label.and(e.LabelMask))
	}
	p.CtState = state
}

func ctResult(p *Packet) CtFlags {
	switch {
	case p.CtReply:
		return CtTrk | CtEst | CtRpl
	case p.CtEst:
		return CtTrk | CtEst
	}
	return CtTrk | CtNew
}

// origTuple derives the connection's original-direction tuple from the
// packet: a new or original-direction packet is the original direction; a
// reply is reversed and un-NATed.
func origTuple(p *Packet) ctTuple {
	t := ctTuple{valid: true, src: p.Src, dst: p.Dst, tpSrc: p.TpSrc, tpDst: p.TpDst, proto: ipProto(p)}
	if !p.CtReply {
		return t
	}
	t.src, t.dst, t.tpSrc, t.tpDst = p.Dst, p.Src, p.TpDst, p.TpSrc
	if !p.CtSNAT.IsZero() {
		t.src, t.tpSrc = p.CtSNAT.From.Addr(), p.CtSNAT.From.Port()
	}
	if !p.CtDNAT.IsZero() {
		t.dst, t.tpDst = p.CtDNAT.From.Addr(), p.CtDNAT.From.Port()
	}
	return t
}

// bindNAT records the NAT a committing ct sets up for a new connection.
// The tracer picks the first address and port of a range.
func bindNAT(n NATSpec, zone uint16, p *Packet) {
	switch n.Kind {
	case NATDst:
		to := n.Port
		if to == 0 {
			to = p.TpDst
		}
		p.CtDNAT = NATBinding{From: netip.AddrPortFrom(p.Dst, p.TpDst), To: netip.AddrPortFrom(n.Addr, to), Zone: zone}
	case NATSrc:
		to := n.Port
		if to == 0 {
			to = p.TpSrc
		}
		p.CtSNAT = NATBinding{From: netip.AddrPortFrom(p.Src, p.TpSrc), To: netip.AddrPortFrom(n.Addr, to), Zone: zone}
	}
}

// translate applies the connection's NAT bindings held in zone to p and
// returns the ct_state bits that report it.
func translate(p *Packet, zone uint16) CtFlags {
	var s CtFlags
	dnat, snat := p.CtDNAT, p.CtSNAT
	if dnat.Zone != zone {
		dnat = NATBinding{}
	}
	if snat.Zone != zone {
		snat = NATBinding{}
	}
	if p.CtReply {
		if rewrite(&p.Src, &p.TpSrc, dnat.To, dnat.From, dnat) {
			s |= CtDNAT
		}
		if rewrite(&p.Dst, &p.TpDst, snat.To, snat.From, snat) {
			s |= CtSNAT
		}
		return s
	}
	if rewrite(&p.Dst, &p.TpDst, dnat.From, dnat.To, dnat) {
		s |= CtDNAT
	}
	if rewrite(&p.Src, &p.TpSrc, snat.From, snat.To, snat) {
		s |= CtSNAT
	}
	return s
}

// rewrite replaces addr:port with to when it equals from (a zero port in
// from matches any port and a zero port in to keeps it). The state bit is
// reported once the binding exists, also when the packet already carries the
// translated address.
func rewrite(addr *netip.Addr, port *uint16, from, to netip.AddrPort, b NATBinding) bool {
	if b.IsZero() {
		return false
	}
	if *addr == from.Addr() && (from.Port() == 0 || *port == from.Port()) {
		*addr = to.Addr()
		if to.Port() != 0 {
			*port = to.Port()
		}
	}
	return true
}
