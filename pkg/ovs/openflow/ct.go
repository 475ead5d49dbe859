package openflow

import (
	"fmt"
	"net/netip"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// conntrack appends NXAST_CT: flags, an immediate zone, the recirculation
// table, then its nested actions — nat first, then the exec loads, the
// order in which ovs-ofctl encodes "ct(…,nat(…),exec(…))".
func (m *message) conntrack(ct ovs.ConnTrack) {
	start := m.nxStart(nxCT)
	var flags uint16
	if ct.Commit {
		flags |= nxCTFlagCommit
	}
	m.u16(flags)
	m.u32(0) // zone_src: immediate zone
	m.u16(ct.Zone)
	table := uint8(nxCTRecircNone)
	if ct.Recirc {
		table = ct.Table.ID
	}
	m.u8(table)
	m.zeros(3)
	m.u16(0) // alg
	if ct.NATSpec.Kind != ovs.NATNone || ct.NAT {
		m.nat(ct.NATSpec)
	}
	for _, l := range ct.Exec.Loads() {
		m.regLoad(l.Field, l.Value)
	}
	m.nxFinish(start)
}

// nat appends NXAST_NAT; a zero spec is the bare "nat". Like ovs-ofctl, a
// range end is sent only when it differs from its start.
func (m *message) nat(n ovs.NATSpec) {
	start := m.nxStart(nxNAT)
	m.zeros(2)
	var flags, present uint16
	switch n.Kind {
	case ovs.NATSrc:
		flags |= natFlagSrc
	case ovs.NATDst:
		flags |= natFlagDst
	}
	for _, f := range [][2]uint16{{uint16(ovs.NATPersistent), natFlagPersistent}, {uint16(ovs.NATHash), natFlagHash}, {uint16(ovs.NATRandom), natFlagRandom}} {
		if uint16(n.Flags)&f[0] != 0 {
			flags |= f[1]
		}
	}
	m.u16(flags)
	presentAt := len(m.b)
	m.u16(0)
	if n.Kind != ovs.NATNone {
		present = m.natRange(n)
	}
	m.setU16(presentAt, present)
	m.nxFinish(start)
}

func (m *message) natRange(n ovs.NATSpec) uint16 {
	var present uint16
	if n.Addr.Is4() && !n.Addr.IsUnspecified() {
		m.b = append(m.b, addr4(n.Addr)...)
		present |= natRangeIPv4Min
	}
	if n.AddrMax.Is4() && n.AddrMax.Compare(n.Addr) > 0 {
		m.b = append(m.b, addr4(n.AddrMax)...)
		present |= natRangeIPv4Max
	}
	if n.Port != 0 {
		m.u16(n.Port)
		present |= natRangeProtoMin
	}
	if n.PortMax > n.Port {
		m.u16(n.PortMax)
		present |= natRangeProtoMax
	}
	return present
}

// decodeCT decodes NXAST_CT (the reader is past the subtype).
func decodeCT(r *reader) (ovs.Action, error) {
	flags, zoneSrc, zone, table := r.u16(), r.u32(), r.u16(), r.u8()
	r.skip(3)
	alg := r.u16()
	if r.err != nil {
		return nil, r.err
	}
	if flags&^nxCTFlagCommit != 0 || zoneSrc != 0 || alg != 0 {
		return nil, fmt.Errorf("unsupported ct (flags %#x, zone from a field %#x, alg %d)", flags, zoneSrc, alg)
	}
	ct := ovs.ConnTrack{Commit: flags&nxCTFlagCommit != 0, Zone: zone}
	if table != nxCTRecircNone {
		t, _ := ovs.TableByID(table)
		ct = ct.WithTable(t)
	}
	for r.left() > 0 {
		if err := decodeNested(&ct, r); err != nil {
			return nil, fmt.Errorf("ct: %w", err)
		}
	}
	return ct, r.err
}

// decodeNested decodes one action nested in ct: nat, or a load into
// ct_mark or ct_label (exec).
func decodeNested(ct *ovs.ConnTrack, r *reader) error {
	typ, length := r.u16(), int(r.u16())
	body := r.sub(length - 4)
	if r.err != nil || typ != actExperimenter || body.u32() != nxVendor {
		return fmt.Errorf("unsupported nested action (type %d)", typ)
	}
	switch sub := body.u16(); sub {
	case nxNAT:
		return decodeNAT(ct, body)
	case nxRegLoad:
		a, err := decodeRegLoad(body)
		if err != nil {
			return err
		}
		l, ok := a.(ovs.Load)
		if !ok {
			return fmt.Errorf("exec: unsupported %s", a)
		}
		ct.Exec, err = ct.Exec.With(l.Field, l.Value)
		return err
	default:
		return fmt.Errorf("unsupported nested Nicira action %d", sub)
	}
}

func decodeNAT(ct *ovs.ConnTrack, r *reader) error {
	r.skip(2)
	flags, present := r.u16(), r.u16()
	var n ovs.NATSpec
	switch {
	case flags&natFlagSrc != 0:
		n.Kind = ovs.NATSrc
	case flags&natFlagDst != 0:
		n.Kind = ovs.NATDst
	}
	for _, f := range [][2]uint16{{natFlagPersistent, uint16(ovs.NATPersistent)}, {natFlagHash, uint16(ovs.NATHash)}, {natFlagRandom, uint16(ovs.NATRandom)}} {
		if flags&f[0] != 0 {
			n.Flags |= ovs.NATFlags(f[1])
		}
	}
	if present&natRangeIPv4Min != 0 {
		n.Addr = netip.AddrFrom4([4]byte(r.take(4)))
	}
	if present&natRangeIPv4Max != 0 {
		n.AddrMax = netip.AddrFrom4([4]byte(r.take(4)))
	}
	if present&natRangeProtoMin != 0 {
		n.Port = r.u16()
	}
	if present&natRangeProtoMax != 0 {
		n.PortMax = r.u16()
	}
	if present&^(natRangeIPv4Min|natRangeIPv4Max|natRangeProtoMin|natRangeProtoMax) != 0 {
		return fmt.Errorf("unsupported nat range (IPv6)")
	}
	if n.Kind == ovs.NATNone {
		ct.NAT = true
		return r.err
	}
	ct.NATSpec = n
	return r.err
}
