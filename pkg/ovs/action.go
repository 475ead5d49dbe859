package ovs

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Action is one typed OpenFlow action. The set is closed; every
// implementation is a value whose String is ovs-ofctl syntax in the form OVS
// prints it back, so rendered and dumped actions compare equal. All are
// comparable with == except Learn (it holds a slice of specs); compare
// actions by String, as Flow.Equal does.
type Action interface {
	String() string
	isAction()
}

// GotoTable continues processing in a later table ("goto_table:N"). It must
// be the last action of a flow.
type GotoTable struct{ Table Table }

// OutputPort outputs to an OpenFlow port ("output:N").
type OutputPort struct{ Port uint32 }

// OutputReg outputs to the port held in a register ("output:NXM_NX_REG2[]").
type OutputReg struct{ Field RegField }

// LoadReg loads a constant into a whole register.
type LoadReg struct {
	Field RegField
	Value uint32
}

// Move copies one field into another ("move:A->B").
type Move struct{ Src, Dst Field }

// SetTunDst sets the outer destination of the tunnel ("set_field:IP->tun_dst").
type SetTunDst struct{ Addr netip.Addr }

// SetEthDst rewrites the Ethernet destination ("set_field:MAC->eth_dst").
type SetEthDst struct{ Addr MAC }

// ConnTrack sends the packet through conntrack
// ("ct(commit,table=31,zone=65520,nat(dst=10.128.0.5:8080),exec(…))"). With
// Recirc the packet then continues in Table with the ct_* fields set (OVS
// hides them from the rest of the current action list). Zone 0 is the
// default zone. NAT is a bare "nat" (translate packets of connections set up
// with NAT, un-NAT replies); NATSpec, when its Kind is set, sets up NAT for a
// new connection and renders instead of the bare form. NATSpec and Exec need
// Commit. The zero value is "ct()". Build it with CT, CTThen, CTCommit and
// the With… methods (conntrack.go).
type ConnTrack struct {
	Commit  bool
	Recirc  bool
	Table   Table
	NAT     bool
	Zone    uint16
	NATSpec NATSpec
	Exec    CtExec
}

// Conjunction contributes dimension K of N to conjunctive match ID.
type Conjunction struct {
	ID   uint32
	K, N uint8
}

// Drop makes the flow's action list empty ("actions=drop").
type Drop struct{}

// Note carries opaque bytes ("note:00.0d.00.00.00.00"). OVS pads notes with
// zero bytes, so trailing zeros are not significant.
type Note struct{ Data string }

// Resubmit processes the packet in Table, then continues with the following
// actions ("resubmit(,N)").
type Resubmit struct{ Table Table }

// Group outputs to an OpenFlow group ("group:N"); the group (GroupEntry)
// must exist on the bridge.
type Group struct{ ID uint32 }

// Multipath hashes the packet's Fields with Basis and writes a link number
// 0..NLinks-1, chosen by Algorithm, into Dst
// ("multipath(symmetric_l3l4+udp,0,modulo_n,3,0,NXM_NX_REG6[0..15])"). It
// is computed per flow in the slow path: the datapath flow then matches the
// hashed fields exactly. A load balancer uses it where a select group's
// datapath hash would leave fields out (see GroupEntry: UDP ports on the
// userspace datapath).
type Multipath struct {
	Fields    string // eth_src, symmetric_l4, symmetric_l3l4, symmetric_l3l4+udp, nw_src, nw_dst, symmetric_l2, symmetric_l3
	Basis     uint16
	Algorithm string // modulo_n, hash_threshold, hrw, iter_hash
	NLinks    uint16
	Arg       uint32
	Dst       BitField
}

// NewMultipath returns multipath over fields with basis 0 and modulo_n
// into dst.
func NewMultipath(fields string, nLinks uint16, dst BitField) Multipath {
	return Multipath{Fields: fields, Algorithm: "modulo_n", NLinks: nLinks, Dst: dst}
}

// OutputInPort sends the packet back out of the port it came in on
// ("IN_PORT", hairpin). OpenFlow drops output to the ingress port, so
// output:<in_port> would not work.
type OutputInPort struct{}

// CtClear clears the conntrack state of the packet ("ct_clear"), so that a
// later ct() in the same zone sees it afresh.
type CtClear struct{}

// SetEthSrc rewrites the Ethernet source ("set_field:MAC->eth_src").
type SetEthSrc struct{ Addr MAC }

// SetIPSrc rewrites the IPv4 source ("set_field:IP->ip_src"). Prefer
// ct(commit,nat(src=…)), which also un-NATs the replies.
type SetIPSrc struct{ Addr netip.Addr }

// SetIPDst rewrites the IPv4 destination ("set_field:IP->ip_dst"). Prefer
// ct(commit,nat(dst=…)).
type SetIPDst struct{ Addr netip.Addr }

func (GotoTable) isAction()    {}
func (OutputPort) isAction()   {}
func (OutputReg) isAction()    {}
func (LoadReg) isAction()      {}
func (Move) isAction()         {}
func (SetTunDst) isAction()    {}
func (SetEthDst) isAction()    {}
func (ConnTrack) isAction()    {}
func (Conjunction) isAction()  {}
func (Drop) isAction()         {}
func (Note) isAction()         {}
func (Resubmit) isAction()     {}
func (Group) isAction()        {}
func (OutputInPort) isAction() {}
func (Multipath) isAction()    {}
func (CtClear) isAction()      {}
func (SetEthSrc) isAction()    {}
func (SetIPSrc) isAction()     {}
func (SetIPDst) isAction()     {}

