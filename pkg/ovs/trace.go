package ovs

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Packet is a synthetic packet for Trace. Proto is the packet's protocol
// (ProtoTCP/UDP/SCTP/ICMP imply IPv4; ProtoIP is IPv4 with IPProto);
// Src/Dst are the IP or ARP protocol addresses. CtReply marks a packet of an
// established connection's reply direction: ct() then yields
// +trk+est+rpl instead of +trk+new.
type Packet struct {
	InPort   uint32
	Proto    Proto
	IPProto  uint8 // for ProtoIP only
	Src, Dst netip.Addr
	SrcMAC   MAC // ARP sender hardware address
	DstMAC   MAC
	TpDst    uint16
	TunSrc   netip.Addr
	TunID    uint64
	CtState  CtFlags
	CtReply  bool
	Regs     [16]uint32
}

// VerdictKind is how a trace ended.
type VerdictKind uint8

// Verdict kinds.
const (
	VerdictDrop VerdictKind = iota
	VerdictOutput
	VerdictTunnel
	VerdictGroup
)

// Verdict is one outcome of a trace: Output(Port), Tunnel(TunDst, TunID) for
// output with a tunnel destination set, Group(Port=group ID), or Drop(Table)
// where processing stopped.
type Verdict struct {
	Kind   VerdictKind
	Port   uint32
	TunDst netip.Addr
	TunID  uint64
	Table  Table
}

func (v Verdict) String() string {
	switch v.Kind {
	case VerdictOutput:
		return fmt.Sprintf("Output(%d)", v.Port)
	case VerdictTunnel:
		return fmt.Sprintf("Tunnel(%s, %#x)", v.TunDst, v.TunID)
	case VerdictGroup:
		return fmt.Sprintf("Group(%d)", v.Port)
	}
	return "Drop(" + v.Table.Named() + ")"
}

// Trace is the path of a packet: the tables visited and flows matched, in
// order, and every output. Verdict is the first output, or Drop at the last
// table visited when nothing was output.
type Trace struct {
	Tables  []Table
	Flows   []Flow
	Outputs []Verdict
	Verdict Verdict
	Packet  Packet // the packet as it left the pipeline
}

func (t Trace) String() string {
	var b strings.Builder
	for i, f := range t.Flows {
		fmt.Fprintf(&b, "%d. %s\n", i+1, f.StringNamed())
	}
	fmt.Fprintf(&b, "=> %s", t.Verdict)
	return b.String()
}

// maxSteps bounds table visits (resubmit/ct loops).
const maxSteps = 64

// TraceFlows pushes p through flows starting at TableClassifier: in each
// table the highest-priority matching flow wins (conjunctions per OVS
// semantics), its actions are applied, and goto/resubmit/ct(table=) continue.
// Two distinct matching flows at the winning priority are an error, as OVS
// would pick one arbitrarily (unless they have the same actions).
func TraceFlows(flows []Flow, p Packet) (Trace, error) {
	tr := &tracer{byTable: map[uint8][]Flow{}}
	for _, f := range flows {
		tr.byTable[f.Table.ID] = append(tr.byTable[f.Table.ID], f)
	}
	err := tr.run(TableClassifier, &p)
	tr.trace.Packet = p
	tr.trace.Verdict = Verdict{Kind: VerdictDrop, Table: tr.last}
	if len(tr.trace.Outputs) > 0 {
		tr.trace.Verdict = tr.trace.Outputs[0]
	}
	return tr.trace, err
}

type tracer struct {
	byTable map[uint8][]Flow
	trace   Trace
	last    Table
	steps   int
	tunDst  netip.Addr
}

func (tr *tracer) run(t Table, p *Packet) error {
	if tr.steps++; tr.steps > maxSteps {
		return fmt.Errorf("trace: more than %d table visits (loop?)", maxSteps)
	}
	tr.trace.Tables = append(tr.trace.Tables, t)
	tr.last = t
	f, ok, err := tr.lookup(t, p)
	if err != nil || !ok {
		return err
	}
	tr.trace.Flows = append(tr.trace.Flows, f)
	return tr.apply(f, p)
}

// lookup finds the winning flow in table t.
func (tr *tracer) lookup(t Table, p *Packet) (Flow, bool, error) {
	var best []Flow
	bestPrio := -1
	for _, prio := range tr.priorities(t.ID) {
		conj := tr.completedConjunctions(t.ID, prio, p)
		for _, f := range tr.byTable[t.ID] {
			if int(f.Priority) != prio || isConjClause(f) || !matchesAll(f.Match, p, conj) {
				continue
			}
			best, bestPrio = append(best, f), prio
		}
		if bestPrio >= 0 {
			break
		}
	}
	for _, f := range best[min(1, len(best)):] {
		if actionsString(f.Actions) != actionsString(best[0].Actions) {
			return Flow{}, false, fmt.Errorf("trace: table %s: %q and %q both match at priority %d", t.Named(), best[0], f, bestPrio)
		}
	}
	if len(best) == 0 {
		return Flow{}, false, nil
	}
	return best[0], true, nil
}

