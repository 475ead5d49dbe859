package ovs

import "strconv"

// Field is a source or destination of a move action or a learn spec: a
// whole register (RegField), the low 32 bits of the tunnel key
// (TunnelKeyField), a sub-field (BitField) or a whole field (FieldID). The set
// is closed (unexported methods).
type Field interface {
	// NXM renders the field reference in ovs-ofctl action syntax.
	NXM() string
	isField()
	bits() BitField
}

// RegField is one 32-bit Nicira register used whole. It is the only way flow
// code names a register: it renders both the match ("reg0=0x5") and the
// actions ("load:0x5->NXM_NX_REG0[]", "output:NXM_NX_REG2[]").
type RegField struct {
	Reg  uint8  // register number, 0..15
	Name string // purpose, for diagnostics
}

// The register map. No other registers are used by the pipeline. A new
// whole-register field goes here and into regByNumber, so that parsed flows
// name it too; sub-register fields and marks are BitFields (bits.go),
// declared the same way:
//
//	// reg4[16..18]: service LB state; 1 = needs LB, 2 = endpoint selected.
//	ServiceLBState    = RegBits(4, 16, 18, "ServiceLBState")
//	ServiceLBNeeded   = ServiceLBState.Value(1)
//	ServiceLBSelected = ServiceLBState.Value(2)
//	// ct_mark[4]: the connection was DNATed by a Service.
//	ServiceCTMark = CtMarkBits(4, 4, "ServiceCT").Value(1)
var (
	// SrcVNIDField is reg0[0..31]: the source VNID. Loaded in PodAntiSpoof and
	// ServiceReturn from the pod's namespace, or in Classifier from the VXLAN
	// key. Legal values: 0 (global/admin namespaces and the host) or an
	// allocated VNID, < 2^24.
	SrcVNIDField = RegField{Reg: 0, Name: "SrcVNID"}
	// DstVNIDField is reg1[0..31]: the destination VNID, loaded in LocalPod.
	// Legal values as for SrcVNIDField.
	DstVNIDField = RegField{Reg: 1, Name: "DstVNID"}
	// OutPortField is reg2[0..31]: the OpenFlow port of the destination pod,
	// loaded in LocalPod and consumed by output in PolicyIngress. Legal values:
	// pod ports, >= 3.
	OutPortField = RegField{Reg: 2, Name: "OutPort"}
)

// TunnelKeyField is tun_id[0..31], the VXLAN key carrying the source VNID
// between nodes.
var TunnelKeyField = tunnelKey{}

type tunnelKey struct{}

func (tunnelKey) NXM() string    { return "NXM_NX_TUN_ID[0..31]" }
func (tunnelKey) isField()       {}
func (tunnelKey) bits() BitField { return BitField{Field: FieldTunID, Lo: 0, Hi: 31} }

// NXM renders "NXM_NX_REG<n>[]".
func (f RegField) NXM() string { return "NXM_NX_REG" + strconv.Itoa(int(f.Reg)) + "[]" }
func (RegField) isField()      {}
func (f RegField) bits() BitField {
	return BitField{Name: f.Name, Field: RegFieldID(f.Reg), Lo: 0, Hi: 31}
}

// Match returns the exact match "reg<n>=0x<v>".
func (f RegField) Match(v uint32) MatchField { return RegMatch{Field: f, Value: v, Mask: ^uint32(0)} }

// MatchMasked returns "reg<n>=0x<v>/0x<mask>".
func (f RegField) MatchMasked(v, mask uint32) MatchField {
	return RegMatch{Field: f, Value: v & mask, Mask: mask}
}

// Load returns "load:0x<v>->NXM_NX_REG<n>[]".
func (f RegField) Load(v uint32) Action { return LoadReg{Field: f, Value: v} }

// Output returns "output:NXM_NX_REG<n>[]" (output to the port held in f).
func (f RegField) Output() Action { return OutputReg{Field: f} }

// MoveTo returns "move:<f>-><dst>".
func (f RegField) MoveTo(dst Field) Action { return Move{Src: f, Dst: dst} }

// MoveTo returns "move:NXM_NX_TUN_ID[0..31]-><dst>".
func (k tunnelKey) MoveTo(dst Field) Action { return Move{Src: k, Dst: dst} }

// regByNumber returns the named register field for n, or an anonymous one.
func regByNumber(n uint8) RegField {
	for _, f := range []RegField{SrcVNIDField, DstVNIDField, OutPortField} {
		if f.Reg == n {
			return f
		}
	}
	return RegField{Reg: n}
}

// BitsOf returns the bit range a Field names (whole registers and fields
// as bits 0..width-1), for transports that encode field references.
func BitsOf(f Field) BitField { return f.bits() }

// RegisterByNumber returns register n as a whole-register field: the named
// one of the register map (SrcVNIDField, …) or an anonymous one, as the
// parser gives it. For decoders of other encodings than the text.
func RegisterByNumber(n uint8) RegField { return regByNumber(n) }
