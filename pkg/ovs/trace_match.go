package ovs

// This file holds the tracer's evaluation of each match clause.

func (m Proto) matches(p *Packet) bool {
	return m == p.Proto || m == ProtoIP && p.Proto.IsIP()
}

func (m InPort) matches(p *Packet) bool { return uint32(m) == p.InPort }

func (m AddrMatch) matches(p *Packet) bool {
	switch m.Field {
	case "nw_src", "arp_spa":
		return p.Src.IsValid() && m.Prefix.Contains(p.Src)
	case "nw_dst", "arp_tpa":
		return p.Dst.IsValid() && m.Prefix.Contains(p.Dst)
	case "tun_src":
		return p.TunSrc.IsValid() && m.Prefix.Contains(p.TunSrc)
	case "ct_nw_src":
		return p.ct.valid && p.ct.src.IsValid() && m.Prefix.Contains(p.ct.src)
	case "ct_nw_dst":
		return p.ct.valid && p.ct.dst.IsValid() && m.Prefix.Contains(p.ct.dst)
	}
	return false
}

func (m MACMatch) matches(p *Packet) bool {
	var v MAC
	switch m.Field {
	case "arp_sha", "dl_src":
		v = p.SrcMAC
	case "dl_dst":
		v = p.DstMAC
	default:
		return false
	}
	for i := range v {
		if (v[i]^m.Addr[i])&m.Mask[i] != 0 {
			return false
		}
	}
	return true
}

func (m PortMatch) matches(p *Packet) bool {
	var v uint16
	switch m.Field {
	case "tp_dst":
		v = p.TpDst
	case "tp_src":
		v = p.TpSrc
	case "ct_tp_dst":
		v = p.ct.tpDst
	case "ct_tp_src":
		v = p.ct.tpSrc
	default:
		return false
	}
	return (v^m.Port)&m.Mask == 0
}

func (m NwProto) matches(p *Packet) bool {
	if n, ok := protoNumbers[p.Proto]; ok {
		return n == uint8(m)
	}
	return p.Proto == ProtoIP && p.IPProto == uint8(m)
}

func (m RegMatch) matches(p *Packet) bool {
	return (p.Regs[m.Field.Reg]^m.Value)&m.Mask == 0
}

func (m TunID) matches(p *Packet) bool { return uint64(m) == p.TunID }

// matches on its own is false: conj_id is resolved by the tracer per level.
func (m ConjID) matches(*Packet) bool { return false }

func (m CtState) matches(p *Packet) bool {
	return p.CtState&m.Set == m.Set && p.CtState&m.Clear == 0
}

func (m MarkMatch) matches(p *Packet) bool {
	v := p.PktMark
	if m.Field == FieldCtMark {
		v = p.CtMark
	}
	return (v^m.Value)&m.Mask == 0
}

func (m CtLabelMatch) matches(p *Packet) bool {
	return p.CtLabel.and(m.Mask) == m.Value.and(m.Mask)
}

func (m CtZone) matches(p *Packet) bool { return uint16(m) == p.CtZone }

func (m CtNwProto) matches(p *Packet) bool { return p.ct.valid && p.ct.proto == uint8(m) }
