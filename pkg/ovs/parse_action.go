package ovs

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// parseAction parses one action in the form OVS prints it.
func parseAction(s string) (Action, error) {
	if s == "drop" {
		return Drop{}, nil
	}
	if name, arg, ok := strings.Cut(s, ":"); ok {
		a, err := parseColonAction(name, arg)
		if err != nil {
			return nil, fmt.Errorf("action %q: %w", s, err)
		}
		return a, nil
	}
	if name, arg, ok := strings.Cut(s, "("); ok && strings.HasSuffix(arg, ")") {
		a, err := parseParenAction(name, strings.TrimSuffix(arg, ")"))
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
	value, err := strconv.ParseUint(v, 0, 32)
	if err != nil {
		return nil, err
	}
	f, err := parseNXMField(dst)
	if err != nil {
		return nil, err
	}
	reg, ok := f.(RegField)
	if !ok {
		return nil, errors.New("load into a non-register field")
	}
	return LoadReg{Field: reg, Value: uint32(value)}, nil
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
	}
	return nil, errors.New("unsupported action")
}

func parseCT(args string) (Action, error) {
	var ct ConnTrack
	if args == "" {
		return ct, nil
	}
	for _, arg := range strings.Split(args, ",") {
		switch {
		case arg == "commit":
			ct.Commit = true
		case arg == "nat":
			ct.NAT = true
		case strings.HasPrefix(arg, "table="):
			t, err := parseTable(strings.TrimPrefix(arg, "table="))
			if err != nil {
				return nil, err
			}
			ct.Recirc, ct.Table = true, t
		default:
			return nil, fmt.Errorf("unsupported ct argument %q", arg)
		}
	}
	return ct, nil
}
