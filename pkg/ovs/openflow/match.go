package openflow

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// Matches are encoded as OXM TLVs in an ofp_match. OVS checks each field's
// prerequisites against the fields before it, so eth_type and ip_proto go
// first, then ct_state (which the ct_nw_*/ct_tp_* fields need), then
// ct_nw_proto, then the rest in the flow's order.

// protoNumbers are the IP protocol numbers of ovs.Proto's transports.
var protoNumbers = map[ovs.Proto]uint8{ovs.ProtoTCP: 6, ovs.ProtoUDP: 17, ovs.ProtoSCTP: 132, ovs.ProtoICMP: 1}

// l3l4 is what a match says about the packet's protocols: whether it is
// ARP, and its IP protocol number (0: unknown).
type l3l4 struct {
	arp   bool
	proto uint8
}

func protocolsOf(match []ovs.MatchField) l3l4 {
	var p l3l4
	for _, f := range match {
		switch f := f.(type) {
		case ovs.Proto:
			p.arp = f == ovs.ProtoARP
			if n, ok := protoNumbers[f]; ok {
				p.proto = n
			}
		case ovs.NwProto:
			p.proto = uint8(f)
		}
	}
	return p
}

// rank orders match fields by prerequisite.
func rank(f ovs.MatchField) int {
	switch f.(type) {
	case ovs.InPort:
		return 0
	case ovs.Proto:
		return 1
	case ovs.NwProto:
		return 2
	case ovs.CtState:
		return 3
	case ovs.CtNwProto:
		return 4
	}
	return 5
}

// match appends an ofp_match holding fields.
func (m *message) match(fields []ovs.MatchField) {
	start := len(m.b)
	m.u16(1) // OFPMT_OXM
	m.u16(0)
	p := protocolsOf(fields)
	for r := 0; r <= 5; r++ {
		for _, f := range fields {
			if rank(f) == r {
				m.field(f, p)
			}
		}
	}
	m.setU16(start+2, uint16(len(m.b)-start))
	m.padTo(start)
}

// field appends the TLVs of one match field.
func (m *message) field(f ovs.MatchField, p l3l4) {
	switch f := f.(type) {
	case ovs.InPort:
		m.exact32(hInPort, uint32(f))
	case ovs.Proto:
		m.proto(f)
	case ovs.NwProto:
		m.tlvN(hIPProto, uint64(f), 0, false)
	case ovs.AddrMatch:
		m.addr(f, p)
	case ovs.MACMatch:
		m.mac(f)
	case ovs.PortMatch:
		m.port(f, p)
	case ovs.RegMatch:
		m.masked32(hReg(f.Field.Reg), f.Value, f.Mask)
	case ovs.MarkMatch:
		h := hPktMark
		if f.Field == ovs.FieldCtMark {
			h = hCtMark
		}
		m.masked32(h, f.Value, f.Mask)
	case ovs.CtLabelMatch:
		m.label(f)
	case ovs.TunID:
		m.tlvN(hTunnelID, uint64(f), 0, false)
	case ovs.ConjID:
		m.exact32(hConjID, uint32(f))
	case ovs.CtState:
		m.masked32(hCtState, uint32(f.Set), uint32(f.Set|f.Clear))
	case ovs.CtZone:
		m.tlvN(hCtZone, uint64(f), 0, false)
	case ovs.CtNwProto:
		m.tlvN(hCtNwProto, uint64(f), 0, false)
	default:
		m.fail(fmt.Errorf("match field %q has no OpenFlow encoding", f))
	}
}

func (m *message) proto(p ovs.Proto) {
	if p == ovs.ProtoARP {
		m.tlvN(hEthType, 0x0806, 0, false)
		return
	}
	m.tlvN(hEthType, 0x0800, 0, false)
	if n, ok := protoNumbers[p]; ok {
		m.tlvN(hIPProto, uint64(n), 0, false)
	}
}

var addrHeaders = map[string]oxmHeader{
	"nw_src": hIPv4Src, "nw_dst": hIPv4Dst, "arp_spa": hARPSpa, "arp_tpa": hARPTpa,
	"tun_src": hTunIPv4Src, "tun_dst": hTunIPv4Dst, "ct_nw_src": hCtNwSrc, "ct_nw_dst": hCtNwDst,
}

