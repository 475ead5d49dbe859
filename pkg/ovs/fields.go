package ovs

import (
	"net/netip"
	"strconv"
)

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
	// DstPodIPField is reg3[0..31]: the IPv4 address (IPv4Value) of the local
	// pod a packet is being delivered to, loaded next to OutPortField: in
	// LocalPod for unicast (the destination), in MulticastToLocal for each
	// receiver of a multicast datagram, whose nw_dst is the group. Compiled
	// NetworkPolicy ingress in PolicyIngress matches the target pod here, so
	// unicast and multicast meet one ingress decision. Legal values: local
	// pod addresses.
	DstPodIPField = RegField{Reg: 3, Name: "DstPodIP"}
)

// Service load balancing (--proxy-mode=ovs; tables ServiceLB..ServicePost,
// Routing, PolicyIngress). Registers 7, 4 and 5 carry an endpoint choice
// from the select group's bucket (or a learned affinity flow) to the DNAT
// flow; ct_mark
// bits remember, for every later packet of the connection, what its first
// packet decided. The reg4 flags mirror the ct_mark flags bit for bit
// (ServiceFlagsCT → ServiceFlags) so that one move restores them.
var (
	// EndpointIPField is reg7[0..31]: the IPv4 address of the endpoint
	// chosen for a new service connection.
	EndpointIPField = RegBits(7, 0, 31, "EndpointIP")
	// EndpointPortField is reg4[0..15]: its port.
	EndpointPortField = RegBits(4, 0, 15, "EndpointPort")
	// LBStateField is reg4[16..17]: 0 = not looked at, 1 = endpoint to
	// select (affinity missed), 2 = endpoint selected.
	LBStateField    = RegBits(4, 16, 17, "LBState")
	LBStateToSelect = LBStateField.Value(1)
	LBStateSelected = LBStateField.Value(2)
	// ServiceFlags is reg4[18..19]: SNAT (the connection is SNATed to the
	// node gateway so that it comes back here: NodePort with
	// externalTrafficPolicy Cluster, hairpin) and Hairpin (a pod reaching
	// itself through a Service: no egress policy, delivered out IN_PORT).
	ServiceFlags   = RegBits(4, 18, 19, "ServiceFlags")
	ServiceSNAT    = RegBits(4, 18, 18, "SNAT").Value(1)
	ServiceHairpin = RegBits(4, 19, 19, "Hairpin").Value(1)
	// UnDNATDone is reg4[20]: the reply was un-DNATed in Routing already.
	UnDNATDone = RegBits(4, 20, 20, "UnDNATDone").Value(1)
	// ServicePortIDField is reg5[0..31]: the ID of the service port being
	// load-balanced (its group ID), which keys its DNAT flows.
	ServicePortIDField = RegBits(5, 0, 31, "ServicePortID")
	// EndpointIndexField is reg6[0..15]: the endpoint a multipath action
	// chose for a new UDP flow (UDP ports choose endpoints through
	// multipath, not a select group: see GroupEntry), and
	// NodePortEntry reg6[16] that the flow came in through a node port
	// (whose endpoints may differ: externalTrafficPolicy Local).
	EndpointIndexField = RegBits(6, 0, 15, "EndpointIndex")
	NodePortEntry      = RegBits(6, 16, 16, "NodePortEntry").Value(1)

	// SCTP replies on the userspace datapath (tables 27/28, 80/82): a
	// packet looked up in the reply table (…Checked) and found there
	// (…ReplyOK), per direction.
	EgressRepliesChecked  = RegBits(6, 20, 20, "EgressRepliesChecked").Value(1)
	EgressReplyOK         = RegBits(6, 21, 21, "EgressReplyOK").Value(1)
	IngressRepliesChecked = RegBits(6, 22, 22, "IngressRepliesChecked").Value(1)
	IngressReplyOK        = RegBits(6, 23, 23, "IngressReplyOK").Value(1)

	// ServiceCT is ct_mark[0]: the connection was DNATed by a Service.
	ServiceCT = CtMarkBits(0, 0, "ServiceCT").Value(1)
	// ServiceFlagsCT is ct_mark[1..2]: ServiceFlags of the connection
	// (SNAT, Hairpin), saved at DNAT time.
	ServiceFlagsCT = CtMarkBits(1, 2, "ServiceFlagsCT")
	ServiceSNATCT  = CtMarkBits(1, 1, "SNATCT").Value(1)
	HairpinCT      = CtMarkBits(2, 2, "HairpinCT").Value(1)
)

// Conntrack zones. Pod traffic, its NetworkPolicy state and service DNAT
// live in the default zone 0; SNATZone holds the SNAT of service
// connections that must come back through this node, so that un-SNAT
// (destination rewrite) can run before anti-spoofing and un-DNAT after it.
const SNATZone uint16 = 0xfff1

// EgressZone holds the SNAT of pod traffic to an egress IP this node holds
// (pkg/pipeline egressip.go).
const EgressZone uint16 = 0xfff2

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
// IPv4Value is a's 32-bit value, as a register holds it.
func IPv4Value(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func regByNumber(n uint8) RegField {
	for _, f := range []RegField{SrcVNIDField, DstVNIDField, OutPortField, DstPodIPField} {
		if f.Reg == n {
			return f
		}
	}
	return RegField{Reg: n}
}
