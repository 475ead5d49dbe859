package openflow

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// Actions are encoded the way ovs-ofctl encodes their text for OpenFlow
// 1.3, so that OVS stores (and prints back) exactly what it stores for
// the same flow added by ovs-ofctl: load is NXAST_REG_LOAD (OVS prints it
// as "load:", where OFPAT_SET_FIELD would print "set_field:"), resubmit is
// NXAST_RESUBMIT_TABLE with in_port IN_PORT, IN_PORT is output to the
// reserved port, conjunction carries the 0-based clause.

// instructions appends the instructions of a flow's actions: the actions
// up to a final goto_table as apply-actions, then the goto_table. No
// actions (drop) is no instruction.
func (m *message) instructions(actions []ovs.Action) {
	var gotoTable *ovs.GotoTable
	n := 0
	for i, a := range actions {
		switch a := a.(type) {
		case ovs.GotoTable:
			if i != len(actions)-1 {
				m.fail(fmt.Errorf("goto_table must be the last action"))
				return
			}
			gotoTable = &a
		case ovs.Drop:
		default:
			n++
		}
	}
	if n > 0 {
		start := len(m.b)
		m.u16(instApplyActions)
		m.u16(0)
		m.zeros(4)
		m.actions(actions)
		m.setU16(start+2, uint16(len(m.b)-start))
	}
	if gotoTable != nil {
		m.u16(instGotoTable)
		m.u16(8)
		m.u8(gotoTable.Table.ID)
		m.zeros(3)
	}
}

// actions appends an action list (goto_table and drop are skipped; the
// caller handles them).
func (m *message) actions(actions []ovs.Action) {
	for _, a := range actions {
		m.action(a)
	}
}

func (m *message) action(a ovs.Action) {
	switch a := a.(type) {
	case ovs.GotoTable, ovs.Drop:
	case ovs.OutputPort:
		m.output(a.Port)
	case ovs.OutputInPort:
		m.output(portInPort)
	case ovs.Group:
		m.u16(actGroup)
		m.u16(8)
		m.u32(a.ID)
	case ovs.SetTunDst:
		m.setField(hTunIPv4Dst, addr4(a.Addr))
	case ovs.SetEthDst:
		m.setField(hEthDst, a.Addr[:])
	case ovs.SetEthSrc:
		m.setField(hEthSrc, a.Addr[:])
	case ovs.SetIPSrc:
		m.setField(hIPv4Src, addr4(a.Addr))
	case ovs.SetIPDst:
		m.setField(hIPv4Dst, addr4(a.Addr))
	default:
		m.nxAction(a)
	}
}

// nxAction appends a Nicira extension action.
func (m *message) nxAction(a ovs.Action) {
	switch a := a.(type) {
	case ovs.OutputReg:
		start := m.nxStart(nxOutputReg)
		m.u16(ofsNbits(0, 32))
		m.u32(uint32(hReg(a.Field.Reg)))
		m.zeros(8) // max_len, zero[6]
		m.nxFinish(start)
	case ovs.LoadReg:
		m.regLoad(ovs.BitsOf(a.Field), uint64(a.Value))
	case ovs.Load:
		m.regLoad(a.Field, a.Value)
	case ovs.Move:
		m.regMove(ovs.BitsOf(a.Src), ovs.BitsOf(a.Dst))
	case ovs.Resubmit:
		start := m.nxStart(nxResubmitTable)
		m.u16(portInPort16)
		m.u8(a.Table.ID)
		m.nxFinish(start)
	case ovs.Conjunction:
		start := m.nxStart(nxConjunction)
		m.u8(a.K - 1)
		m.u8(a.N)
		m.u32(a.ID)
		m.nxFinish(start)
	case ovs.Note:
		start := m.nxStart(nxNote)
		m.b = append(m.b, a.Data...)
		m.nxFinish(start)
	case ovs.CtClear:
		m.nxFinish(m.nxStart(nxCTClear))
	case ovs.ConnTrack:
		m.conntrack(a)
	case ovs.Learn:
		m.learn(a)
	case ovs.Multipath:
		m.multipath(a)
	default:
		m.fail(fmt.Errorf("action %q has no OpenFlow encoding", a))
	}
}

func (m *message) output(port uint32) {
	m.u16(actOutput)
	m.u16(16)
	m.u32(port)
	m.u16(0) // max_len: only output to the controller uses it
	m.zeros(6)
}

