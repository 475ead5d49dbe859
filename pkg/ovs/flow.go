package ovs

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// DefaultPriority is the priority OVS assigns when none is given; dumps omit
// it.
const DefaultPriority = 32768

// Flow is one OpenFlow rule. It is a value: builder methods return a modified
// copy and never alias the receiver's slices, so a partially built Flow can
// be reused as a template.
//
// The zero Match matches every packet; empty Actions mean drop.
type Flow struct {
	Table    Table
	Priority uint16
	Cookie   uint64
	Match    []MatchField // in rendering order; keys are unique
	Actions  []Action     // in execution order
}

// NewFlow starts a flow in table t at the given priority.
func NewFlow(t Table, priority uint16) Flow { return Flow{Table: t, Priority: priority} }

// WithCookie returns f with the given cookie (see CookieFor).
func (f Flow) WithCookie(c uint64) Flow { f.Cookie = c; return f }

// With appends match clauses. A masked register, pkt_mark, ct_mark or
// ct_label clause on bits disjoint from an existing clause of the same field
// is merged into it, as OVS does (two marks in reg4 become one
// "reg4=V/M"); overlapping clauses stay separate and ValidateFlow rejects
// them.
func (f Flow) With(m ...MatchField) Flow {
	f.Match = append(make([]MatchField, 0, len(f.Match)+len(m)), f.Match...)
	for _, c := range m {
		f.Match = addMatch(f.Match, c)
	}
	return f
}

// Action appends actions.
func (f Flow) Action(a ...Action) Flow {
	f.Actions = append(slices.Clip(f.Actions), a...)
	return f
}

// MatchProto adds a protocol shorthand ("ip", "arp", "tcp", …).
func (f Flow) MatchProto(p Proto) Flow { return f.With(p) }

// MatchIPv4 adds "ip".
func (f Flow) MatchIPv4() Flow { return f.With(ProtoIP) }

// MatchARP adds "arp".
func (f Flow) MatchARP() Flow { return f.With(ProtoARP) }

// MatchInPort adds "in_port=port".
func (f Flow) MatchInPort(port uint32) Flow { return f.With(InPort(port)) }

// MatchNwSrc adds "nw_src=p".
func (f Flow) MatchNwSrc(p netip.Prefix) Flow { return f.With(NwSrc(p)) }

// MatchNwDst adds "nw_dst=p".
func (f Flow) MatchNwDst(p netip.Prefix) Flow { return f.With(NwDst(p)) }

// MatchArpSpa adds "arp_spa=p".
func (f Flow) MatchArpSpa(p netip.Prefix) Flow { return f.With(ArpSpa(p)) }

// MatchArpTpa adds "arp_tpa=p".
func (f Flow) MatchArpTpa(p netip.Prefix) Flow { return f.With(ArpTpa(p)) }

// MatchTpDst adds "tp_dst=port".
func (f Flow) MatchTpDst(port uint16) Flow { return f.With(TpDst(port)) }

// MatchTunSrc adds "tun_src=a".
func (f Flow) MatchTunSrc(a netip.Addr) Flow { return f.With(TunSrc(a)) }

// MatchReg adds "reg<n>=v".
func (f Flow) MatchReg(r RegField, v uint32) Flow { return f.With(r.Match(v)) }

// MatchCtState adds "ct_state=" with the given set and cleared bits.
func (f Flow) MatchCtState(set, clear CtFlags) Flow { return f.With(CtState{Set: set, Clear: clear}) }

// MatchTpSrc adds "tp_src=port".
func (f Flow) MatchTpSrc(port uint16) Flow {
	return f.With(PortMatch{Field: "tp_src", Port: port, Mask: 0xffff})
}

// MatchMark adds the match of each mark; marks in the same register,
// pkt_mark, ct_mark or ct_label merge into one masked clause
// ("reg4=0x21f90/0x7ffff").
func (f Flow) MatchMark(marks ...Mark) Flow {
	for _, m := range marks {
		f = f.With(m.Match())
	}
	return f
}

// MatchCtZone adds "ct_zone=z".
func (f Flow) MatchCtZone(z uint16) Flow { return f.With(CtZone(z)) }

// MatchCtNwDst adds "ct_nw_dst=p": the connection's original destination
// (before DNAT). Needs ip and a ct_state implying a connection.
func (f Flow) MatchCtNwDst(p netip.Prefix) Flow { return f.With(CtNwDst(p)) }

// MatchCtTpDst adds "ct_nw_proto=<p>,ct_tp_dst=port": the connection's
// original destination port (OVS needs ct_nw_proto with ct_tp_dst).
func (f Flow) MatchCtTpDst(p Proto, port uint16) Flow {
	return f.With(CtNwProtoOf(p), CtTpDst(port))
}

