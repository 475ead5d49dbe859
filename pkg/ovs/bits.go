package ovs

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// FieldID names one OpenFlow field that load, move and learn can read or
// write: the 16 registers, pkt_mark, ct_mark, ct_label, tun_id and the packet
// header fields the Services feature needs. IDs 0..15 are reg0..reg15 (see
// RegFieldID); the zero value is reg0. A FieldID used as a Field means the
// whole field ("NXM_OF_IP_SRC[]").
type FieldID uint8

// Fields other than registers.
const (
	FieldPktMark FieldID = 16 + iota // pkt_mark, 32 bits: the skb mark, visible to the host
	FieldCtMark                      // ct_mark, 32 bits; writable only in ct(commit,exec(…))
	FieldCtLabel                     // ct_label, 128 bits; writable only in ct(commit,exec(…))
	FieldTunID                       // tun_id, 64 bits
	FieldInPort                      // in_port, 16 bits (NXM_OF_IN_PORT)
	FieldEthSrc                      // eth_src, 48 bits
	FieldEthDst                      // eth_dst, 48 bits
	FieldEthType                     // eth_type, 16 bits
	FieldIPProto                     // nw_proto, 8 bits
	FieldIPSrc                       // ip_src, 32 bits
	FieldIPDst                       // ip_dst, 32 bits
	FieldTCPSrc                      // tcp_src, 16 bits
	FieldTCPDst                      // tcp_dst, 16 bits
	FieldUDPSrc                      // udp_src, 16 bits
	FieldUDPDst                      // udp_dst, 16 bits
	FieldSCTPSrc                     // sctp_src, 16 bits
	FieldSCTPDst                     // sctp_dst, 16 bits
	fieldEnd
)

// valueFormat is how OVS prints an immediate value of a whole field (in
// learn specs).
type valueFormat uint8

const (
	fmtHex valueFormat = iota
	fmtDec
	fmtIP
	fmtMAC
)

type fieldInfo struct {
	nxm    string // NXM/OXM name as OVS prints it in load/move/learn
	name   string // ovs-ofctl field name (matches, learn immediates)
	width  uint8  // bits
	format valueFormat
}

var fieldInfos = map[FieldID]fieldInfo{
	FieldPktMark: {"NXM_NX_PKT_MARK", "pkt_mark", 32, fmtHex},
	FieldCtMark:  {"NXM_NX_CT_MARK", "ct_mark", 32, fmtHex},
	FieldCtLabel: {"NXM_NX_CT_LABEL", "ct_label", 128, fmtHex},
	FieldTunID:   {"NXM_NX_TUN_ID", "tun_id", 64, fmtHex},
	FieldInPort:  {"NXM_OF_IN_PORT", "in_port", 16, fmtDec},
	FieldEthSrc:  {"NXM_OF_ETH_SRC", "eth_src", 48, fmtMAC},
	FieldEthDst:  {"NXM_OF_ETH_DST", "eth_dst", 48, fmtMAC},
	FieldEthType: {"NXM_OF_ETH_TYPE", "eth_type", 16, fmtHex},
	FieldIPProto: {"NXM_OF_IP_PROTO", "nw_proto", 8, fmtDec},
	FieldIPSrc:   {"NXM_OF_IP_SRC", "ip_src", 32, fmtIP},
	FieldIPDst:   {"NXM_OF_IP_DST", "ip_dst", 32, fmtIP},
	FieldTCPSrc:  {"NXM_OF_TCP_SRC", "tcp_src", 16, fmtDec},
	FieldTCPDst:  {"NXM_OF_TCP_DST", "tcp_dst", 16, fmtDec},
	FieldUDPSrc:  {"NXM_OF_UDP_SRC", "udp_src", 16, fmtDec},
	FieldUDPDst:  {"NXM_OF_UDP_DST", "udp_dst", 16, fmtDec},
	FieldSCTPSrc: {"OXM_OF_SCTP_SRC", "sctp_src", 16, fmtDec},
	FieldSCTPDst: {"OXM_OF_SCTP_DST", "sctp_dst", 16, fmtDec},
}

