package ovs

import (
	"fmt"
	"strconv"
)

// MarkMatch matches pkt_mark or ct_mark (Field is FieldPktMark or
// FieldCtMark) under Mask: "pkt_mark=0x1/0x1", "ct_mark=0x10" when Mask is
// all ones, "ct_mark=0" for an exact zero — the forms OVS prints. Build it
// with BitField.Match, Mark.Match, PktMarkMatch or CtMarkMatch. Value bits
// outside Mask are invalid (ValidateFlow reports them).
type MarkMatch struct {
	Field       FieldID
	Value, Mask uint32
}

func (m MarkMatch) Key() string { return m.Field.String() }
func (m MarkMatch) String() string {
	if m.Mask == ^uint32(0) {
		return m.Key() + "=" + hexOrZero(uint64(m.Value))
	}
	return m.Key() + "=" + hexOrZero(uint64(m.Value&m.Mask)) + "/" + hexOrZero(uint64(m.Mask))
}

// PktMarkMatch matches pkt_mark under mask (^uint32(0) for an exact match).
func PktMarkMatch(v, mask uint32) MatchField {
	return MarkMatch{Field: FieldPktMark, Value: v & mask, Mask: mask}
}

// CtMarkMatch matches ct_mark under mask (^uint32(0) for an exact match).
// It needs a tracked packet (ct_state=+trk) to mean anything.
func CtMarkMatch(v, mask uint32) MatchField {
	return MarkMatch{Field: FieldCtMark, Value: v & mask, Mask: mask}
}

// CtLabelMatch matches the 128-bit ct_label under Mask: "ct_label=0x1/0x1",
// "ct_label=0x1" when Mask is all ones. Build it with BitField.Match or
// Mark.Match on a CtLabelBits field.
type CtLabelMatch struct {
	Value, Mask U128
}

func (CtLabelMatch) Key() string { return "ct_label" }
func (m CtLabelMatch) String() string {
	if m.Mask.isOnes() {
		return "ct_label=" + m.Value.String()
	}
	return "ct_label=" + m.Value.and(m.Mask).String() + "/" + m.Mask.String()
}

// maskedMatch is a match that can be combined with another match of the same
// key on disjoint bits, as OVS does ("reg4=0x10000/0x70000" and
// "reg4=0x80000/0x80000" are one clause "reg4=0x90000/0xf0000").
type maskedMatch interface {
	MatchField
	merge(o MatchField) (MatchField, bool)
	outside() bool // value bits outside the mask
}

func (m RegMatch) merge(o MatchField) (MatchField, bool) {
	n, ok := o.(RegMatch)
	if !ok || n.Field.Reg != m.Field.Reg || m.Mask&n.Mask != 0 {
		return nil, false
	}
	return RegMatch{Field: m.Field, Value: m.Value | n.Value, Mask: m.Mask | n.Mask}, true
}

func (m MarkMatch) merge(o MatchField) (MatchField, bool) {
	n, ok := o.(MarkMatch)
	if !ok || n.Field != m.Field || m.Mask&n.Mask != 0 {
		return nil, false
	}
	return MarkMatch{Field: m.Field, Value: m.Value | n.Value, Mask: m.Mask | n.Mask}, true
}

func (m CtLabelMatch) merge(o MatchField) (MatchField, bool) {
	n, ok := o.(CtLabelMatch)
	if !ok || !m.Mask.and(n.Mask).IsZero() {
		return nil, false
	}
	return CtLabelMatch{Value: m.Value.or(n.Value), Mask: m.Mask.or(n.Mask)}, true
}

func (m RegMatch) outside() bool     { return m.Value&^m.Mask != 0 }
func (m MarkMatch) outside() bool    { return m.Value&^m.Mask != 0 }
func (m CtLabelMatch) outside() bool { return !m.Value.andNot(m.Mask).IsZero() }

// addMatch appends m to match, merging it into an existing clause of the
// same key when both are masked matches on disjoint bits.
func addMatch(match []MatchField, m MatchField) []MatchField {
	if mm, ok := m.(maskedMatch); ok {
		for i, old := range match {
			if o, ok := old.(maskedMatch); ok && o.Key() == mm.Key() {
				if merged, ok := o.merge(mm); ok {
					match[i] = merged
					return match
				}
			}
		}
	}
	return append(match, m)
}

func parseMarkMatch(f FieldID, val string) (MatchField, error) {
	v, mask, masked := cutMask(val)
	value, err := strconv.ParseUint(v, 0, 32)
	m := MarkMatch{Field: f, Value: uint32(value), Mask: ^uint32(0)}
	if err == nil && masked {
		var mk uint64
		mk, err = strconv.ParseUint(mask, 0, 32)
		m.Mask = uint32(mk)
		m.Value &= m.Mask
	}
	if err != nil {
		return nil, fmt.Errorf("bad %s value %q", f, val)
	}
	return m, nil
}

func parseCtLabelMatch(val string) (MatchField, error) {
	v, mask, masked := cutMask(val)
	value, err := parseU128(v)
	m := CtLabelMatch{Value: value, Mask: onesU128(128)}
	if err == nil && masked {
		m.Mask, err = parseU128(mask)
		m.Value = m.Value.and(m.Mask)
	}
	return m, err
}

func cutMask(val string) (v, mask string, masked bool) {
	for i := range val {
		if val[i] == '/' {
			return val[:i], val[i+1:], true
		}
	}
	return val, "", false
}