func (m *message) addr(f ovs.AddrMatch, p l3l4) {
	h, ok := addrHeaders[f.Field]
	switch {
	case p.arp && f.Field == "nw_src":
		h = hARPSpa
	case p.arp && f.Field == "nw_dst":
		h = hARPTpa
	}
	if !ok || !f.Prefix.Addr().Is4() {
		m.fail(fmt.Errorf("match field %q has no OpenFlow encoding", f))
		return
	}
	if f.Prefix.Bits() == 0 {
		return // matches everything: OVS would drop the clause too
	}
	a := f.Prefix.Masked().Addr().As4()
	m.masked32(h, binary.BigEndian.Uint32(a[:]), ^uint32(0)<<(32-f.Prefix.Bits()))
}

var macHeaders = map[string]oxmHeader{"dl_dst": hEthDst, "dl_src": hEthSrc, "arp_sha": hARPSha, "arp_tha": hARPTha}

func (m *message) mac(f ovs.MACMatch) {
	h, ok := macHeaders[f.Field]
	if !ok {
		m.fail(fmt.Errorf("match field %q has no OpenFlow encoding", f))
		return
	}
	var v ovs.MAC
	for i := range v {
		v[i] = f.Addr[i] & f.Mask[i]
	}
	if f.Mask == ovs.FullMAC {
		m.tlv(h, v[:], nil)
		return
	}
	m.tlv(h, v[:], f.Mask[:])
}

// portHeaders are the headers of tp_src/tp_dst by IP protocol.
var portHeaders = map[uint8][2]oxmHeader{6: {hTCPSrc, hTCPDst}, 17: {hUDPSrc, hUDPDst}, 132: {hSCTPSrc, hSCTPDst}}

func (m *message) port(f ovs.PortMatch, p l3l4) {
	var h oxmHeader
	switch f.Field {
	case "ct_tp_src":
		h = hCtTpSrc
	case "ct_tp_dst":
		h = hCtTpDst
	case "tp_src", "tp_dst":
		hs, ok := portHeaders[p.proto]
		if !ok {
			m.fail(fmt.Errorf("match field %q needs tcp, udp or sctp", f))
			return
		}
		h = hs[0]
		if f.Field == "tp_dst" {
			h = hs[1]
		}
	default:
		m.fail(fmt.Errorf("match field %q has no OpenFlow encoding", f))
		return
	}
	m.tlvN(h, uint64(f.Port&f.Mask), uint64(f.Mask), f.Mask != 0xffff)
}

func (m *message) label(f ovs.CtLabelMatch) {
	v := u128Bytes(ovs.U128{Hi: f.Value.Hi & f.Mask.Hi, Lo: f.Value.Lo & f.Mask.Lo})
	if f.Mask.Hi == ^uint64(0) && f.Mask.Lo == ^uint64(0) {
		m.tlv(hCtLabel, v, nil)
		return
	}
	m.tlv(hCtLabel, v, u128Bytes(f.Mask))
}

func u128Bytes(u ovs.U128) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, u.Hi), u.Lo)
}

func (m *message) exact32(h oxmHeader, v uint32) { m.masked32(h, v, ^uint32(0)) }

// masked32 appends a 32-bit field, masked unless mask is all ones.
func (m *message) masked32(h oxmHeader, v, mask uint32) {
	m.tlvN(h, uint64(v&mask), uint64(mask), mask != ^uint32(0))
}

// tlvN appends a TLV of a field of up to 8 bytes (h's length) holding v,
// and mask when masked.
func (m *message) tlvN(h oxmHeader, v, mask uint64, masked bool) {
	n := h.length()
	if masked {
		h = h.masked()
	}
	m.u32(uint32(h))
	m.uintN(v, n)
	if masked {
		m.uintN(mask, n)
	}
}

// uintN appends the low n bytes of v, big-endian.
func (m *message) uintN(v uint64, n int) {
	for i := n - 1; i >= 0; i-- {
		m.b = append(m.b, byte(v>>(8*i)))
	}
}

