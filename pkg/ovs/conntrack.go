package ovs

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"
)

// This file holds conntrack: the ct action's zone, NAT and exec arguments,
// and the ct_* matches. The ConnTrack type itself and CT/CTThen are in
// action.go.

// NATKind selects what ct's nat rewrites.
type NATKind uint8

// NAT kinds. NATNone is the zero value: no address translation is set up.
const (
	NATNone NATKind = iota
	NATSrc          // nat(src=…): rewrite the source of the connection
	NATDst          // nat(dst=…): rewrite the destination of the connection
)

// NATFlags are nat's optional flags.
type NATFlags uint8

// NAT flags. NATHash and NATRandom (the port-selection strategy) are
// mutually exclusive.
const (
	NATPersistent NATFlags = 1 << iota
	NATHash
	NATRandom
)

// NATSpec sets up address translation for a new connection, as in
// "nat(dst=10.128.0.5:8080)" or "nat(src=10.0.0.1-10.0.0.9:1000-2000,random)".
// Addr is the first (or only) IPv4 address; AddrMax, if valid and greater,
// ends an address range. Port 0 keeps the port; PortMax, if greater than
// Port, ends a port range. The zero value (Kind NATNone) means no NAT setup.
// ct applies it only with commit, on a connection's first packet; later
// packets are translated by a bare "nat".
type NATSpec struct {
	Kind    NATKind
	Addr    netip.Addr
	AddrMax netip.Addr
	Port    uint16
	PortMax uint16
	Flags   NATFlags
}

// String renders "nat(dst=A[-B][:P[-Q]][,persistent][,hash][,random])" in
// OVS's order; a degenerate range (B == A, Q == P) renders as one value, as
// OVS prints it.
func (n NATSpec) String() string {
	var b strings.Builder
	b.WriteString("nat(")
	if n.Kind == NATSrc {
		b.WriteString("src=")
	} else {
		b.WriteString("dst=")
	}
	b.WriteString(n.Addr.String())
	if n.AddrMax.IsValid() && n.AddrMax.Compare(n.Addr) > 0 {
		b.WriteString("-" + n.AddrMax.String())
	}
	if n.Port != 0 {
		b.WriteString(":" + strconv.Itoa(int(n.Port)))
		if n.PortMax > n.Port {
			b.WriteString("-" + strconv.Itoa(int(n.PortMax)))
		}
	}
	for _, f := range []struct {
		flag NATFlags
		name string
	}{{NATPersistent, ",persistent"}, {NATHash, ",hash"}, {NATRandom, ",random"}} {
		if n.Flags&f.flag != 0 {
			b.WriteString(f.name)
		}
	}
	b.WriteByte(')')
	return b.String()
}

func (n NATSpec) validate() error {
	if n.Kind != NATSrc && n.Kind != NATDst {
		return fmt.Errorf("nat: unknown kind %d", n.Kind)
	}
	if !n.Addr.Is4() || n.AddrMax.IsValid() && (!n.AddrMax.Is4() || n.AddrMax.Less(n.Addr)) {
		return fmt.Errorf("%s: need an IPv4 address (range low-high)", n)
	}
	if n.PortMax != 0 && n.PortMax < n.Port {
		return fmt.Errorf("%s: port range high < low", n)
	}
	if n.Flags&NATHash != 0 && n.Flags&NATRandom != 0 {
		return fmt.Errorf("%s: hash and random are exclusive", n)
	}
	return nil
}

// CtExec is what ct(commit,exec(…)) writes into a connection: the ct_mark
// bits under MarkMask and the ct_label bits under LabelMask. The zero value
// writes nothing. Build it with ConnTrack.WithMark.
//
// It renders as the loads OVS prints back, ct_mark first, then ct_label, each
// mask split into contiguous runs from the lowest bit (label runs at most 64
// bits): "exec(load:0x1->NXM_NX_CT_MARK[4],load:0x3->NXM_NX_CT_LABEL[0..1])";
// a whole ct_mark is "load:0x20->NXM_NX_CT_MARK[]".
type CtExec struct {
	Mark, MarkMask   uint32
	Label, LabelMask U128
}

// IsZero reports whether the exec writes nothing.
func (e CtExec) IsZero() bool { return e.MarkMask == 0 && e.LabelMask.IsZero() }

