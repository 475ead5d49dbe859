package ovs

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// FlowStats are the counters OVS reports for a dumped flow.
type FlowStats struct {
	Duration time.Duration
	Packets  uint64
	Bytes    uint64
}

// DumpedFlow is a flow read back from a bridge, with its counters.
type DumpedFlow struct {
	Flow
	Stats FlowStats
}

// ParseDump parses `ovs-ofctl -O OpenFlow13 dump-flows` output. Header lines
// (OFPST_FLOW reply …) and blank lines are skipped; every other line must be
// a flow. The result keeps the dump's order.
func ParseDump(text string) ([]DumpedFlow, error) {
	var flows []DumpedFlow
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "OFPST_FLOW") || strings.HasPrefix(line, "NXST_FLOW") {
			continue
		}
		f, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("dump line %d: %w", n+1, err)
		}
		flows = append(flows, f)
	}
	return flows, nil
}

// ParseFlow parses one flow in add-flow syntax (as produced by Flow.String
// or StringNamed) or one dump-flows line. A missing priority means
// DefaultPriority, as in OVS. Fields and actions outside the typed set are
// an error, so nothing is silently lost.
func ParseFlow(line string) (Flow, error) {
	d, err := parseLine(strings.TrimSpace(line))
	return d.Flow, err
}

func parseLine(line string) (DumpedFlow, error) {
	head, actions, ok := cutActions(line)
	if !ok {
		return DumpedFlow{}, fmt.Errorf("flow %q: no actions", line)
	}
	d := DumpedFlow{Flow: Flow{Priority: DefaultPriority}}
	for _, tok := range strings.Split(strings.ReplaceAll(head, ", ", ","), ",") {
		if tok == "" {
			continue
		}
		if err := d.parseHeadToken(tok); err != nil {
			return DumpedFlow{}, fmt.Errorf("flow %q: %w", line, err)
		}
	}
	for _, a := range splitTopLevel(actions) {
		act, err := parseAction(a)
		if err != nil {
			return DumpedFlow{}, fmt.Errorf("flow %q: %w", line, err)
		}
		d.Actions = append(d.Actions, act)
	}
	return d, nil
}

// cutActions splits "head actions=list" (the head may be empty).
func cutActions(line string) (head, actions string, ok bool) {
	if rest, found := strings.CutPrefix(line, "actions="); found {
		return "", rest, true
	}
	i := strings.Index(line, " actions=")
	if i < 0 {
		i = strings.Index(line, ",actions=")
	}
	if i < 0 {
		return "", "", false
	}
	return line[:i], line[i+len(" actions="):], true
}