// tlv appends one OXM TLV; a nil mask is an exact match.
func (m *message) tlv(h oxmHeader, value, mask []byte) {
	if mask != nil {
		h = h.masked()
	}
	m.u32(uint32(h))
	m.b = append(m.b, value...)
	m.b = append(m.b, mask...)
}

// decodeMatch decodes an ofp_match (the reader is at its start) into typed
// fields: in_port first, then the protocol, then the rest in OVS's order.
// A field or value outside the typed model is an error.
func decodeMatch(r *reader) ([]ovs.MatchField, error) {
	typ, length := r.u16(), int(r.u16())
	if r.err != nil || typ != 1 || length < 4 {
		return nil, fmt.Errorf("bad ofp_match (type %d, length %d)", typ, length)
	}
	body := r.sub(length - 4)
	r.skip((8 - length%8) % 8)
	var d matchDecoder
	for body.left() > 0 && body.err == nil {
		h := oxmHeader(body.u32())
		v := body.take(h.length())
		if err := d.add(h, v); err != nil {
			return nil, err
		}
	}
	if body.err != nil || r.err != nil {
		return nil, fmt.Errorf("ofp_match: %w", errShort)
	}
	return d.fields()
}

// matchDecoder collects decoded fields; eth_type and ip_proto become an
// ovs.Proto at the end.
type matchDecoder struct {
	inPort            []ovs.MatchField
	ethType           uint16
	ipProto           uint8
	hasType, hasProto bool
	rest              []ovs.MatchField
}

func (d *matchDecoder) fields() ([]ovs.MatchField, error) {
	out := d.inPort
	switch {
	case !d.hasType && d.hasProto:
		return nil, fmt.Errorf("ip_proto without eth_type")
	case !d.hasType:
	case d.ethType == 0x0806 && !d.hasProto:
		out = append(out, ovs.ProtoARP)
	case d.ethType != 0x0800:
		return nil, fmt.Errorf("unsupported eth_type %#x", d.ethType)
	case !d.hasProto:
		out = append(out, ovs.ProtoIP)
	default:
		out = append(out, ipProto(d.ipProto)...)
	}
	return append(out, d.rest...), nil
}

func ipProto(n uint8) []ovs.MatchField {
	for p, num := range protoNumbers {
		if num == n {
			return []ovs.MatchField{p}
		}
	}
	return []ovs.MatchField{ovs.ProtoIP, ovs.NwProto(n)}
}

// value and mask of one TLV (mask nil when exact).
func split(h oxmHeader, v []byte) (value, mask []byte) {
	if !h.hasMask() {
		return v, nil
	}
	return v[:len(v)/2], v[len(v)/2:]
}

func (d *matchDecoder) add(h oxmHeader, v []byte) error {
	if len(v) != h.length() || h.hasMask() && len(v)%2 != 0 {
		return fmt.Errorf("bad TLV %s", h)
	}
	value, mask := split(h, v)
	f, err := d.decode(canonicalHeader(h), value, mask)
	if err != nil {
		return fmt.Errorf("match %s: %w", h, err)
	}
	if f != nil {
		d.rest = append(d.rest, f)
	}
	return nil
}

// decode returns the typed field of one TLV (nil for eth_type, ip_proto
// and in_port, which the decoder keeps aside).
func (d *matchDecoder) decode(h oxmHeader, value, mask []byte) (ovs.MatchField, error) {
	switch h {
	case hInPort:
		d.inPort = []ovs.MatchField{ovs.InPort(beUint(value))}
		return nil, exactOnly(mask)
	case hEthType:
		d.ethType, d.hasType = uint16(beUint(value)), true
		return nil, exactOnly(mask)
	case hIPProto:
		d.ipProto, d.hasProto = value[0], true
		return nil, exactOnly(mask)
	}
	if name, ok := addrNames[h]; ok {
		return addrMatch(name, value, mask)
	}
	if name, ok := macNames[h]; ok {
		return macMatch(name, value, mask), nil
	}
	if name, ok := portNames[h]; ok {
		return ovs.PortMatch{Field: name, Port: uint16(beUint(value)), Mask: uint16(maskOr(mask, 0xffff))}, nil
	}
	return decodeNX(h, value, mask)
}