// setField appends OFPAT_SET_FIELD of a whole field.
func (m *message) setField(h oxmHeader, value []byte) {
	start := len(m.b)
	m.u16(actSetField)
	m.u16(0)
	m.tlv(h, value, nil)
	m.padTo(start)
	m.setU16(start+2, uint16(len(m.b)-start))
}

// nxStart appends the head of a Nicira action and returns its offset.
func (m *message) nxStart(subtype uint16) int {
	start := len(m.b)
	m.u16(actExperimenter)
	m.u16(0)
	m.u32(nxVendor)
	m.u16(subtype)
	return start
}

// nxFinish pads a Nicira action to 8 bytes (at least 16) and sets its
// length.
func (m *message) nxFinish(start int) {
	if len(m.b)-start < 16 {
		m.zeros(16 - (len(m.b) - start))
	}
	m.padTo(start)
	m.setU16(start+2, uint16(len(m.b)-start))
}

// ofsNbits encodes a subfield's offset and width as NXM actions carry them.
func ofsNbits(ofs, n int) uint16 { return uint16(ofs<<6 | (n - 1)) }

func (m *message) regLoad(f ovs.BitField, v uint64) {
	start := m.nxStart(nxRegLoad)
	m.u16(ofsNbits(int(f.Lo), f.Width()))
	m.u32(uint32(fieldHeader(f.Field)))
	m.u64(v)
	m.nxFinish(start)
}

func (m *message) regMove(src, dst ovs.BitField) {
	if src.Width() != dst.Width() {
		m.fail(fmt.Errorf("move %s->%s: widths differ", src, dst))
		return
	}
	start := m.nxStart(nxRegMove)
	m.u16(uint16(src.Width()))
	m.u16(uint16(src.Lo))
	m.u16(uint16(dst.Lo))
	m.u32(uint32(fieldHeader(src.Field)))
	m.u32(uint32(fieldHeader(dst.Field)))
	m.nxFinish(start)
}

func addr4(a netip.Addr) []byte {
	b := a.As4()
	return b[:]
}

// decodeInstructions decodes a flow's instructions into actions: the
// apply-actions list, then goto_table.
func decodeInstructions(r *reader) ([]ovs.Action, error) {
	var out []ovs.Action
	var gotoTable []ovs.Action
	for r.left() > 0 {
		typ, length := r.u16(), int(r.u16())
		if r.err != nil || length < 8 || length%8 != 0 {
			return nil, fmt.Errorf("bad instruction (type %d, length %d)", typ, length)
		}
		body := r.sub(length - 4)
		switch typ {
		case instGotoTable:
			t, _ := ovs.TableByID(body.u8())
			gotoTable = []ovs.Action{ovs.Goto(t)}
		case instApplyActions:
			body.skip(4)
			acts, err := decodeActions(body)
			if err != nil {
				return nil, err
			}
			out = append(out, acts...)
		default:
			return nil, fmt.Errorf("unsupported instruction type %d", typ)
		}
	}
	return append(out, gotoTable...), r.err
}

