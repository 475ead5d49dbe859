package openflow

import (
	"fmt"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// learn appends NXAST_LEARN: the learned flow's timeouts, priority, cookie,
// flags and table, then one flow_mod_spec per LearnSpec — a 16-bit header
// (source type, destination type, width), the source (a field reference or
// an immediate of whole 16-bit words) and the destination field (match,
// load) or nothing (output).
func (m *message) learn(l ovs.Learn) {
	start := m.nxStart(nxLearn)
	m.u16(l.IdleTimeout)
	m.u16(l.HardTimeout)
	m.u16(l.Priority)
	m.u64(l.Cookie)
	var flags uint16
	if l.DeleteLearned {
		flags |= nxLearnDelete
	}
	m.u16(flags)
	m.u8(l.Table.ID)
	m.zeros(5) // pad, fin_idle_timeout, fin_hard_timeout
	for _, s := range l.Specs {
		m.learnSpec(s)
	}
	m.nxFinish(start)
}

func (m *message) learnSpec(s ovs.LearnSpec) {
	var head uint16
	var n int
	switch s.Kind {
	case ovs.LearnMatchField:
		n = s.Dst.Width()
	case ovs.LearnMatchValue:
		head, n = nxLearnSrcImm, s.Dst.Width()
	case ovs.LearnLoadField:
		head, n = nxLearnDstLoad, s.Dst.Width()
	case ovs.LearnLoadValue:
		head, n = nxLearnSrcImm|nxLearnDstLoad, s.Dst.Width()
	case ovs.LearnOutputField:
		head, n = nxLearnDstOutput, s.Src.Width()
	default:
		m.fail(fmt.Errorf("learn spec %q has no OpenFlow encoding", s))
		return
	}
	m.u16(head | uint16(n))
	if head&nxLearnSrcImm != 0 {
		m.immediate(s.Value, n)
	} else {
		m.subfield(s.Src)
	}
	if head&nxLearnDstMask != nxLearnDstOutput {
		m.subfield(s.Dst)
	}
}

// immediate appends v as a learn immediate of n bits: whole 16-bit words,
// right-aligned.
func (m *message) immediate(v uint64, n int) {
	size := 2 * ((n + 15) / 16)
	if size > 8 {
		m.zeros(size - 8)
		size = 8
	}
	b := be64(v)
	m.b = append(m.b, b[8-size:]...)
}

func (m *message) subfield(b ovs.BitField) {
	m.u32(uint32(fieldHeader(b.Field)))
	m.u16(uint16(b.Lo))
}

// decodeLearn decodes NXAST_LEARN (the reader is past the subtype).
func decodeLearn(r *reader) (ovs.Action, error) {
	l := ovs.Learn{IdleTimeout: r.u16(), HardTimeout: r.u16(), Priority: r.u16(), Cookie: r.u64()}
	flags := r.u16()
	table := r.u8()
	r.skip(1)
	finIdle, finHard := r.u16(), r.u16()
	if r.err != nil {
		return nil, r.err
	}
	if flags&^nxLearnDelete != 0 || finIdle != 0 || finHard != 0 {
		return nil, fmt.Errorf("unsupported learn (flags %#x, fin timeouts %d/%d)", flags, finIdle, finHard)
	}
	l.DeleteLearned = flags&nxLearnDelete != 0
	l.Table, _ = ovs.TableByID(table)
	for r.left() >= 2 {
		head := r.u16()
		if head == 0 {
			break // padding
		}
		s, err := decodeLearnSpec(head, r)
		if err != nil {
			return nil, fmt.Errorf("learn: %w", err)
		}
		l.Specs = append(l.Specs, s)
	}
	return l, r.err
}

func decodeLearnSpec(head uint16, r *reader) (ovs.LearnSpec, error) {
	n := int(head & nxLearnNBitsMask)
	imm, dst := head&nxLearnSrcImm != 0, head&nxLearnDstMask
	var s ovs.LearnSpec
	var err error
	if imm {
		s.Value, err = decodeImmediate(r, n)
	} else {
		s.Src, err = decodeSubfield(r, n)
	}
	if err == nil && dst != nxLearnDstOutput {
		s.Dst, err = decodeSubfield(r, n)
	}
	if err != nil {
		return s, err
	}
	switch {
	case dst == 0 && !imm:
		s.Kind = ovs.LearnMatchField
	case dst == 0:
		s.Kind = ovs.LearnMatchValue
	case dst == nxLearnDstLoad && !imm:
		s.Kind = ovs.LearnLoadField
	case dst == nxLearnDstLoad:
		s.Kind = ovs.LearnLoadValue
	case dst == nxLearnDstOutput && !imm:
		s.Kind = ovs.LearnOutputField
	default:
		return s, fmt.Errorf("bad spec header %#x", head)
	}
	return s, nil
}

func decodeImmediate(r *reader, n int) (uint64, error) {
	b := r.take(2 * ((n + 15) / 16))
	for len(b) > 8 {
		if b[0] != 0 {
			return 0, fmt.Errorf("immediate of %d bits does not fit 64 bits", n)
		}
		b = b[1:]
	}
	return beUint(b), r.err
}

func decodeSubfield(r *reader, n int) (ovs.BitField, error) {
	h, ofs := oxmHeader(r.u32()), int(r.u16())
	if r.err != nil {
		return ovs.BitField{}, r.err
	}
	return bitField(h, ofs, n)
}