// decodeNX decodes registers, marks and the conntrack fields.
func decodeNX(h oxmHeader, value, mask []byte) (ovs.MatchField, error) {
	v, mk := uint32(beUint(value)), uint32(maskOr(mask, 0xffffffff))
	switch h {
	case hPktMark:
		return ovs.MarkMatch{Field: ovs.FieldPktMark, Value: v, Mask: mk}, nil
	case hCtMark:
		return ovs.MarkMatch{Field: ovs.FieldCtMark, Value: v, Mask: mk}, nil
	case hCtLabel:
		return labelMatch(value, mask), nil
	case hTunnelID:
		return ovs.TunID(beUint(value)), exactOnly(mask)
	case hConjID:
		return ovs.ConjID(v), exactOnly(mask)
	case hCtState:
		return ovs.CtState{Set: ovs.CtFlags(v & mk), Clear: ovs.CtFlags(mk &^ v)}, nil
	case hCtZone:
		return ovs.CtZone(v), exactOnly(mask)
	case hCtNwProto:
		return ovs.CtNwProto(v), exactOnly(mask)
	}
	if uint32(h)>>16 == classNXM1 && uint32(h)>>9&0x7f < 16 && h.length() == 4 {
		return ovs.RegMatch{Field: ovs.RegisterByNumber(uint8(uint32(h) >> 9 & 0x7f)), Value: v, Mask: mk}, nil
	}
	return nil, fmt.Errorf("unsupported field")
}

var (
	addrNames = map[oxmHeader]string{hIPv4Src: "nw_src", hIPv4Dst: "nw_dst", hARPSpa: "arp_spa", hARPTpa: "arp_tpa",
		hTunIPv4Src: "tun_src", hTunIPv4Dst: "tun_dst", hCtNwSrc: "ct_nw_src", hCtNwDst: "ct_nw_dst"}
	macNames  = map[oxmHeader]string{hEthDst: "dl_dst", hEthSrc: "dl_src", hARPSha: "arp_sha", hARPTha: "arp_tha"}
	portNames = map[oxmHeader]string{hTCPSrc: "tp_src", hTCPDst: "tp_dst", hUDPSrc: "tp_src", hUDPDst: "tp_dst",
		hSCTPSrc: "tp_src", hSCTPDst: "tp_dst", hCtTpSrc: "ct_tp_src", hCtTpDst: "ct_tp_dst"}
)

func addrMatch(name string, value, mask []byte) (ovs.MatchField, error) {
	m := uint32(maskOr(mask, 0xffffffff))
	n := bits.LeadingZeros32(^m)
	if m<<n != 0 {
		return nil, fmt.Errorf("%s mask %#x is not a prefix", name, m)
	}
	a := netip.AddrFrom4([4]byte(value))
	return ovs.AddrMatch{Field: name, Prefix: netip.PrefixFrom(a, n).Masked()}, nil
}

func macMatch(name string, value, mask []byte) ovs.MatchField {
	m := ovs.MACMatch{Field: name, Addr: ovs.MAC(value), Mask: ovs.FullMAC}
	if mask != nil {
		m.Mask = ovs.MAC(mask)
	}
	return m
}

func labelMatch(value, mask []byte) ovs.MatchField {
	m := ovs.CtLabelMatch{Value: ovs.U128{Hi: binary.BigEndian.Uint64(value), Lo: binary.BigEndian.Uint64(value[8:])},
		Mask: ovs.U128{Hi: ^uint64(0), Lo: ^uint64(0)}}
	if mask != nil {
		m.Mask = ovs.U128{Hi: binary.BigEndian.Uint64(mask), Lo: binary.BigEndian.Uint64(mask[8:])}
	}
	return m
}

// beUint reads a big-endian value of up to 8 bytes.
func beUint(b []byte) uint64 {
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}

func maskOr(mask []byte, all uint64) uint64 {
	if mask == nil {
		return all
	}
	return beUint(mask)
}

func exactOnly(mask []byte) error {
	if mask != nil {
		return fmt.Errorf("masked match not supported")
	}
	return nil
}