// decodeActions decodes an action list.
func decodeActions(r *reader) ([]ovs.Action, error) {
	var out []ovs.Action
	for r.left() > 0 {
		typ, length := r.u16(), int(r.u16())
		if r.err != nil || length < 8 || length%8 != 0 {
			return nil, fmt.Errorf("bad action (type %d, length %d)", typ, length)
		}
		a, err := decodeAction(typ, r.sub(length-4))
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, r.err
}

func decodeAction(typ uint16, r *reader) (ovs.Action, error) {
	switch typ {
	case actOutput:
		port := r.u32()
		switch {
		case port == portInPort:
			return ovs.OutputToInPort(), r.err
		case port > portMax:
			return nil, fmt.Errorf("unsupported output to reserved port %#x", port)
		}
		return ovs.Output(port), r.err
	case actGroup:
		return ovs.GroupAction(r.u32()), r.err
	case actSetField:
		return decodeSetField(r)
	case actExperimenter:
		if v := r.u32(); v != nxVendor {
			return nil, fmt.Errorf("unsupported experimenter action %#x", v)
		}
		return decodeNXAction(r.u16(), r)
	}
	return nil, fmt.Errorf("unsupported action type %d", typ)
}

func decodeSetField(r *reader) (ovs.Action, error) {
	h := oxmHeader(r.u32())
	if h.hasMask() {
		return nil, fmt.Errorf("unsupported masked set_field %s", h)
	}
	v := r.take(h.length())
	if r.err != nil {
		return nil, r.err
	}
	switch canonicalHeader(h) {
	case hTunIPv4Dst:
		return ovs.SetTunnelDst(netip.AddrFrom4([4]byte(v))), nil
	case hEthDst:
		return ovs.SetEthernetDst(ovs.MAC(v)), nil
	case hEthSrc:
		return ovs.SetEthernetSrc(ovs.MAC(v)), nil
	case hIPv4Src:
		return ovs.SetIPv4Src(netip.AddrFrom4([4]byte(v))), nil
	case hIPv4Dst:
		return ovs.SetIPv4Dst(netip.AddrFrom4([4]byte(v))), nil
	}
	// A whole register or pkt_mark: the equivalent load, as the text parser
	// gives it.
	f, err := fieldOf(h)
	if err != nil || !(f.IsReg() || f == ovs.FieldPktMark) {
		return nil, fmt.Errorf("unsupported set_field of %s", h)
	}
	b, _ := bitField(h, 0, f.Width())
	return b.Load(beUint(v)), nil
}

// decodeNXAction decodes a Nicira action; r is past the subtype.
func decodeNXAction(subtype uint16, r *reader) (ovs.Action, error) {
	switch subtype {
	case nxRegLoad:
		return decodeRegLoad(r)
	case nxRegMove:
		return decodeRegMove(r)
	case nxOutputReg, nxOutputReg2:
		return decodeOutputReg(subtype, r)
	case nxResubmitTable:
		port, table := r.u16(), r.u8()
		if port != portInPort16 {
			return nil, fmt.Errorf("unsupported resubmit from port %d", port)
		}
		t, _ := ovs.TableByID(table)
		return ovs.ResubmitTo(t), r.err
	case nxConjunction:
		k, n, id := r.u8(), r.u8(), r.u32()
		return ovs.Conj(id, k+1, n), r.err
	case nxNote:
		return ovs.Note{Data: trimZeros(r.take(r.left()))}, r.err
	case nxCTClear:
		return ovs.ClearCt(), r.err
	case nxCT:
		return decodeCT(r)
	case nxLearn:
		return decodeLearn(r)
	case nxMultipath:
		return decodeMultipath(r)
	}
	return nil, fmt.Errorf("unsupported Nicira action subtype %d", subtype)
}

func trimZeros(b []byte) string {
	n := len(b)
	for n > 0 && b[n-1] == 0 {
		n--
	}
	return string(b[:n])
}

func decodeRegLoad(r *reader) (ovs.Action, error) {
	on, h, v := r.u16(), oxmHeader(r.u32()), r.u64()
	if r.err != nil {
		return nil, r.err
	}
	b, err := bitField(h, int(on>>6), int(on&0x3f)+1)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	return b.Load(v), nil
}

func decodeRegMove(r *reader) (ovs.Action, error) {
	n, srcOfs, dstOfs := int(r.u16()), int(r.u16()), int(r.u16())
	sh, dh := oxmHeader(r.u32()), oxmHeader(r.u32())
	if r.err != nil {
		return nil, r.err
	}
	src, err := bitField(sh, srcOfs, n)
	if err != nil {
		return nil, fmt.Errorf("move: %w", err)
	}
	dst, err := bitField(dh, dstOfs, n)
	if err != nil {
		return nil, fmt.Errorf("move: %w", err)
	}
	return ovs.Move{Src: typedField(src), Dst: typedField(dst)}, nil
}

func decodeOutputReg(subtype uint16, r *reader) (ovs.Action, error) {
	on := r.u16()
	var h oxmHeader
	if subtype == nxOutputReg {
		h = oxmHeader(r.u32())
	} else {
		r.skip(2) // max_len
		h = oxmHeader(r.u32())
	}
	if r.err != nil {
		return nil, r.err
	}
	b, err := bitField(h, int(on>>6), int(on&0x3f)+1)
	if err != nil || !b.Field.IsReg() || !b.Whole() {
		return nil, fmt.Errorf("unsupported output from %s", h)
	}
	return ovs.RegisterByNumber(uint8(b.Field)).Output(), nil
}

// be64 is a helper for tests and learn immediates.
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
