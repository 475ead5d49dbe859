package ovs

import "fmt"

// learn records the flow l would install for p.
func (tr *tracer) learn(l Learn, p *Packet) error {
	f, err := LearnedFlow(l, *p)
	if err != nil {
		return fmt.Errorf("trace: %w", err)
	}
	tr.trace.Learned = append(tr.trace.Learned, f)
	return nil
}

// LearnedFlow returns the flow that l installs when packet p executes it,
// in the form OVS dumps it (table, priority, the learn's cookie, the match
// built from the match specs, the actions from the load and output specs;
// timeouts are not part of Flow). It fails for learned matches the tracer
// cannot express (a sub-range of an IP, port or MAC field).
func LearnedFlow(l Learn, p Packet) (Flow, error) {
	f := Flow{Table: l.Table, Priority: l.Priority, Cookie: l.Cookie}
	var ethType, nwProto uint64
	for _, s := range l.Specs {
		switch s.Kind {
		case LearnMatchField, LearnMatchValue:
			v := U128{Lo: s.Value}
			if s.Kind == LearnMatchField {
				v = readBits(&p, s.Src)
			}
			switch s.Dst.Field {
			case FieldEthType:
				ethType = v.Lo
				continue
			case FieldIPProto:
				nwProto = v.Lo
				continue
			}
			m, err := learnedMatch(s.Dst, v.Lo)
			if err != nil {
				return Flow{}, fmt.Errorf("%s: %w", l, err)
			}
			f.Match = addMatch(f.Match, m)
		case LearnLoadField:
			f.Actions = append(f.Actions, s.Dst.Load(readBits(&p, s.Src).Lo))
		case LearnLoadValue:
			f.Actions = append(f.Actions, s.Dst.Load(s.Value))
		case LearnOutputField:
			f.Actions = append(f.Actions, Output(uint32(readBits(&p, s.Src).Lo)))
		}
	}
	f.Match = append(learnedProto(ethType, nwProto), f.Match...)
	return f, nil
}

// learnedProto turns eth_type and nw_proto specs into our protocol clauses,
// as OVS prints them ("tcp", or "ip,nw_proto=47").
func learnedProto(ethType, nwProto uint64) []MatchField {
	switch {
	case ethType == 0x806:
		return []MatchField{ProtoARP}
	case ethType != 0x800:
		return nil
	case nwProto == 0:
		return []MatchField{ProtoIP}
	}
	for p, n := range protoNumbers {
		if uint64(n) == nwProto {
			return []MatchField{p}
		}
	}
	return []MatchField{ProtoIP, NwProto(nwProto)}
}

// learnedMatch is the match on bits b equal to v.
func learnedMatch(b BitField, v uint64) (MatchField, error) {
	f := b.Field
	switch {
	case f.IsReg() || f == FieldPktMark || f == FieldCtMark || f == FieldCtLabel:
		return b.Match(v), nil
	case !b.Whole():
		return nil, fmt.Errorf("cannot model a learned match on %s", b)
	}
	switch f {
	case FieldInPort:
		return InPort(v), nil
	case FieldTunID:
		return TunID(v), nil
	case FieldEthSrc:
		return MACMatch{Field: "dl_src", Addr: macFromUint(v), Mask: FullMAC}, nil
	case FieldEthDst:
		return EthDst(macFromUint(v)), nil
	case FieldIPSrc:
		return NwSrc(HostPrefix(uintAddr(v))), nil
	case FieldIPDst:
		return NwDst(HostPrefix(uintAddr(v))), nil
	case FieldTCPSrc, FieldUDPSrc, FieldSCTPSrc:
		return PortMatch{Field: "tp_src", Port: uint16(v), Mask: 0xffff}, nil
	case FieldTCPDst, FieldUDPDst, FieldSCTPDst:
		return TpDst(uint16(v)), nil
	}
	return nil, fmt.Errorf("cannot model a learned match on %s", b)
}
