package openflow

import (
	"fmt"
	"slices"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// NXAST_MULTIPATH: fields, basis, pad, algorithm, max_link, arg, pad,
// ofs_nbits, dst (32 bytes in all). The names are ovs-ofctl's, in the
// order of OVS's nx_hash_fields and nx_mp_algorithm enums (their values
// are the indexes).
var (
	multipathFields     = []string{"eth_src", "symmetric_l4", "symmetric_l3l4", "symmetric_l3l4+udp", "nw_src", "nw_dst", "symmetric_l3"}
	multipathAlgorithms = []string{"modulo_n", "hash_threshold", "hrw", "iter_hash"}
)

// multipath appends NXAST_MULTIPATH. A field set or algorithm without a
// known number fails the encoding (ErrUnsupported).
func (m *message) multipath(a ovs.Multipath) {
	fields := slices.Index(multipathFields, a.Fields)
	alg := slices.Index(multipathAlgorithms, a.Algorithm)
	if fields < 0 || alg < 0 || a.NLinks == 0 {
		m.fail(fmt.Errorf("%s: fields, algorithm or link count without an OpenFlow encoding", a))
		return
	}
	start := m.nxStart(nxMultipath)
	m.u16(uint16(fields))
	m.u16(a.Basis)
	m.zeros(2)
	m.u16(uint16(alg))
	m.u16(a.NLinks - 1)
	m.u32(a.Arg)
	m.zeros(2)
	m.u16(ofsNbits(int(a.Dst.Lo), a.Dst.Width()))
	m.u32(uint32(fieldHeader(a.Dst.Field)))
	m.nxFinish(start)
}

func decodeMultipath(r *reader) (ovs.Action, error) {
	fields, basis := int(r.u16()), r.u16()
	r.skip(2)
	alg, maxLink, arg := int(r.u16()), r.u16(), r.u32()
	r.skip(2)
	on, h := r.u16(), oxmHeader(r.u32())
	if r.err != nil {
		return nil, r.err
	}
	if fields >= len(multipathFields) || alg >= len(multipathAlgorithms) {
		return nil, fmt.Errorf("%w: multipath fields %d algorithm %d", ErrUnsupported, fields, alg)
	}
	dst, err := bitField(h, int(on>>6), int(on&0x3f)+1)
	if err != nil {
		return nil, fmt.Errorf("multipath: %w", err)
	}
	return ovs.Multipath{Fields: multipathFields[fields], Basis: basis, Algorithm: multipathAlgorithms[alg],
		NLinks: maxLink + 1, Arg: arg, Dst: dst}, nil
}
