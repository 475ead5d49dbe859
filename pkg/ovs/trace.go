package ovs

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Packet is a synthetic packet for Trace. Proto is the packet's protocol
// (ProtoTCP/UDP/SCTP/ICMP imply IPv4; ProtoIP is IPv4 with IPProto);
// Src/Dst are the IP or ARP protocol addresses. The zero value of every
// field means "absent" or 0.
//
// Conntrack: a packet with neither CtEst nor CtReply starts a new
// connection, and ct() yields +trk+new. CtEst marks a later packet of an
// existing connection in the original direction (+trk+est), CtReply one in
// the reply direction (+trk+est+rpl). For those, CtDNAT / CtSNAT describe how
// the connection was set up (original → translated), so that ct(nat) can
// translate the packet, and CtMark / CtLabel its marks. ct(commit,nat(…)) on
// a new connection records the binding in the packet itself.
//
// Bucket chooses the bucket of every select group the packet reaches:
// bucket Bucket mod the number of buckets (weights are ignored), and the
// link of every multipath action (Bucket mod n_links), so a test iterates
// Bucket over 0..n-1 to visit every endpoint.
type Packet struct {
	InPort   uint32
	Proto    Proto
	IPProto  uint8 // for ProtoIP only
	Src, Dst netip.Addr
	SrcMAC   MAC // ARP sender hardware address / Ethernet source
	DstMAC   MAC
	TpSrc    uint16
	TpDst    uint16
	TunSrc   netip.Addr
	TunID    uint64
	PktMark  uint32
	CtState  CtFlags
	CtReply  bool
	CtEst    bool
	CtZone   uint16
	CtMark   uint32
	CtLabel  U128
	CtDNAT   NATBinding
	CtSNAT   NATBinding
	Regs     [16]uint32
	Bucket   int

	ct ctTuple // original-direction tuple, set by the first ct()
}

// NATBinding is how conntrack translates a connection's original direction:
// From (the address and port the client used) becomes To. Port 0 means the
// port is not translated. Zone is the conntrack zone whose entry holds the
// translation: ct(nat) in another zone does not apply it (a pipeline that
// DNATs in one zone and SNATs in another sees each only in its zone). The
// zero value means no translation.
type NATBinding struct {
	From, To netip.AddrPort
	Zone     uint16
}

// IsZero reports whether b holds no translation.
func (b NATBinding) IsZero() bool { return !b.From.Addr().IsValid() }

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
	Packet  Packet // the packet at the end of the pipeline
	// OutputPackets holds the packet as it was output, one per Outputs
	// entry (after NAT, in the bucket that output it).
	OutputPackets []Packet
	// Groups lists the groups executed and the bucket taken, in order.
	Groups []GroupStep
	// Learned holds the flows learn actions would install, computed from
	// the packet. They are not applied during this trace; add them to the
	// flows to trace a later packet (session affinity).
	Learned []Flow
}

// GroupStep is one bucket of a group a trace executed; Bucket is -1 for a
// group without buckets (the packet is dropped there).
type GroupStep struct {
	ID     uint32
	Type   GroupType
	Bucket int
}

func (t Trace) String() string {
	var b strings.Builder
	for i, f := range t.Flows {
		fmt.Fprintf(&b, "%d. %s\n", i+1, f.StringNamed())
	}
	for _, g := range t.Groups {
		fmt.Fprintf(&b, "group %d (%s): bucket %d\n", g.ID, g.Type, g.Bucket)
	}
	for _, f := range t.Learned {
		fmt.Fprintf(&b, "learned %s\n", f.StringNamed())
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
// would pick one arbitrarily (unless they have the same actions). A group
// action is recorded as a Group verdict; use TraceWithGroups to follow it.
func TraceFlows(flows []Flow, p Packet) (Trace, error) { return TraceWithGroups(flows, nil, p) }

// TraceWithGroups is TraceFlows on a bridge that also holds groups. A group
// action runs the chosen bucket (select: Packet.Bucket mod the number of
// buckets; all: every bucket) on a copy of the packet, as OVS does; a group
// not in groups is recorded as a Group verdict.
//
// Conntrack is modelled for one connection (see Packet): ct sets ct_state,
// ct_zone and the original-direction tuple, sets up NAT on commit of a new
// connection (rewriting the packet, +dnat/+snat), applies existing NAT with
// nat (only the bindings of the ct's zone), and writes exec marks. Zones do
// not otherwise separate connections: ct_state and marks are shared. Unlike OVS,
// which shows the results of ct only after recirculation (table=), the
// tracer applies them at once; renderers that match on them must use
// ct(table=…).
func TraceWithGroups(flows []Flow, groups []GroupEntry, p Packet) (Trace, error) {
	tr := &tracer{byTable: map[uint8][]Flow{}, groups: map[uint32]GroupEntry{}}
	for _, f := range flows {
		tr.byTable[f.Table.ID] = append(tr.byTable[f.Table.ID], f)
	}
	for _, g := range groups {
		tr.groups[g.ID] = g
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
	groups  map[uint32]GroupEntry
	trace   Trace
	last    Table
	steps   int
	depth   int // nested group buckets
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