// priorities returns the distinct priorities of table id, highest first.
func (tr *tracer) priorities(id uint8) []int {
	var prios []int
	for _, f := range tr.byTable[id] {
		prios = append(prios, int(f.Priority))
	}
	slices.Sort(prios)
	slices.Reverse(prios)
	return slices.Compact(prios)
}

// completedConjunctions returns the conjunction IDs all of whose dimensions
// have a matching clause flow at this level.
func (tr *tracer) completedConjunctions(id uint8, prio int, p *Packet) map[uint32]bool {
	hit := map[uint32]map[uint8]bool{}
	need := map[uint32]uint8{}
	for _, f := range tr.byTable[id] {
		if int(f.Priority) != prio || !isConjClause(f) || !matchesAll(f.Match, p, nil) {
			continue
		}
		for _, a := range f.Actions {
			c := a.(Conjunction)
			if hit[c.ID] == nil {
				hit[c.ID] = map[uint8]bool{}
			}
			hit[c.ID][c.K], need[c.ID] = true, c.N
		}
	}
	done := map[uint32]bool{}
	for id, dims := range hit {
		done[id] = len(dims) == int(need[id])
	}
	return done
}

func isConjClause(f Flow) bool {
	if len(f.Actions) == 0 {
		return false
	}
	_, ok := f.Actions[0].(Conjunction)
	return ok
}

func matchesAll(match []MatchField, p *Packet, conj map[uint32]bool) bool {
	for _, m := range match {
		if id, ok := m.(ConjID); ok {
			if !conj[uint32(id)] {
				return false
			}
			continue
		}
		if !m.matches(p) {
			return false
		}
	}
	return true
}

// apply executes f's actions; goto and ct(table=) continue after the list.
// A tunnel destination applies to the outputs of the flow that set it: the
// tracer does not know which port is the tunnel, and our pipeline always sets
// tun_dst and outputs to vxlan0 in one flow.
func (tr *tracer) apply(f Flow, p *Packet) error {
	var next *Table
	tr.tunDst = netip.Addr{}
	for _, a := range f.Actions {
		switch a := a.(type) {
		case LoadReg:
			p.Regs[a.Field.Reg] = a.Value
		case Move:
			writeField(p, a.Dst, readField(p, a.Src))
		case SetTunDst:
			tr.tunDst = a.Addr
		case SetEthDst:
			p.DstMAC = a.Addr
		case OutputPort:
			tr.outputUnlessInPort(p, a.Port)
		case OutputReg:
			tr.outputUnlessInPort(p, p.Regs[a.Field.Reg])
		case Group:
			tr.trace.Outputs = append(tr.trace.Outputs, Verdict{Kind: VerdictGroup, Port: a.ID, Table: f.Table})
		case GotoTable:
			next = &a.Table
		case Resubmit:
			saved := tr.tunDst
			if err := tr.run(a.Table, p); err != nil {
				return err
			}
			tr.tunDst = saved
		case ConnTrack:
			p.CtState = ctResult(p)
			if a.Recirc {
				next = &a.Table
			}
		}
	}
	if next != nil {
		return tr.run(*next, p)
	}
	return nil
}

// outputUnlessInPort outputs to port, except to the packet's own in_port:
// OVS skips such an output ("skipping output to input port") unless the
// action is output:in_port. Multicast delivery relies on it: table
// MulticastToLocal outputs to every local pod of the VNID, and the sender
// does not get its own datagram back.
func (tr *tracer) outputUnlessInPort(p *Packet, port uint32) {
	if port != p.InPort {
		tr.output(p, port)
	}
}

func (tr *tracer) output(p *Packet, port uint32) {
	v := Verdict{Kind: VerdictOutput, Port: port, Table: tr.last}
	if tr.tunDst.IsValid() {
		v = Verdict{Kind: VerdictTunnel, Port: port, TunDst: tr.tunDst, TunID: p.TunID, Table: tr.last}
	}
	tr.trace.Outputs = append(tr.trace.Outputs, v)
}

func ctResult(p *Packet) CtFlags {
	if p.CtReply {
		return CtTrk | CtEst | CtRpl
	}
	return CtTrk | CtNew
}

func readField(p *Packet, f Field) uint32 {
	if r, ok := f.(RegField); ok {
		return p.Regs[r.Reg]
	}
	return uint32(p.TunID)
}

func writeField(p *Packet, f Field, v uint32) {
	if r, ok := f.(RegField); ok {
		p.Regs[r.Reg] = v
		return
	}
	p.TunID = p.TunID&^0xffffffff | uint64(v)
}
