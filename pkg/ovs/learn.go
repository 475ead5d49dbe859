package ovs

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Learn adds or refreshes a flow computed from the packet that executes it
// ("learn(table=…,hard_timeout=…,priority=…,delete_learned,cookie=…,specs…)").
// Services use it for session affinity (learn client IP + VIP + port →
// the chosen endpoint in registers) and for reflexive flows (SCTP replies).
//
// The learned flow lives only in OVS: it is never part of the desired state.
// It carries Cookie, which must be of category CookieLearned
// (CookieFor(CookieLearned, owner)): full syncs (ReplaceFlows, ReplaceAll)
// leave that category alone, so a periodic sync does not wipe session
// affinity, and DeleteFlows(ByCookie(MatchOwner(CookieLearned, owner)))
// removes one owner's learned flows. With DeleteLearned, OVS also deletes the
// learned flows when the learning flow is deleted.
//
// Priority 32768 is OVS's default and is not rendered. Learn is not
// comparable with == (Specs is a slice); build it with NewLearn and the
// builder methods, which never alias the receiver's specs.
type Learn struct {
	Table         Table
	Priority      uint16
	IdleTimeout   uint16 // seconds; 0: none
	HardTimeout   uint16 // seconds; 0: none
	DeleteLearned bool
	Cookie        uint64
	Specs         []LearnSpec
}

// LearnSpecKind is the kind of one learn spec.
type LearnSpecKind uint8

// Learn spec kinds.
const (
	// LearnMatchField: the learned flow matches Dst against this packet's
	// Src ("NXM_OF_IP_SRC[]", or "NXM_OF_IP_DST[]=NXM_OF_IP_SRC[]").
	LearnMatchField LearnSpecKind = iota + 1
	// LearnMatchValue: the learned flow matches Dst == Value ("eth_type=0x800",
	// "NXM_NX_REG4[0..3]=0x2").
	LearnMatchValue
	// LearnLoadField: the learned flow loads this packet's Src into Dst
	// ("load:NXM_NX_REG3[]->NXM_NX_REG3[]").
	LearnLoadField
	// LearnLoadValue: the learned flow loads Value into Dst
	// ("load:0x1->NXM_NX_REG4[16..18]").
	LearnLoadValue
	// LearnOutputField: the learned flow outputs to the port held in this
	// packet's Src ("output:NXM_OF_IN_PORT[]").
	LearnOutputField
)

// LearnSpec is one element of a learn action; which fields are used depends
// on Kind. Values are unshifted, as for BitField.
type LearnSpec struct {
	Kind  LearnSpecKind
	Dst   BitField
	Src   BitField
	Value uint64
}

func (Learn) isAction() {}

// NewLearn starts a learn action that installs flows in table t at priority.
func NewLearn(t Table, priority uint16) Learn { return Learn{Table: t, Priority: priority} }

// WithIdleTimeout returns l whose learned flows expire after s idle seconds.
func (l Learn) WithIdleTimeout(s uint16) Learn { l.IdleTimeout = s; return l }

// WithHardTimeout returns l whose learned flows expire s seconds after they
// were last learned (each new packet through the learn refreshes them).
func (l Learn) WithHardTimeout(s uint16) Learn { l.HardTimeout = s; return l }

// WithCookie returns l whose learned flows carry cookie c (category
// CookieLearned).
func (l Learn) WithCookie(c uint64) Learn { l.Cookie = c; return l }

// WithDeleteLearned returns l with delete_learned.
func (l Learn) WithDeleteLearned() Learn { l.DeleteLearned = true; return l }

func (l Learn) with(s ...LearnSpec) Learn {
	l.Specs = append(slices.Clip(l.Specs), s...)
	return l
}

// MatchProto returns l whose learned flows match protocol p
// ("eth_type=0x800,nw_proto=6" for tcp). Put it first: later specs on IP
// and port fields need it.
func (l Learn) MatchProto(p Proto) Learn {
	if p == ProtoARP {
		return l.with(LearnSpec{Kind: LearnMatchValue, Dst: FieldEthType.bits(), Value: 0x806})
	}
	l = l.with(LearnSpec{Kind: LearnMatchValue, Dst: FieldEthType.bits(), Value: 0x800})
	if n, ok := protoNumbers[p]; ok {
		l = l.with(LearnSpec{Kind: LearnMatchValue, Dst: FieldIPProto.bits(), Value: uint64(n)})
	}
	return l
}