// splitTopLevel splits on commas outside parentheses.
func splitTopLevel(s string) []string {
	var parts []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

var ignoredHeadKeys = map[string]bool{
	"idle_age": true, "hard_age": true, "idle_timeout": true, "hard_timeout": true,
	"importance": true, "send_flow_rem": true, "reset_counts": true,
	"no_packet_counts": true, "no_byte_counts": true, "check_overlap": true,
}

func (d *DumpedFlow) parseHeadToken(tok string) error {
	key, val, hasVal := strings.Cut(tok, "=")
	if ignoredHeadKeys[key] {
		return nil
	}
	if !hasVal {
		return d.parseProto(key)
	}
	var err error
	switch key {
	case "table":
		d.Table, err = parseTable(val)
	case "priority":
		var p uint64
		p, err = strconv.ParseUint(val, 0, 16)
		d.Priority = uint16(p)
	case "cookie":
		d.Cookie, err = strconv.ParseUint(val, 0, 64)
	case "duration":
		d.Stats.Duration, err = time.ParseDuration(val)
	case "n_packets":
		d.Stats.Packets, err = strconv.ParseUint(val, 10, 64)
	case "n_bytes":
		d.Stats.Bytes, err = strconv.ParseUint(val, 10, 64)
	default:
		var m MatchField
		m, err = parseMatchField(key, val)
		d.Match = append(d.Match, m)
	}
	if err != nil {
		return fmt.Errorf("field %q: %w", tok, err)
	}
	return nil
}

func (d *DumpedFlow) parseProto(word string) error {
	for p, name := range protoNames {
		if name == word {
			d.Match = append(d.Match, p)
			return nil
		}
	}
	return fmt.Errorf("unsupported match keyword %q", word)
}

// parseTable accepts "20", "PodAntiSpoof(20)" and "PodAntiSpoof".
func parseTable(s string) (Table, error) {
	if name, rest, ok := strings.Cut(s, "("); ok {
		t, err := parseTable(strings.TrimSuffix(rest, ")"))
		if err == nil && t.Name != name && !(t.Name == "" && name == "Unknown") {
			return Table{}, fmt.Errorf("table %q: name does not match ID", s)
		}
		return t, err
	}
	if id, err := strconv.ParseUint(s, 10, 8); err == nil {
		t, _ := TableByID(uint8(id))
		return t, nil
	}
	if t, ok := TableByName(s); ok {
		return t, nil
	}
	return Table{}, fmt.Errorf("unknown table %q", s)
}

var fieldAliases = map[string]string{
	"ip_src": "nw_src", "ip_dst": "nw_dst", "eth_dst": "dl_dst", "eth_src": "dl_src",
	"tcp_dst": "tp_dst", "udp_dst": "tp_dst", "sctp_dst": "tp_dst",
	"tcp_src": "tp_src", "udp_src": "tp_src", "sctp_src": "tp_src", "ip_proto": "nw_proto",
}

func parseMatchField(key, val string) (MatchField, error) {
	if alias, ok := fieldAliases[key]; ok {
		key = alias
	}
	switch key {
	case "nw_src", "nw_dst", "arp_spa", "arp_tpa", "tun_src", "tun_dst", "ct_nw_src", "ct_nw_dst":
		p, err := parsePrefix(val)
		return AddrMatch{Field: key, Prefix: p}, err
	case "dl_dst", "dl_src", "arp_sha", "arp_tha":
		return parseMACMatch(key, val)
	case "tp_dst", "tp_src", "ct_tp_dst", "ct_tp_src":
		return parsePortMatch(key, val)
	case "pkt_mark":
		return parseMarkMatch(FieldPktMark, val)
	case "ct_mark":
		return parseMarkMatch(FieldCtMark, val)
	case "ct_label":
		return parseCtLabelMatch(val)
	case "ct_zone":
		n, err := strconv.ParseUint(val, 0, 16)
		return CtZone(n), err
	case "ct_nw_proto":
		n, err := strconv.ParseUint(val, 0, 8)
		return CtNwProto(n), err
	case "in_port":
		n, err := strconv.ParseUint(val, 0, 32)
		return InPort(n), err
	case "nw_proto":
		n, err := strconv.ParseUint(val, 0, 8)
		return NwProto(n), err
	case "tun_id":
		n, err := strconv.ParseUint(val, 0, 64)
		return TunID(n), err
	case "conj_id":
		n, err := strconv.ParseUint(val, 0, 32)
		return ConjID(n), err
	case "ct_state":
		return parseCtState(val)
	case "dl_type":
		return parseDlType(val)
	}
	if strings.HasPrefix(key, "reg") {
		return parseRegMatch(key, val)
	}
	return nil, errors.New("unsupported match field")
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	return HostPrefix(a), err
}

func parseMACMatch(key, val string) (MatchField, error) {
	addr, mask, masked := strings.Cut(val, "/")
	m := MACMatch{Field: key, Mask: FullMAC}
	var err error
	if m.Addr, err = ParseMAC(addr); err == nil && masked {
		m.Mask, err = ParseMAC(mask)
	}
	m.Addr = m.masked()
	return m, err
}

func parsePortMatch(key, val string) (MatchField, error) {
	v, mask, masked := strings.Cut(val, "/")
	port, err := strconv.ParseUint(v, 0, 16)
	m := PortMatch{Field: key, Port: uint16(port), Mask: 0xffff}
	if err == nil && masked {
		var mk uint64
		mk, err = strconv.ParseUint(mask, 0, 16)
		m.Mask = uint16(mk)
		m.Port &= m.Mask
	}
	return m, err
}

func parseRegMatch(key, val string) (MatchField, error) {
	n, err := strconv.ParseUint(strings.TrimPrefix(key, "reg"), 10, 8)
	if err != nil || n > 15 {
		return nil, errors.New("unsupported register")
	}
	v, mask, masked := strings.Cut(val, "/")
	value, err := strconv.ParseUint(v, 0, 32)
	m := RegMatch{Field: regByNumber(uint8(n)), Value: uint32(value), Mask: ^uint32(0)}
	if err == nil && masked {
		var mk uint64
		mk, err = strconv.ParseUint(mask, 0, 32)
		m.Mask = uint32(mk)
		m.Value &= m.Mask
	}
	return m, err
}

func parseCtState(val string) (MatchField, error) {
	var m CtState
	for val != "" {
		sign := val[0]
		val = val[1:]
		end := strings.IndexAny(val, "+-")
		if end < 0 {
			end = len(val)
		}
		name := val[:end]
		val = val[end:]
		i := indexOf(ctFlagNames, name)
		if i < 0 || (sign != '+' && sign != '-') {
			return nil, fmt.Errorf("bad ct_state flag %c%s", sign, name)
		}
		if sign == '+' {
			m.Set |= 1 << i
		} else {
			m.Clear |= 1 << i
		}
	}
	return m, nil
}

func parseDlType(val string) (MatchField, error) {
	switch strings.ToLower(val) {
	case "0x0800", "0x800":
		return ProtoIP, nil
	case "0x0806", "0x806":
		return ProtoARP, nil
	}
	return nil, errors.New("unsupported dl_type")
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}
