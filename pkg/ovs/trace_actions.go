package ovs

import (
	"fmt"
	"net/netip"
)

// This file holds the tracer's execution of actions and its view of packet
// fields.

// apply executes f's actions; goto and ct(table=) continue after the list.
// A tunnel destination applies to the outputs of the flow that set it: the
// tracer does not know which port is the tunnel, and our pipeline always sets
// tun_dst and outputs to vxlan0 in one flow.
func (tr *tracer) apply(f Flow, p *Packet) error {
	tr.tunDst = netip.Addr{}
	return tr.applyActions(f.Actions, f.Table, p)
}

func (tr *tracer) applyActions(actions []Action, table Table, p *Packet) error {
	var next *Table
	for _, a := range actions {
		switch a := a.(type) {
		case GotoTable:
			next = &a.Table
		case ConnTrack:
			tr.conntrack(a, p)
			if a.Recirc {
				next = &a.Table
			}
		default:
			if err := tr.applyOne(a, table, p); err != nil {
				return err
			}
		}
	}
	if next != nil {
		return tr.run(*next, p)
	}
	return nil
}

// applyOne executes one action that does not end the action list.
func (tr *tracer) applyOne(a Action, table Table, p *Packet) error {
	switch a := a.(type) {
	case LoadReg:
		p.Regs[a.Field.Reg] = a.Value
	case Load:
		writeBits(p, a.Field, U128{Lo: a.Value})
	case Move:
		writeBits(p, a.Dst.bits(), readBits(p, a.Src.bits()))
	case SetTunDst:
		tr.tunDst = a.Addr
	case SetEthDst:
		p.DstMAC = a.Addr
	case SetEthSrc:
		p.SrcMAC = a.Addr
	case SetIPSrc:
		p.Src = a.Addr
	case SetIPDst:
		p.Dst = a.Addr
	case OutputPort:
		tr.outputUnlessInPort(p, a.Port)
	case OutputReg:
		tr.outputUnlessInPort(p, p.Regs[a.Field.Reg])
	case OutputInPort:
		tr.output(p, p.InPort)
	case CtClear:
		p.CtState, p.CtZone, p.CtMark, p.CtLabel, p.ct = 0, 0, 0, U128{}, ctTuple{}
	case Group:
		return tr.group(a.ID, table, p)
	case Learn:
		return tr.learn(a, p)
	case Multipath:
		// Like a select group's bucket: Packet.Bucket chooses the link.
		n := int(a.NLinks)
		writeBits(p, a.Dst, U128{Lo: uint64(((p.Bucket % n) + n) % n)})
	case Resubmit:
		saved := tr.tunDst
		if err := tr.run(a.Table, p); err != nil {
			return err
		}
		tr.tunDst = saved
	}
	return nil
}

// outputUnlessInPort outputs to port, except to the packet's own in_port:
// OVS drops that (IN_PORT, OutputInPort, is the explicit way back).
func (tr *tracer) outputUnlessInPort(p *Packet, port uint32) {
	if port != p.InPort {
		tr.output(p, port)
	}
}

func (tr *tracer) output(p *Packet, port uint32) {
	v := Verdict{Kind: VerdictOutput, Port: port, Table: tr.last}
	if tr.tunDst.IsValid() {
		v = Verdict{Kind: VerdictTunnel, Port: port, TunDst: tr.tunDst, TunID: p.TunID, Table: tr.last}
	}
	tr.trace.Outputs = append(tr.trace.Outputs, v)
	tr.trace.OutputPackets = append(tr.trace.OutputPackets, *p)
}

// group runs group id: the chosen bucket (select) or every bucket (all), each
// on a copy of the packet, as OVS does. An unknown group is recorded as a
// Group verdict (TraceFlows without groups).
func (tr *tracer) group(id uint32, table Table, p *Packet) error {
	g, ok := tr.groups[id]
	if !ok {
		tr.trace.Outputs = append(tr.trace.Outputs, Verdict{Kind: VerdictGroup, Port: id, Table: table})
		tr.trace.OutputPackets = append(tr.trace.OutputPackets, *p)
		return nil
	}
	if tr.depth++; tr.depth > maxSteps {
		return fmt.Errorf("trace: group %d: groups nested more than %d deep (loop?)", id, maxSteps)
	}
	defer func() { tr.depth-- }()
	n := len(g.Buckets)
	if n == 0 {
		tr.trace.Groups = append(tr.trace.Groups, GroupStep{ID: id, Type: g.Type, Bucket: -1})
		return nil
	}
	if g.Type == GroupSelect {
		return tr.bucket(g, ((p.Bucket%n)+n)%n, table, p)
	}
	for i := range g.Buckets {
		if err := tr.bucket(g, i, table, p); err != nil {
			return err
		}
	}
	return nil
}

