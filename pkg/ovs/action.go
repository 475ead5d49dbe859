package ovs

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Action is one typed OpenFlow action. The set is closed; every
// implementation is a comparable value whose String is ovs-ofctl syntax in
// the form OVS prints it back, so rendered and dumped actions compare equal.
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

// ConnTrack sends the packet through conntrack. With Recirc the packet then
// continues in Table with ct_state set ("ct(commit,table=31,nat)").
type ConnTrack struct {
	Commit bool
	Recirc bool
	Table  Table
	NAT    bool
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

// Group outputs to an OpenFlow group ("group:N").
type Group struct{ ID uint32 }

func (GotoTable) isAction()   {}
func (OutputPort) isAction()  {}
func (OutputReg) isAction()   {}
func (LoadReg) isAction()     {}
func (Move) isAction()        {}
func (SetTunDst) isAction()   {}
func (SetEthDst) isAction()   {}
func (ConnTrack) isAction()   {}
func (Conjunction) isAction() {}
func (Drop) isAction()        {}
func (Note) isAction()        {}
func (Resubmit) isAction()    {}
func (Group) isAction()       {}

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

// String renders the arguments in the order OVS prints them.
func (a ConnTrack) String() string {
	var args []string
	if a.Commit {
		args = append(args, "commit")
	}
	if a.Recirc {
		args = append(args, "table="+a.Table.String())
	}
	if a.NAT {
		args = append(args, "nat")
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
