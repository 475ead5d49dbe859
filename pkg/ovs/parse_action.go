package ovs

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"
)

// parseAction parses one action in the form OVS prints it.
func parseAction(s string) (Action, error) {
	switch s {
	case "drop":
		return Drop{}, nil
	case "IN_PORT", "output:in_port", "in_port":
		return OutputInPort{}, nil
	case "ct_clear":
		return CtClear{}, nil
	}
	colon, paren := strings.IndexByte(s, ':'), strings.IndexByte(s, '(')
	if colon >= 0 && (paren < 0 || colon < paren) {
		name, arg := s[:colon], s[colon+1:]
		a, err := parseColonAction(name, arg)
		if err != nil {
			return nil, fmt.Errorf("action %q: %w", s, err)
		}
		return a, nil
	}
	if paren >= 0 && strings.HasSuffix(s, ")") {
		a, err := parseParenAction(s[:paren], s[paren+1:len(s)-1])
		if err != nil {
			return nil, fmt.Errorf("action %q: %w", s, err)
		}
		return a, nil
	}
	return nil, fmt.Errorf("unsupported action %q", s)
}

func parseColonAction(name, arg string) (Action, error) {
	switch name {
	case "goto_table":
		t, err := parseTable(arg)
		return GotoTable{Table: t}, err
	case "output":
		if strings.HasPrefix(arg, "NXM_") {
			f, err := parseNXMField(arg)
			reg, ok := f.(RegField)
			if err == nil && !ok {
				err = errors.New("output from a non-register field")
			}
			return OutputReg{Field: reg}, err
		}
		n, err := strconv.ParseUint(arg, 10, 32)
		return OutputPort{Port: uint32(n)}, err
	case "group":
		n, err := strconv.ParseUint(arg, 10, 32)
		return Group{ID: uint32(n)}, err
	case "load":
		return parseLoad(arg)
	case "move":
		return parseMove(arg)
	case "set_field":
		return parseSetField(arg)
	case "note":
		return parseNote(arg)
	}
	return nil, errors.New("unsupported action")
}

func parseLoad(arg string) (Action, error) {
	v, dst, ok := strings.Cut(arg, "->")
	if !ok {
		return nil, errors.New("missing ->")
	}
	value, err := strconv.ParseUint(v, 0, 64)
	if err != nil {
		return nil, err
	}
	f, err := parseNXMField(dst)
	if err != nil {
		return nil, err
	}
	if reg, ok := f.(RegField); ok {
		if value>>32 != 0 {
			return nil, fmt.Errorf("value %#x does not fit a register", value)
		}
		return LoadReg{Field: reg, Value: uint32(value)}, nil
	}
	return Load{Field: f.bits(), Value: value}, nil
}

func parseMove(arg string) (Action, error) {
	src, dst, ok := strings.Cut(arg, "->")
	if !ok {
		return nil, errors.New("missing ->")
	}
	s, err := parseNXMField(src)
	if err != nil {
		return nil, err
	}
	d, err := parseNXMField(dst)
	return Move{Src: s, Dst: d}, err
}

func parseSetField(arg string) (Action, error) {
	v, field, ok := strings.Cut(arg, "->")
	if !ok {
		return nil, errors.New("missing ->")
	}
	switch field {
	case "tun_dst":
		a, err := netip.ParseAddr(v)
		return SetTunDst{Addr: a}, err
	case "eth_dst":
		m, err := ParseMAC(v)
		return SetEthDst{Addr: m}, err
	case "eth_src":
		m, err := ParseMAC(v)
		return SetEthSrc{Addr: m}, err
	case "ip_src", "nw_src":
		a, err := netip.ParseAddr(v)
		return SetIPSrc{Addr: a}, err
	case "ip_dst", "nw_dst":
		a, err := netip.ParseAddr(v)
		return SetIPDst{Addr: a}, err
	}
	// A whole pkt_mark or register written with set_field (OVS prints the
	// keyword it was given): the equivalent load, which we render.
	if f, ok := fieldByName(field); ok && (f.IsReg() || f == FieldPktMark) && !strings.Contains(v, "/") {
		n, err := strconv.ParseUint(v, 0, 32)
		if err != nil {
			return nil, err
		}
		return f.bits().Load(n), nil
	}
	// Part of a register, masked (OpenFlow 1.5 dumps print loads so): the
	// equivalent load of the mask's bits, which must be contiguous.
	if f, ok := fieldByName(field); ok && f.IsReg() {
		val, mask, _ := strings.Cut(v, "/")
		n, err := strconv.ParseUint(val, 0, 32)
		if err != nil {
			return nil, err
		}
		m, err := strconv.ParseUint(mask, 0, 32)
		if err != nil || m == 0 {
			return nil, fmt.Errorf("set_field mask %q", mask)
		}
		lo := bits.TrailingZeros64(m)
		width := bits.Len64(m) - lo
		if m>>lo != 1<<width-1 || n&^m != 0 {
			return nil, fmt.Errorf("set_field %s: mask not contiguous or value outside it", v)
		}
		return NewBitField(f, uint8(lo), uint8(lo+width-1), "").Load(n >> lo), nil
	}
	return nil, fmt.Errorf("unsupported set_field target %q", field)
}

func parseNote(arg string) (Action, error) {
	var data []byte
	for _, h := range strings.Split(arg, ".") {
		b, err := strconv.ParseUint(h, 16, 8)
		if err != nil {
			return nil, err
		}
		data = append(data, byte(b))
	}
	return Note{Data: strings.TrimRight(string(data), "\x00")}, nil
}

func parseParenAction(name, args string) (Action, error) {
	switch name {
	case "resubmit":
		port, table, ok := strings.Cut(args, ",")
		if !ok || port != "" {
			return nil, errors.New("only resubmit(,TABLE) is supported")
		}
		t, err := parseTable(table)
		return Resubmit{Table: t}, err
	case "conjunction":
		var c Conjunction
		n, err := fmt.Sscanf(args, "%d,%d/%d", &c.ID, &c.K, &c.N)
		if err == nil && (n != 3 || c.String() != "conjunction("+args+")") {
			err = errors.New("malformed conjunction")
		}
		return c, err
	case "ct":
		return parseCT(args)
	case "learn":
		return parseLearn(args)
	case "multipath":
		return parseMultipath(args)
	}
	return nil, errors.New("unsupported action")
}

// parseMultipath parses "FIELDS,BASIS,ALGORITHM,N_LINKS,ARG,DST".
func parseMultipath(args string) (Action, error) {
	parts := strings.SplitN(args, ",", 6)
	if len(parts) != 6 {
		return nil, errors.New("multipath wants 6 arguments")
	}
	basis, err1 := strconv.ParseUint(parts[1], 10, 16)
	n, err2 := strconv.ParseUint(parts[3], 10, 16)
	arg, err3 := strconv.ParseUint(parts[4], 10, 32)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, err
	}
	f, err := parseNXMField(parts[5])
	if err != nil {
		return nil, err
	}
	return Multipath{Fields: parts[0], Basis: uint16(basis), Algorithm: parts[2], NLinks: uint16(n), Arg: uint32(arg),
		Dst: f.bits()}, nil
}