// MatchSame returns l whose learned flows match each field against this
// packet's value of it ("NXM_OF_IP_SRC[]").
func (l Learn) MatchSame(fields ...Field) Learn {
	for _, f := range fields {
		l = l.with(LearnSpec{Kind: LearnMatchField, Dst: f.bits(), Src: f.bits()})
	}
	return l
}

// MatchFrom returns l whose learned flows match dst against this packet's
// src ("DST=SRC": reflexive flows swap source and destination).
func (l Learn) MatchFrom(dst, src Field) Learn {
	return l.with(LearnSpec{Kind: LearnMatchField, Dst: dst.bits(), Src: src.bits()})
}

// MatchValue returns l whose learned flows match dst == v.
func (l Learn) MatchValue(dst Field, v uint64) Learn {
	return l.with(LearnSpec{Kind: LearnMatchValue, Dst: dst.bits(), Value: v})
}

// LoadFrom returns l whose learned flows load this packet's src into dst
// ("load:SRC->DST").
func (l Learn) LoadFrom(src, dst Field) Learn {
	return l.with(LearnSpec{Kind: LearnLoadField, Dst: dst.bits(), Src: src.bits()})
}

// LoadValue returns l whose learned flows load v into dst.
func (l Learn) LoadValue(dst Field, v uint64) Learn {
	return l.with(LearnSpec{Kind: LearnLoadValue, Dst: dst.bits(), Value: v})
}

// LoadMark returns l whose learned flows set mark m (a register or pkt_mark
// field value).
func (l Learn) LoadMark(m Mark) Learn { return l.LoadValue(m.Field, m.Value) }

// OutputFrom returns l whose learned flows output to the port in this
// packet's src ("output:NXM_OF_IN_PORT[]").
func (l Learn) OutputFrom(src Field) Learn {
	return l.with(LearnSpec{Kind: LearnOutputField, Src: src.bits()})
}

// String renders the learn as OVS prints it: table, idle_timeout,
// hard_timeout, priority, delete_learned, cookie, then the specs.
func (l Learn) String() string {
	args := []string{"table=" + l.Table.String()}
	if l.IdleTimeout != 0 {
		args = append(args, "idle_timeout="+strconv.Itoa(int(l.IdleTimeout)))
	}
	if l.HardTimeout != 0 {
		args = append(args, "hard_timeout="+strconv.Itoa(int(l.HardTimeout)))
	}
	if l.Priority != DefaultPriority {
		args = append(args, "priority="+strconv.Itoa(int(l.Priority)))
	}
	if l.DeleteLearned {
		args = append(args, "delete_learned")
	}
	if l.Cookie != 0 {
		args = append(args, "cookie=0x"+strconv.FormatUint(l.Cookie, 16))
	}
	for _, s := range l.Specs {
		args = append(args, s.String())
	}
	return "learn(" + strings.Join(args, ",") + ")"
}

// String renders one spec as OVS prints it. A whole-field immediate uses the
// field's name and natural format ("ip_src=10.0.0.1", "reg3=0x5",
// "tcp_dst=80"); a sub-field immediate is hex ("NXM_NX_REG4[0..3]=0x2").
func (s LearnSpec) String() string {
	switch s.Kind {
	case LearnMatchField:
		if s.Dst == s.Src || s.Dst.NXM() == s.Src.NXM() {
			return s.Src.NXM()
		}
		return s.Dst.NXM() + "=" + s.Src.NXM()
	case LearnMatchValue:
		if s.Dst.Whole() {
			return s.Dst.Field.String() + "=" + formatValue(s.Dst.Field, s.Value)
		}
		return s.Dst.NXM() + "=" + hexOrZero(s.Value)
	case LearnLoadField:
		return "load:" + s.Src.NXM() + "->" + s.Dst.NXM()
	case LearnLoadValue:
		return "load:" + hexOrZero(s.Value) + "->" + s.Dst.NXM()
	case LearnOutputField:
		return "output:" + s.Src.NXM()
	}
	return fmt.Sprintf("<bad learn spec kind %d>", s.Kind)
}

