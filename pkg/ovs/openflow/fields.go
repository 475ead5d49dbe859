package openflow

import (
	"fmt"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// oxmHeader is an OXM/NXM TLV header: class (16 bits), field (7),
// has-mask (1), payload length in bytes (8; doubled when masked).
type oxmHeader uint32

// OXM classes: the OpenFlow basic fields and the two Nicira classes.
const (
	classNXM0  = 0x0000 // NXM_OF_*
	classNXM1  = 0x0001 // NXM_NX_*
	classBasic = 0x8000 // OXM_OF_*
)

func hdr(class uint16, field, length uint8) oxmHeader {
	return oxmHeader(uint32(class)<<16 | uint32(field)<<9 | uint32(length))
}

func (h oxmHeader) hasMask() bool { return h&0x100 != 0 }
func (h oxmHeader) length() int   { return int(h & 0xff) }

// masked returns the header of the masked form (value and mask).
func (h oxmHeader) masked() oxmHeader { return h&^0x1ff | 0x100 | oxmHeader(2*h.length()) }

// plain returns the header of the unmasked form, which identifies the
// field.
func (h oxmHeader) plain() oxmHeader {
	if !h.hasMask() {
		return h
	}
	return h&^0x1ff | oxmHeader(h.length()/2)
}

// width returns the field's width in bits (its value length).
func (h oxmHeader) width() int { return h.plain().length() * 8 }

func (h oxmHeader) String() string {
	return fmt.Sprintf("OXM(class %#x, field %d, len %d)", uint32(h)>>16, uint32(h)>>9&0x7f, h.length())
}

// Match field headers as this package sends them: the OpenFlow basic class
// where OpenFlow 1.3 has the field, Nicira's otherwise.
var (
	hInPort     = hdr(classBasic, 0, 4)
	hEthDst     = hdr(classBasic, 3, 6)
	hEthSrc     = hdr(classBasic, 4, 6)
	hEthType    = hdr(classBasic, 5, 2)
	hIPProto    = hdr(classBasic, 10, 1)
	hIPv4Src    = hdr(classBasic, 11, 4)
	hIPv4Dst    = hdr(classBasic, 12, 4)
	hTCPSrc     = hdr(classBasic, 13, 2)
	hTCPDst     = hdr(classBasic, 14, 2)
	hUDPSrc     = hdr(classBasic, 15, 2)
	hUDPDst     = hdr(classBasic, 16, 2)
	hSCTPSrc    = hdr(classBasic, 17, 2)
	hSCTPDst    = hdr(classBasic, 18, 2)
	hARPSpa     = hdr(classBasic, 22, 4)
	hARPTpa     = hdr(classBasic, 23, 4)
	hARPSha     = hdr(classBasic, 24, 6)
	hARPTha     = hdr(classBasic, 25, 6)
	hTunnelID   = hdr(classBasic, 38, 8)
	hTunIPv4Src = hdr(classNXM1, 31, 4)
	hTunIPv4Dst = hdr(classNXM1, 32, 4)
	hPktMark    = hdr(classNXM1, 33, 4)
	hConjID     = hdr(classNXM1, 37, 4)
	hCtState    = hdr(classNXM1, 105, 4)
	hCtZone     = hdr(classNXM1, 106, 2)
	hCtMark     = hdr(classNXM1, 107, 4)
	hCtLabel    = hdr(classNXM1, 108, 16)
	hCtNwProto  = hdr(classNXM1, 119, 1)
	hCtNwSrc    = hdr(classNXM1, 120, 4)
	hCtNwDst    = hdr(classNXM1, 121, 4)
	hCtTpSrc    = hdr(classNXM1, 124, 2)
	hCtTpDst    = hdr(classNXM1, 125, 2)
)

func hReg(n uint8) oxmHeader { return hdr(classNXM1, n, 4) }

// nxmAliases maps the Nicira (NXM_OF_*, NXM_NX_*) headers of fields that
// also have an OpenFlow basic header to that header, so that decoding
// handles either spelling.
var nxmAliases = map[oxmHeader]oxmHeader{
	hdr(classNXM0, 0, 2):   hInPort, // NXM_OF_IN_PORT is 16 bits; values fit
	hdr(classNXM0, 1, 6):   hEthDst,
	hdr(classNXM0, 2, 6):   hEthSrc,
	hdr(classNXM0, 3, 2):   hEthType,
	hdr(classNXM0, 6, 1):   hIPProto,
	hdr(classNXM0, 7, 4):   hIPv4Src,
	hdr(classNXM0, 8, 4):   hIPv4Dst,
	hdr(classNXM0, 9, 2):   hTCPSrc,
	hdr(classNXM0, 10, 2):  hTCPDst,
	hdr(classNXM0, 11, 2):  hUDPSrc,
	hdr(classNXM0, 12, 2):  hUDPDst,
	hdr(classNXM0, 16, 4):  hARPSpa,
	hdr(classNXM0, 17, 4):  hARPTpa,
	hdr(classNXM1, 17, 6):  hARPSha,
	hdr(classNXM1, 18, 6):  hARPTha,
	hdr(classNXM1, 16, 8):  hTunnelID,
	hdr(classBasic, 0, 4):  hInPort,
	hdr(classBasic, 38, 8): hTunnelID,
}

// canonicalHeader returns the header this package uses for the field h
// names (unmasked).
func canonicalHeader(h oxmHeader) oxmHeader {
	h = h.plain()
	if a, ok := nxmAliases[h]; ok {
		return a
	}
	return h
}

// Subfield references (load, move, output:reg, learn) use Nicira headers,
// as OVS does in its own encoding of these actions. NXM_OF_IN_PORT is the
// 16-bit in_port that ovs.FieldInPort is.
var fieldHeaders = map[ovs.FieldID]oxmHeader{
	ovs.FieldPktMark: hPktMark,
	ovs.FieldCtMark:  hCtMark,
	ovs.FieldCtLabel: hCtLabel,
	ovs.FieldTunID:   hdr(classNXM1, 16, 8),
	ovs.FieldInPort:  hdr(classNXM0, 0, 2),
	ovs.FieldEthSrc:  hdr(classNXM0, 2, 6),
	ovs.FieldEthDst:  hdr(classNXM0, 1, 6),
	ovs.FieldEthType: hdr(classNXM0, 3, 2),
	ovs.FieldIPProto: hdr(classNXM0, 6, 1),
	ovs.FieldIPSrc:   hdr(classNXM0, 7, 4),
	ovs.FieldIPDst:   hdr(classNXM0, 8, 4),
	ovs.FieldTCPSrc:  hdr(classNXM0, 9, 2),
	ovs.FieldTCPDst:  hdr(classNXM0, 10, 2),
	ovs.FieldUDPSrc:  hdr(classNXM0, 11, 2),
	ovs.FieldUDPDst:  hdr(classNXM0, 12, 2),
	ovs.FieldSCTPSrc: hSCTPSrc,
	ovs.FieldSCTPDst: hSCTPDst,
}

// headerFields is the inverse of fieldHeaders, by canonical header; the
// 32-bit OXM in_port is not there (it is not ovs.FieldInPort).
var headerFields = func() map[oxmHeader]ovs.FieldID {
	m := map[oxmHeader]ovs.FieldID{}
	for f, h := range fieldHeaders {
		if f != ovs.FieldInPort {
			m[canonicalHeader(h)] = f
		}
	}
	for n := range uint8(16) {
		m[hReg(n)] = ovs.RegFieldID(n)
	}
	return m
}()

// fieldHeader returns the header of a subfield's field.
func fieldHeader(f ovs.FieldID) oxmHeader {
	if f.IsReg() {
		return hReg(uint8(f))
	}
	return fieldHeaders[f]
}

// fieldOf returns the field a subfield header names.
func fieldOf(h oxmHeader) (ovs.FieldID, error) {
	if h.plain() == fieldHeaders[ovs.FieldInPort] {
		return ovs.FieldInPort, nil
	}
	f, ok := headerFields[canonicalHeader(h)]
	if !ok {
		return 0, fmt.Errorf("unsupported field %s", h)
	}
	return f, nil
}

// bitField returns bits ofs..ofs+n-1 of the field h names, checked against
// its width.
func bitField(h oxmHeader, ofs, n int) (ovs.BitField, error) {
	f, err := fieldOf(h)
	if err != nil {
		return ovs.BitField{}, err
	}
	if n < 1 || ofs+n > f.Width() {
		return ovs.BitField{}, fmt.Errorf("bits %d..%d outside %s", ofs, ofs+n-1, f)
	}
	return ovs.BitField{Field: f, Lo: uint8(ofs), Hi: uint8(ofs + n - 1)}, nil
}

// typedField returns the Field value the text parser gives for b, so that
// decoded actions compare equal to parsed ones: a whole register is its
// RegField and tun_id[0..31] the TunnelKeyField.
func typedField(b ovs.BitField) ovs.Field {
	switch {
	case b.Field.IsReg() && b.Whole():
		return ovs.RegisterByNumber(uint8(b.Field))
	case b.Field == ovs.FieldTunID && b.Lo == 0 && b.Hi == 31:
		return ovs.TunnelKeyField
	}
	return b
}