func (e CtExec) String() string {
	loads := e.Loads()
	parts := make([]string, len(loads))
	for i, l := range loads {
		parts[i] = l.String()
	}
	return "exec(" + strings.Join(parts, ",") + ")"
}

// Loads returns the exec's writes as the loads OVS prints (and ovs-ofctl
// encodes): ct_mark first — one load of the whole field, or one per run of
// mask bits —, then ct_label, one load per run of at most 64 bits.
func (e CtExec) Loads() []Load {
	var loads []Load
	if e.MarkMask == ^uint32(0) {
		loads = append(loads, Load{Field: FieldCtMark.bits(), Value: uint64(e.Mark)})
	} else {
		for _, r := range bitRuns(U128{Lo: uint64(e.MarkMask)}, 32) {
			v := uint64(e.Mark) >> r.lo & (1<<r.width() - 1)
			loads = append(loads, Load{Field: BitField{Field: FieldCtMark, Lo: r.lo, Hi: r.hi}, Value: v})
		}
	}
	for _, r := range bitRuns(e.LabelMask, 64) {
		v := e.Label.shr(int(r.lo)).and(onesU128(r.width())).Lo
		loads = append(loads, Load{Field: BitField{Field: FieldCtLabel, Lo: r.lo, Hi: r.hi}, Value: v})
	}
	return loads
}

// With returns e also writing value v into f (a ct_mark or ct_label bit
// field), for decoders; a value that does not fit or another field is an
// error.
func (e CtExec) With(f BitField, v uint64) (CtExec, error) {
	err := e.set(f, v)
	return e, err
}

type bitRun struct{ lo, hi uint8 }

func (r bitRun) width() int { return int(r.hi) - int(r.lo) + 1 }

// bitRuns splits mask into runs of contiguous set bits, lowest first, none
// longer than maxWidth.
func bitRuns(mask U128, maxWidth int) []bitRun {
	var runs []bitRun
	for pos := 0; pos < 128; {
		rest := mask.shr(pos)
		if rest.IsZero() {
			break
		}
		lo := pos + rest.trailingZeros()
		n := min(onesRun(mask.shr(lo)), maxWidth)
		runs = append(runs, bitRun{uint8(lo), uint8(lo + n - 1)})
		pos = lo + n
	}
	return runs
}

// onesRun counts the consecutive set bits of u from bit 0.
func onesRun(u U128) int {
	if n := bits.TrailingZeros64(^u.Lo); n < 64 {
		return n
	}
	return 64 + bits.TrailingZeros64(^u.Hi)
}

// set writes value v into the bits of f (a ct_mark or ct_label field).
func (e *CtExec) set(f BitField, v uint64) error {
	if !f.fits(v) {
		return fmt.Errorf("value %#x does not fit %s", v, f.label())
	}
	switch f.Field {
	case FieldCtMark:
		m := f.mask32()
		e.Mark = e.Mark&^m | uint32(v)<<f.Lo&m
		e.MarkMask |= m
	case FieldCtLabel:
		m := f.mask128()
		e.Label = e.Label.andNot(m).or(U128{Lo: v}.shl(int(f.Lo)).and(m))
		e.LabelMask = e.LabelMask.or(m)
	default:
		return fmt.Errorf("%s is not a ct_mark or ct_label field", f.label())
	}
	return nil
}

// CTCommit returns ct(commit): the start of a builder for the other ct forms.
func CTCommit() ConnTrack { return ConnTrack{Commit: true} }

// WithCommit returns c with commit set.
func (c ConnTrack) WithCommit() ConnTrack { c.Commit = true; return c }

// WithTable returns c recirculating into table t ("table=N").
func (c ConnTrack) WithTable(t Table) ConnTrack { c.Recirc, c.Table = true, t; return c }

// WithZone returns c in conntrack zone z ("zone=N"; 0 is the default zone
// and is not rendered, as OVS prints it).
func (c ConnTrack) WithZone(z uint16) ConnTrack { c.Zone = z; return c }

// WithNAT returns c with a bare "nat": packets of connections set up with NAT
// are translated (replies un-NATed).
func (c ConnTrack) WithNAT() ConnTrack { c.NAT = true; return c }