func (tr *tracer) bucket(g GroupEntry, i int, table Table, p *Packet) error {
	tr.trace.Groups = append(tr.trace.Groups, GroupStep{ID: g.ID, Type: g.Type, Bucket: i})
	saved, savedTun := *p, tr.tunDst
	err := tr.applyActions(g.Buckets[i].Actions, table, p)
	*p, tr.tunDst = saved, savedTun
	return err
}

// readBits returns the value of bits b of the packet, unshifted.
func readBits(p *Packet, b BitField) U128 {
	return readField(p, b.Field).shr(int(b.Lo)).and(onesU128(b.Width()))
}

// writeBits stores v into bits b of the packet.
func writeBits(p *Packet, b BitField, v U128) {
	m := b.mask128()
	writeField(p, b.Field, readField(p, b.Field).andNot(m).or(v.shl(int(b.Lo)).and(m)))
}

func readField(p *Packet, f FieldID) U128 {
	if f.IsReg() {
		return U128{Lo: uint64(p.Regs[f])}
	}
	var v uint64
	switch f {
	case FieldCtLabel:
		return p.CtLabel
	case FieldPktMark:
		v = uint64(p.PktMark)
	case FieldCtMark:
		v = uint64(p.CtMark)
	case FieldTunID:
		v = p.TunID
	case FieldInPort:
		v = uint64(p.InPort)
	case FieldEthSrc:
		v = macToUint(p.SrcMAC)
	case FieldEthDst:
		v = macToUint(p.DstMAC)
	case FieldEthType:
		v = ethType(p.Proto)
	case FieldIPProto:
		v = uint64(ipProto(p))
	case FieldIPSrc:
		v = addrUint(p.Src)
	case FieldIPDst:
		v = addrUint(p.Dst)
	default:
		v = uint64(readPort(p, f))
	}
	return U128{Lo: v}
}

func writeField(p *Packet, f FieldID, v U128) {
	if f.IsReg() {
		p.Regs[f] = uint32(v.Lo)
		return
	}
	switch f {
	case FieldCtLabel:
		p.CtLabel = v
	case FieldPktMark:
		p.PktMark = uint32(v.Lo)
	case FieldCtMark:
		p.CtMark = uint32(v.Lo)
	case FieldTunID:
		p.TunID = v.Lo
	case FieldInPort:
		p.InPort = uint32(v.Lo)
	case FieldEthSrc:
		p.SrcMAC = macFromUint(v.Lo)
	case FieldEthDst:
		p.DstMAC = macFromUint(v.Lo)
	case FieldIPSrc:
		p.Src = uintAddr(v.Lo)
	case FieldIPDst:
		p.Dst = uintAddr(v.Lo)
	case FieldTCPSrc, FieldUDPSrc, FieldSCTPSrc:
		p.TpSrc = uint16(v.Lo)
	case FieldTCPDst, FieldUDPDst, FieldSCTPDst:
		p.TpDst = uint16(v.Lo)
	}
}

// readPort reads a transport port field; it is 0 unless the packet has that
// protocol, as in OVS.
func readPort(p *Packet, f FieldID) uint16 {
	want := map[FieldID]Proto{FieldTCPSrc: ProtoTCP, FieldTCPDst: ProtoTCP, FieldUDPSrc: ProtoUDP,
		FieldUDPDst: ProtoUDP, FieldSCTPSrc: ProtoSCTP, FieldSCTPDst: ProtoSCTP}[f]
	switch {
	case want == 0 || p.Proto != want:
		return 0
	case f == FieldTCPSrc || f == FieldUDPSrc || f == FieldSCTPSrc:
		return p.TpSrc
	}
	return p.TpDst
}

func ethType(p Proto) uint64 {
	switch {
	case p == ProtoARP:
		return 0x806
	case p.IsIP():
		return 0x800
	}
	return 0
}

func ipProto(p *Packet) uint8 {
	if n, ok := protoNumbers[p.Proto]; ok {
		return n
	}
	return p.IPProto
}

func addrUint(a netip.Addr) uint64 {
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
}

func uintAddr(v uint64) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
