package ovs

import (
	"fmt"
	"net/netip"
	"strconv"
)

// Field is a source or destination of a move action: a whole register or the
// low 32 bits of the tunnel key. The set is closed (unexported method).
type Field interface {
	// NXM renders the field reference in ovs-ofctl action syntax.
	NXM() string
	isField()
}

// RegField is one 32-bit Nicira register used whole. It is the only way flow
// code names a register: it renders both the match ("reg0=0x5") and the
// actions ("load:0x5->NXM_NX_REG0[]", "output:NXM_NX_REG2[]").
type RegField struct {
	Reg  uint8  // register number, 0..15
	Name string // purpose, for diagnostics
}

// The register map. No other registers are used by the pipeline.
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
	// DstPodIPField is reg3[0..31]: the IPv4 address (IPv4Value) of the local
	// pod a packet is being delivered to, loaded next to OutPortField: in
	// LocalPod for unicast (the destination), in MulticastToLocal for each
	// receiver of a multicast datagram, whose nw_dst is the group. Compiled
	// NetworkPolicy ingress in PolicyIngress matches the target pod here, so
	// unicast and multicast meet one ingress decision. Legal values: local
	// pod addresses.
	DstPodIPField = RegField{Reg: 3, Name: "DstPodIP"}
)

// IPv4Value is a as a register value (big-endian: 10.128.0.2 is
// 0x0a800002). a must be IPv4.
func IPv4Value(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// TunnelKeyField is tun_id[0..31], the VXLAN key carrying the source VNID
// between nodes.
var TunnelKeyField = tunnelKey{}

type tunnelKey struct{}

func (tunnelKey) NXM() string { return "NXM_NX_TUN_ID[0..31]" }
func (tunnelKey) isField()    {}

// NXM renders "NXM_NX_REG<n>[]".
func (f RegField) NXM() string { return "NXM_NX_REG" + strconv.Itoa(int(f.Reg)) + "[]" }
func (RegField) isField()      {}

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
	for _, f := range []RegField{SrcVNIDField, DstVNIDField, OutPortField, DstPodIPField} {
		if f.Reg == n {
			return f
		}
	}
	return RegField{Reg: n}
}

// parseNXMField parses the field references we render in move actions.
func parseNXMField(s string) (Field, error) {
	if s == TunnelKeyField.NXM() {
		return TunnelKeyField, nil
	}
	var n uint8
	if _, err := fmt.Sscanf(s, "NXM_NX_REG%d[]", &n); err == nil && n < 16 && fmt.Sprintf("NXM_NX_REG%d[]", n) == s {
		return regByNumber(n), nil
	}
	return nil, fmt.Errorf("unsupported field reference %q", s)
}