// WithDNAT returns c setting up "nat(dst=addr[:port])" (port 0 keeps the
// port). Needs commit.
func (c ConnTrack) WithDNAT(addr netip.Addr, port uint16) ConnTrack {
	c.NATSpec = NATSpec{Kind: NATDst, Addr: addr, Port: port}
	return c
}

// WithSNAT returns c setting up "nat(src=addr[:port])". Needs commit.
func (c ConnTrack) WithSNAT(addr netip.Addr, port uint16) ConnTrack {
	c.NATSpec = NATSpec{Kind: NATSrc, Addr: addr, Port: port}
	return c
}

// WithNATSpec returns c setting up n (ranges, flags). Needs commit.
func (c ConnTrack) WithNATSpec(n NATSpec) ConnTrack { c.NATSpec = n; return c }

// WithMark returns c writing each mark (a ct_mark or ct_label bit field
// value) into the connection with exec. Needs commit. A mark of another
// field, or a value that does not fit, panics: marks are declared once as
// package variables, so this is a programming error.
func (c ConnTrack) WithMark(marks ...Mark) ConnTrack {
	for _, m := range marks {
		if err := c.Exec.set(m.Field, m.Value); err != nil {
			panic("ovs: ct exec: " + err.Error())
		}
	}
	return c
}

func (c ConnTrack) validate() error {
	if (c.NATSpec.Kind != NATNone || !c.Exec.IsZero()) && !c.Commit {
		return fmt.Errorf("%s: nat(…) and exec(…) need commit", c)
	}
	if c.NATSpec.Kind != NATNone {
		return c.NATSpec.validate()
	}
	return nil
}

func parseCT(args string) (Action, error) {
	var ct ConnTrack
	if args == "" {
		return ct, nil
	}
	for _, arg := range splitTopLevel(args) {
		if err := ct.parseArg(arg); err != nil {
			return nil, err
		}
	}
	return ct, nil
}

func (ct *ConnTrack) parseArg(arg string) error {
	key, val, _ := strings.Cut(arg, "=")
	var err error
	switch {
	case arg == "commit":
		ct.Commit = true
	case arg == "nat":
		ct.NAT = true
	case key == "table":
		ct.Recirc = true
		ct.Table, err = parseTable(val)
	case key == "zone":
		var z uint64
		z, err = strconv.ParseUint(val, 10, 16)
		ct.Zone = uint16(z)
	case strings.HasPrefix(arg, "nat(") && strings.HasSuffix(arg, ")"):
		ct.NATSpec, err = parseNATSpec(arg[len("nat(") : len(arg)-1])
	case strings.HasPrefix(arg, "exec(") && strings.HasSuffix(arg, ")"):
		ct.Exec, err = parseCtExec(arg[len("exec(") : len(arg)-1])
	default:
		return fmt.Errorf("unsupported ct argument %q", arg)
	}
	if err != nil {
		return fmt.Errorf("ct argument %q: %w", arg, err)
	}
	return nil
}

func parseNATSpec(s string) (NATSpec, error) {
	parts := strings.Split(s, ",")
	var n NATSpec
	kind, spec, ok := strings.Cut(parts[0], "=")
	switch {
	case ok && kind == "src":
		n.Kind = NATSrc
	case ok && kind == "dst":
		n.Kind = NATDst
	default:
		return n, errors.New("want src=… or dst=…")
	}
	if err := n.parseRange(spec); err != nil {
		return n, err
	}
	for _, f := range parts[1:] {
		switch f {
		case "persistent":
			n.Flags |= NATPersistent
		case "hash":
			n.Flags |= NATHash
		case "random":
			n.Flags |= NATRandom
		default:
			return n, fmt.Errorf("unknown nat flag %q", f)
		}
	}
	return n, nil
}

func (n *NATSpec) parseRange(spec string) error {
	addrs, ports, hasPort := strings.Cut(spec, ":")
	lo, hi, isRange := strings.Cut(addrs, "-")
	var err error
	if n.Addr, err = netip.ParseAddr(lo); err != nil {
		return err
	}
	if isRange {
		if n.AddrMax, err = netip.ParseAddr(hi); err != nil {
			return err
		}
	}
	if !hasPort {
		return nil
	}
	plo, phi, isPortRange := strings.Cut(ports, "-")
	p, err := strconv.ParseUint(plo, 10, 16)
	n.Port = uint16(p)
	if err == nil && isPortRange {
		p, err = strconv.ParseUint(phi, 10, 16)
		n.PortMax = uint16(p)
	}
	return err
}