// MatchConjID adds "conj_id=id".
func (f Flow) MatchConjID(id uint32) Flow { return f.With(ConjID(id)) }

// String is the canonical ovs-ofctl add-flow text:
// "table=N,priority=P[,cookie=0x..][,match] actions=A". It is the single text
// form used on the wire.
func (f Flow) String() string { return f.render(f.Table.String()) }

// StringNamed is String with the table rendered by name
// ("table=PodAntiSpoof(20),…"), for goldens and sdnctl.
func (f Flow) StringNamed() string { return f.render(f.Table.Named()) }

// MatchString renders the flow's identity for strict deletion
// ("table=N,priority=P,match"), as accepted by `flow delete_strict` and
// `del-flows --strict`.
func (f Flow) MatchString() string {
	var b strings.Builder
	f.writeHead(&b, f.Table.String(), false)
	return b.String()
}

func (f Flow) render(table string) string {
	var b strings.Builder
	b.Grow(128)
	f.writeHead(&b, table, true)
	b.WriteString(" actions=")
	b.WriteString(actionsString(f.Actions))
	return b.String()
}

func (f Flow) writeHead(b *strings.Builder, table string, cookie bool) {
	b.WriteString("table=")
	b.WriteString(table)
	b.WriteString(",priority=")
	b.WriteString(strconv.Itoa(int(f.Priority)))
	if cookie && f.Cookie != 0 {
		b.WriteString(",cookie=0x")
		b.WriteString(strconv.FormatUint(f.Cookie, 16))
	}
	for _, m := range f.Match {
		b.WriteByte(',')
		b.WriteString(m.String())
	}
}

func actionsString(actions []Action) string {
	parts := make([]string, 0, len(actions))
	for _, a := range actions {
		if _, ok := a.(Drop); ok {
			continue
		}
		parts = append(parts, a.String())
	}
	if len(parts) == 0 {
		return "drop"
	}
	return strings.Join(parts, ",")
}

// IsDrop reports whether the flow's action list is empty (drop).
func (f Flow) IsDrop() bool { return actionsString(f.Actions) == "drop" }

// Proto returns the flow's protocol clause, or 0 if it has none.
func (f Flow) Proto() Proto {
	for _, m := range f.Match {
		if p, ok := m.(Proto); ok {
			return p
		}
	}
	return 0
}

// Key identifies the flow the way OVS does: table, priority and normalized
// match. Two flows with the same Key cannot coexist on a bridge.
func (f Flow) Key() string {
	return "table=" + f.Table.String() + ",priority=" + strconv.Itoa(int(f.Priority)) + canonicalMatch(f.Match)
}

// Canonical is a normalized rendering that is equal for a flow we render
// and the same flow dumped back by OVS: the match is normalized and sorted
// (ip+nw_proto=6 → tcp, nw_src under arp → arp_spa) and actions are
// normalized (drop, note padding).
func (f Flow) Canonical() string { return f.canonicalFrom(f.Key()) }

// canonicalFrom is Canonical given the flow's Key.
func (f Flow) canonicalFrom(key string) string {
	return key + ",cookie=0x" + strconv.FormatUint(f.Cookie, 16) + " actions=" + actionsString(f.Actions)
}

// Equal reports whether f and g are the same rule with the same cookie and
// actions, after normalization.
func (f Flow) Equal(g Flow) bool { return f.Canonical() == g.Canonical() }

// normalizeMatch returns the match in OVS's normal form, sorted by key.
func normalizeMatch(match []MatchField) []MatchField {
	out := slices.Clone(match)
	proto, protoIdx := Proto(0), -1
	for i, m := range out {
		if p, ok := m.(Proto); ok {
			proto, protoIdx = p, i
		}
	}
	for i, m := range out {
		switch m := m.(type) {
		case NwProto:
			if proto == ProtoIP {
				for p, n := range protoNumbers {
					if n == uint8(m) {
						out[protoIdx], out[i] = p, nil
					}
				}
			}
		case AddrMatch:
			if proto == ProtoARP && m.Field == "nw_src" {
				out[i] = AddrMatch{Field: "arp_spa", Prefix: m.Prefix}
			} else if proto == ProtoARP && m.Field == "nw_dst" {
				out[i] = AddrMatch{Field: "arp_tpa", Prefix: m.Prefix}
			}
		}
	}
	out = slices.DeleteFunc(out, func(m MatchField) bool { return m == nil })
	slices.SortStableFunc(out, func(a, b MatchField) int { return strings.Compare(a.Key(), b.Key()) })
	return out
}

func canonicalMatch(match []MatchField) string {
	var b strings.Builder
	for _, m := range normalizeMatch(match) {
		b.WriteByte(',')
		b.WriteString(m.String())
	}
	return b.String()
}