func parseLearn(args string) (Action, error) {
	l := Learn{Priority: DefaultPriority}
	for _, arg := range splitTopLevel(args) {
		if err := l.parseArg(arg); err != nil {
			return nil, fmt.Errorf("learn argument %q: %w", arg, err)
		}
	}
	return l, nil
}

func (l *Learn) parseArg(arg string) error {
	key, val, hasVal := strings.Cut(arg, "=")
	var err error
	switch {
	case arg == "delete_learned":
		l.DeleteLearned = true
	case key == "table":
		l.Table, err = parseTable(val)
	case key == "idle_timeout":
		l.IdleTimeout, err = parseUint16(val)
	case key == "hard_timeout":
		l.HardTimeout, err = parseUint16(val)
	case key == "priority":
		l.Priority, err = parseUint16(val)
	case key == "cookie":
		l.Cookie, err = strconv.ParseUint(val, 0, 64)
	case strings.HasPrefix(arg, "load:"), strings.HasPrefix(arg, "output:"):
		var s LearnSpec
		s, err = parseLearnAction(arg)
		l.Specs = append(l.Specs, s)
	case !hasVal || isFieldRef(key):
		var s LearnSpec
		s, err = parseLearnMatch(key, val, hasVal)
		l.Specs = append(l.Specs, s)
	default:
		var s LearnSpec
		s, err = parseLearnNamedValue(key, val)
		l.Specs = append(l.Specs, s)
	}
	return err
}

func parseUint16(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	return uint16(n), err
}

func isFieldRef(s string) bool { return strings.HasPrefix(s, "NXM_") || strings.HasPrefix(s, "OXM_") }

func parseRef(s string) (BitField, error) {
	f, err := parseNXMField(s)
	if err != nil {
		return BitField{}, err
	}
	return f.bits(), nil
}

func parseLearnAction(arg string) (LearnSpec, error) {
	if src, ok := strings.CutPrefix(arg, "output:"); ok {
		b, err := parseRef(src)
		return LearnSpec{Kind: LearnOutputField, Src: b}, err
	}
	src, dst, ok := strings.Cut(strings.TrimPrefix(arg, "load:"), "->")
	if !ok {
		return LearnSpec{}, errors.New("missing ->")
	}
	d, err := parseRef(dst)
	if err != nil {
		return LearnSpec{}, err
	}
	if isFieldRef(src) {
		s, err := parseRef(src)
		return LearnSpec{Kind: LearnLoadField, Dst: d, Src: s}, err
	}
	v, err := strconv.ParseUint(src, 0, 64)
	return LearnSpec{Kind: LearnLoadValue, Dst: d, Value: v}, err
}

func parseLearnMatch(key, val string, hasVal bool) (LearnSpec, error) {
	d, err := parseRef(key)
	if err != nil {
		return LearnSpec{}, err
	}
	if !hasVal {
		return LearnSpec{Kind: LearnMatchField, Dst: d, Src: d}, nil
	}
	if isFieldRef(val) {
		s, err := parseRef(val)
		return LearnSpec{Kind: LearnMatchField, Dst: d, Src: s}, err
	}
	v, err := parseValue(d.Field, val)
	if !d.Whole() {
		v, err = strconv.ParseUint(val, 0, 64)
	}
	return LearnSpec{Kind: LearnMatchValue, Dst: d, Value: v}, err
}

var learnNameAliases = map[string]string{"nw_src": "ip_src", "nw_dst": "ip_dst", "dl_type": "eth_type",
	"dl_src": "eth_src", "dl_dst": "eth_dst", "ip_proto": "nw_proto"}

func parseLearnNamedValue(key, val string) (LearnSpec, error) {
	if a, ok := learnNameAliases[key]; ok {
		key = a
	}
	f, ok := fieldByName(key)
	if !ok {
		return LearnSpec{}, errors.New("unsupported learn field")
	}
	v, err := parseValue(f, val)
	return LearnSpec{Kind: LearnMatchValue, Dst: f.bits(), Value: v}, err
}