// parseCtExec accepts the loads OVS prints and set_field of ct_mark /
// ct_label ("set_field:0x20->ct_mark", "set_field:0x1/0x1->ct_label").
func parseCtExec(s string) (CtExec, error) {
	var e CtExec
	for _, a := range splitTopLevel(s) {
		if err := e.parseOne(a); err != nil {
			return e, fmt.Errorf("exec %q: %w", a, err)
		}
	}
	return e, nil
}

func (e *CtExec) parseOne(a string) error {
	if arg, ok := strings.CutPrefix(a, "set_field:"); ok {
		v, field, ok := strings.Cut(arg, "->")
		if !ok || (field != "ct_mark" && field != "ct_label") {
			return errors.New("only ct_mark and ct_label can be set")
		}
		val, mask, masked := cutMask(v)
		value, err := parseU128(val)
		m := onesU128(128)
		if field == "ct_mark" {
			m = onesU128(32)
		}
		if err == nil && masked {
			m, err = parseU128(mask)
		}
		if err != nil {
			return err
		}
		e.or(field == "ct_mark", value.and(m), m)
		return nil
	}
	arg, ok := strings.CutPrefix(a, "load:")
	if !ok {
		return errors.New("only loads into ct_mark and ct_label are supported")
	}
	l, err := parseLoad(arg)
	if err != nil {
		return err
	}
	ld, ok := l.(Load)
	if !ok {
		return errors.New("only loads into ct_mark and ct_label are supported")
	}
	return e.set(ld.Field, ld.Value)
}

func (e *CtExec) or(mark bool, v, m U128) {
	if mark {
		e.Mark = e.Mark&^uint32(m.Lo) | uint32(v.Lo)
		e.MarkMask |= uint32(m.Lo)
		return
	}
	e.Label = e.Label.andNot(m).or(v)
	e.LabelMask = e.LabelMask.or(m)
}

// CtZone matches the conntrack zone of the last ct action ("ct_zone=5").
type CtZone uint16

func (CtZone) Key() string      { return "ct_zone" }
func (m CtZone) String() string { return "ct_zone=" + strconv.Itoa(int(m)) }

// CtNwProto matches the IP protocol of the connection's original direction
// ("ct_nw_proto=6"). Like ct_nw_src/dst and ct_tp_src/dst it needs ip and a
// ct_state that implies a valid connection (+new, +est, +rel, +rpl, +snat,
// +dnat, or +trk-inv); ct_tp_src/dst also need ct_nw_proto, or OVS silently
// drops them from the match.
type CtNwProto uint8

func (CtNwProto) Key() string      { return "ct_nw_proto" }
func (m CtNwProto) String() string { return "ct_nw_proto=" + strconv.Itoa(int(m)) }

// CtNwSrc matches the original-direction source of the connection.
func CtNwSrc(p netip.Prefix) MatchField { return AddrMatch{Field: "ct_nw_src", Prefix: p.Masked()} }

// CtNwDst matches the original-direction destination of the connection
// (before DNAT: the Service VIP).
func CtNwDst(p netip.Prefix) MatchField { return AddrMatch{Field: "ct_nw_dst", Prefix: p.Masked()} }

// CtTpDst matches the original-direction destination port (before DNAT).
func CtTpDst(port uint16) MatchField { return PortMatch{Field: "ct_tp_dst", Port: port, Mask: 0xffff} }

// CtTpSrc matches the original-direction source port.
func CtTpSrc(port uint16) MatchField { return PortMatch{Field: "ct_tp_src", Port: port, Mask: 0xffff} }

// CtNwProtoOf matches the connection's transport protocol p (tcp, udp, sctp,
// icmp).
func CtNwProtoOf(p Proto) MatchField { return CtNwProto(protoNumbers[p]) }

// ctValid reports whether a ct_state match implies a valid connection, the
// prerequisite of the ct_nw_* and ct_tp_* matches.
func ctValid(s CtState) bool {
	return s.Set&(CtNew|CtEst|CtRel|CtRpl|CtSNAT|CtDNAT) != 0 || s.Set&CtTrk != 0 && s.Clear&CtInv != 0
}