// RegFieldID returns the FieldID of register n; it panics for n > 15 (a
// programming error: registers are named once, in fields.go).
func RegFieldID(n uint8) FieldID {
	if n > 15 {
		panic(fmt.Sprintf("ovs: register %d does not exist (reg0..reg15)", n))
	}
	return FieldID(n)
}

// IsReg reports whether f is one of reg0..reg15.
func (f FieldID) IsReg() bool { return f < 16 }

func (f FieldID) info() fieldInfo {
	if f.IsReg() {
		n := strconv.Itoa(int(f))
		return fieldInfo{"NXM_NX_REG" + n, "reg" + n, 32, fmtHex}
	}
	return fieldInfos[f]
}

// Width returns the field's width in bits.
func (f FieldID) Width() int { return int(f.info().width) }

// String returns the ovs-ofctl name ("reg4", "pkt_mark", "ip_src").
func (f FieldID) String() string { return f.info().name }

// NXM renders the whole field as a reference ("NXM_OF_IP_SRC[]").
func (f FieldID) NXM() string    { return f.bits().NXM() }
func (FieldID) isField()         {}
func (f FieldID) bits() BitField { return BitField{Field: f, Hi: uint8(f.Width() - 1)} }

// BitField is bits Lo..Hi (inclusive) of one field — OVS's "FIELD[lo..hi]".
// Declare the pipeline's sub-register fields and marks once, as package
// variables in fields.go, with a comment giving their legal values; flow code
// then uses them by name (STYLE L3). Name is for diagnostics and is not
// rendered. The zero value is bit 0 of reg0.
//
// Values of a BitField are given unshifted: for reg4[16..18], Value 1 is
// rendered as "reg4=0x10000/0x70000" and "load:0x1->NXM_NX_REG4[16..18]".
type BitField struct {
	Name   string
	Field  FieldID
	Lo, Hi uint8
}

// NewBitField returns bits lo..hi of f. It panics if lo > hi or hi is beyond
// the field's width: bit fields are declared once as package variables, so a
// bad declaration fails at start-up rather than producing a wrong flow.
func NewBitField(f FieldID, lo, hi uint8, name string) BitField {
	if lo > hi || int(hi) >= f.Width() || f >= fieldEnd {
		panic(fmt.Sprintf("ovs: bit field %s: bits %d..%d outside %s (%d bits)", name, lo, hi, f, f.Width()))
	}
	return BitField{Name: name, Field: f, Lo: lo, Hi: hi}
}

// RegBits returns bits lo..hi of register reg.
func RegBits(reg, lo, hi uint8, name string) BitField {
	return NewBitField(RegFieldID(reg), lo, hi, name)
}

// PktMarkBits returns bits lo..hi of pkt_mark.
func PktMarkBits(lo, hi uint8, name string) BitField { return NewBitField(FieldPktMark, lo, hi, name) }

// CtMarkBits returns bits lo..hi of ct_mark.
func CtMarkBits(lo, hi uint8, name string) BitField { return NewBitField(FieldCtMark, lo, hi, name) }

// CtLabelBits returns bits lo..hi (< 128) of ct_label.
func CtLabelBits(lo, hi uint8, name string) BitField { return NewBitField(FieldCtLabel, lo, hi, name) }

// Width returns the number of bits.
func (b BitField) Width() int { return int(b.Hi) - int(b.Lo) + 1 }

// Whole reports whether b covers its whole field.
func (b BitField) Whole() bool { return b.Lo == 0 && b.Width() == b.Field.Width() }

// NXM renders the reference as OVS prints it: "NXM_NX_REG4[16..18]",
// "NXM_NX_REG4[19]" for one bit, "NXM_NX_REG4[]" for the whole field.
// tun_id[0..31] keeps its range (OVS prints it so).
func (b BitField) NXM() string {
	name := b.Field.info().nxm
	switch {
	case b.Whole():
		return name + "[]"
	case b.Lo == b.Hi:
		return name + "[" + strconv.Itoa(int(b.Lo)) + "]"
	}
	return name + "[" + strconv.Itoa(int(b.Lo)) + ".." + strconv.Itoa(int(b.Hi)) + "]"
}

// String is NXM.
func (b BitField) String() string { return b.NXM() }
func (BitField) isField()         {}
func (b BitField) bits() BitField { return b }
func (b BitField) label() string {
	if b.Name != "" {
		return b.Name + "(" + b.NXM() + ")"
	}
	return b.NXM()
}