func (OutputInPort) String() string { return "IN_PORT" }
func (a Multipath) String() string {
	return fmt.Sprintf("multipath(%s,%d,%s,%d,%d,%s)", a.Fields, a.Basis, a.Algorithm, a.NLinks, a.Arg, a.Dst.NXM())
}
func (CtClear) String() string     { return "ct_clear" }
func (a SetEthSrc) String() string { return "set_field:" + a.Addr.String() + "->eth_src" }
func (a SetIPSrc) String() string  { return "set_field:" + a.Addr.String() + "->ip_src" }
func (a SetIPDst) String() string  { return "set_field:" + a.Addr.String() + "->ip_dst" }

func (a GotoTable) String() string  { return "goto_table:" + a.Table.String() }
func (a OutputPort) String() string { return "output:" + strconv.FormatUint(uint64(a.Port), 10) }
func (a OutputReg) String() string  { return "output:" + a.Field.NXM() }
func (a LoadReg) String() string {
	return "load:0x" + strconv.FormatUint(uint64(a.Value), 16) + "->" + a.Field.NXM()
}
func (a Move) String() string      { return "move:" + a.Src.NXM() + "->" + a.Dst.NXM() }
func (a SetTunDst) String() string { return "set_field:" + a.Addr.String() + "->tun_dst" }
func (a SetEthDst) String() string { return "set_field:" + a.Addr.String() + "->eth_dst" }
func (Drop) String() string        { return "drop" }
func (a Resubmit) String() string  { return "resubmit(," + a.Table.String() + ")" }
func (a Group) String() string     { return fmt.Sprintf("group:%d", a.ID) }
func (a Conjunction) String() string {
	return fmt.Sprintf("conjunction(%d,%d/%d)", a.ID, a.K, a.N)
}

// String renders the arguments in the order OVS prints them: commit,
// table, zone, nat, exec.
func (a ConnTrack) String() string {
	var args []string
	if a.Commit {
		args = append(args, "commit")
	}
	if a.Recirc {
		args = append(args, "table="+a.Table.String())
	}
	if a.Zone != 0 {
		args = append(args, "zone="+strconv.Itoa(int(a.Zone)))
	}
	if a.NATSpec.Kind != NATNone {
		args = append(args, a.NATSpec.String())
	} else if a.NAT {
		args = append(args, "nat")
	}
	if !a.Exec.IsZero() {
		args = append(args, a.Exec.String())
	}
	return "ct(" + strings.Join(args, ",") + ")"
}

// String pads the data with zero bytes exactly as OVS does (the 10-byte
// action header plus data is rounded up to 8 bytes). Rendering the padding
// matters: replace-flows compares encoded actions, and an unpadded note
// would be rewritten on every full sync.
func (a Note) String() string {
	data := strings.TrimRight(a.Data, "\x00")
	n := (10+len(data)+7)/8*8 - 10
	parts := make([]string, n)
	for i := range parts {
		b := byte(0)
		if i < len(data) {
			b = data[i]
		}
		parts[i] = fmt.Sprintf("%02x", b)
	}
	return "note:" + strings.Join(parts, ".")
}

// Goto returns goto_table:t.
func Goto(t Table) Action { return GotoTable{Table: t} }

// Output returns output:port.
func Output(port uint32) Action { return OutputPort{Port: port} }

// SetTunnelDst returns set_field:addr->tun_dst.
func SetTunnelDst(addr netip.Addr) Action { return SetTunDst{Addr: addr} }

// SetEthernetDst returns set_field:mac->eth_dst.
func SetEthernetDst(addr MAC) Action { return SetEthDst{Addr: addr} }

// CT returns ct([commit][,nat]) without recirculation.
func CT(commit, nat bool) Action { return ConnTrack{Commit: commit, NAT: nat} }

// CTThen returns ct([commit,]table=t[,nat]): the packet re-enters table t
// with conntrack state.
func CTThen(t Table, commit, nat bool) Action {
	return ConnTrack{Commit: commit, Recirc: true, Table: t, NAT: nat}
}

// Conj returns conjunction(id,k/n).
func Conj(id uint32, k, n uint8) Action { return Conjunction{ID: id, K: k, N: n} }

// DropAction returns the explicit drop.
func DropAction() Action { return Drop{} }

// NoteBytes returns note:<data>.
func NoteBytes(data ...byte) Action { return Note{Data: string(data)} }

// ResubmitTo returns resubmit(,t).
func ResubmitTo(t Table) Action { return Resubmit{Table: t} }

// GroupAction returns group:id.
func GroupAction(id uint32) Action { return Group{ID: id} }

// OutputToInPort returns IN_PORT (hairpin).
func OutputToInPort() Action { return OutputInPort{} }

// ClearCt returns ct_clear.
func ClearCt() Action { return CtClear{} }

// SetEthernetSrc returns set_field:mac->eth_src.
func SetEthernetSrc(addr MAC) Action { return SetEthSrc{Addr: addr} }

// SetIPv4Src returns set_field:addr->ip_src.
func SetIPv4Src(addr netip.Addr) Action { return SetIPSrc{Addr: addr} }

// SetIPv4Dst returns set_field:addr->ip_dst.
func SetIPv4Dst(addr netip.Addr) Action { return SetIPDst{Addr: addr} }