// fits reports whether v fits in the field's width.
func (b BitField) fits(v uint64) bool { return b.Width() >= 64 || v>>uint(b.Width()) == 0 }

// mask32 returns the field's mask within a 32-bit field.
func (b BitField) mask32() uint32 { return uint32(b.mask128().Lo) }

// mask128 returns the field's mask within its (up to 128-bit) field.
func (b BitField) mask128() U128 { return onesU128(b.Width()).shl(int(b.Lo)) }

// Match returns the masked match of value v ("reg4=0x10000/0x70000",
// "pkt_mark=0x1/0x1", "ct_mark=0x10/0x10", "ct_label=0x1/0x1"); a whole field
// gives an exact match. Only registers, pkt_mark, ct_mark and ct_label can be
// matched this way; any other field panics (a declaration bug). A value that
// does not fit keeps its extra bits outside the mask, so that ValidateFlow
// reports it (bits shifted beyond the top of the field are lost).
func (b BitField) Match(v uint64) MatchField {
	shifted := U128{Lo: v}.shl(int(b.Lo))
	switch {
	case b.Field.IsReg():
		return RegMatch{Field: regByNumber(uint8(b.Field)), Value: uint32(shifted.Lo), Mask: b.mask32()}
	case b.Field == FieldPktMark || b.Field == FieldCtMark:
		return MarkMatch{Field: b.Field, Value: uint32(shifted.Lo), Mask: b.mask32()}
	case b.Field == FieldCtLabel:
		return CtLabelMatch{Value: shifted, Mask: b.mask128()}
	}
	panic(fmt.Sprintf("ovs: bit field %s: %s cannot be matched as a bit field", b.label(), b.Field))
}

// Load returns "load:0x<v>->FIELD[lo..hi]". Loading a whole register gives a
// LoadReg, so that both spellings render alike. ct_mark and ct_label cannot
// be loaded outside ct (ValidateFlow rejects it): use ConnTrack.WithMark.
func (b BitField) Load(v uint64) Action {
	if b.Field.IsReg() && b.Whole() && b.fits(v) {
		return LoadReg{Field: regByNumber(uint8(b.Field)), Value: uint32(v)}
	}
	return Load{Field: b, Value: v}
}

// MoveTo returns "move:<b>-><dst>"; both must have the same width.
func (b BitField) MoveTo(dst Field) Action { return Move{Src: b, Dst: dst} }

// Value returns the named value v of the field (a Mark).
func (b BitField) Value(v uint64) Mark { return Mark{Field: b, Value: v} }

// Mark is one value of a BitField: a register mark, pkt_mark bits or ct_mark /
// ct_label bits. Declare the legal values of a field next to it in fields.go
// ("ServiceLBNeeded = ServiceLBState.Value(1)") and use them to match and set.
type Mark struct {
	Field BitField
	Value uint64
}

// Match returns the masked match of the mark.
func (m Mark) Match() MatchField { return m.Field.Match(m.Value) }

// Load returns the action setting the mark (registers and pkt_mark; ct_mark
// and ct_label marks are set with ConnTrack.WithMark).
func (m Mark) Load() Action { return m.Field.Load(m.Value) }

// String renders "Name=0x<v>" (or "FIELD[lo..hi]=0x<v>" when unnamed).
func (m Mark) String() string { return m.Field.label() + "=" + hexOrZero(m.Value) }

// Load writes an immediate value into a bit field
// ("load:0x1->NXM_NX_REG4[16..18]", "load:0x1->NXM_NX_PKT_MARK[]"). Whole
// registers use LoadReg; BitField.Load picks the right one.
type Load struct {
	Field BitField
	Value uint64
}

func (Load) isAction() {}

// String renders the load as OVS prints it (a zero value prints "load:0->").
func (a Load) String() string {
	if a.Field.Field.IsReg() && a.Field.Whole() && a.Field.fits(a.Value) {
		return LoadReg{Field: regByNumber(uint8(a.Field.Field)), Value: uint32(a.Value)}.String()
	}
	return "load:" + hexOrZero(a.Value) + "->" + a.Field.NXM()
}

// hexOrZero renders v as OVS prints most immediates: "0" or "0x<hex>".
func hexOrZero(v uint64) string {
	if v == 0 {
		return "0"
	}
	return "0x" + strconv.FormatUint(v, 16)
}

// parseNXMField parses a field reference as OVS prints it: "NXM_NX_REG4[]",
// "NXM_NX_REG4[16..18]", "NXM_NX_REG4[19]", "NXM_OF_IP_SRC[]". Whole
// registers come back as the named RegField and tun_id[0..31] as
// TunnelKeyField, so that code comparing fields by value keeps working.
func parseNXMField(s string) (Field, error) {
	name, rest, ok := strings.Cut(s, "[")
	if !ok || !strings.HasSuffix(rest, "]") {
		return nil, fmt.Errorf("unsupported field reference %q", s)
	}
	f, ok := fieldByNXM(name)
	if !ok {
		return nil, fmt.Errorf("unsupported field reference %q", s)
	}
	b, err := parseBitRange(f, strings.TrimSuffix(rest, "]"))
	if err != nil {
		return nil, fmt.Errorf("field reference %q: %w", s, err)
	}
	switch {
	case f.IsReg() && b.Whole():
		return regByNumber(uint8(f)), nil
	case f == FieldTunID && b.Lo == 0 && b.Hi == 31:
		return TunnelKeyField, nil
	}
	return b, nil
}

func parseBitRange(f FieldID, r string) (BitField, error) {
	if r == "" {
		return f.bits(), nil
	}
	lo, hi, isRange := strings.Cut(r, "..")
	if !isRange {
		hi = lo
	}
	l, err1 := strconv.ParseUint(lo, 10, 8)
	h, err2 := strconv.ParseUint(hi, 10, 8)
	if err1 != nil || err2 != nil || l > h || int(h) >= f.Width() {
		return BitField{}, fmt.Errorf("bad bit range [%s] for %s", r, f)
	}
	return BitField{Field: f, Lo: uint8(l), Hi: uint8(h)}, nil
}

func fieldByNXM(name string) (FieldID, bool) {
	if n, ok := strings.CutPrefix(name, "NXM_NX_REG"); ok {
		r, err := strconv.ParseUint(n, 10, 8)
		if err != nil || r > 15 || strconv.Itoa(int(r)) != n {
			return 0, false
		}
		return RegFieldID(uint8(r)), true
	}
	for f, info := range fieldInfos {
		if info.nxm == name {
			return f, true
		}
	}
	return 0, false
}

func fieldByName(name string) (FieldID, bool) {
	if n, ok := strings.CutPrefix(name, "reg"); ok {
		r, err := strconv.ParseUint(n, 10, 8)
		if err != nil || r > 15 || strconv.Itoa(int(r)) != n {
			return 0, false
		}
		return RegFieldID(uint8(r)), true
	}
	for f, info := range fieldInfos {
		if info.name == name {
			return f, true
		}
	}
	return 0, false
}

// formatValue renders an immediate value of the whole field f as OVS prints
// it in learn specs ("0x800", "6", "10.0.0.1", "0a:58:00:00:00:01").
func formatValue(f FieldID, v uint64) string {
	switch f.info().format {
	case fmtDec:
		return strconv.FormatUint(v, 10)
	case fmtIP:
		return uintAddr(v).String()
	case fmtMAC:
		return macFromUint(v).String()
	}
	return hexOrZero(v)
}

// parseValue is the inverse of formatValue (hex and decimal both accepted
// for numeric fields).
func parseValue(f FieldID, s string) (uint64, error) {
	switch f.info().format {
	case fmtIP:
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return 0, fmt.Errorf("bad IPv4 address %q", s)
		}
		return addrUint(a), nil
	case fmtMAC:
		m, err := ParseMAC(s)
		return macToUint(m), err
	}
	return strconv.ParseUint(s, 0, 64)
}

func macFromUint(v uint64) MAC {
	var m MAC
	for i := range m {
		m[i] = byte(v >> (8 * (5 - i)))
	}
	return m
}

func macToUint(m MAC) uint64 {
	var v uint64
	for _, b := range m {
		v = v<<8 | uint64(b)
	}
	return v
}
