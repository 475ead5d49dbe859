package sdnctl

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// ofTrace is the output of `ovs-appctl ofproto/trace` (OVS 3.x) as sdnctl reads it: the
// OpenFlow rules the packet matched, in order across conntrack recirculations, and where
// it went. The datapath actions are kept for display only: on a userspace bridge without
// a route to the remote node the datapath drops what OpenFlow sent into the tunnel, and
// the verdict is OpenFlow's.
type ofTrace struct {
	Steps []traceStep
	// Outputs are the packet's outputs in order; Verdict is the first, or a drop at the
	// last table visited.
	Outputs []ovs.Verdict
	Verdict ovs.Verdict
	// DatapathActions is the final pass's "Datapath actions:" line.
	DatapathActions string
	// Notes are OVS's remarks worth showing (">> …" lines, e.g. native tunnel routing
	// failed).
	Notes []string
}

// traceStep is one rule matched in one table.
type traceStep struct {
	Table    ovs.Table
	Priority uint16
	Cookie   uint64
	Match    string // as OVS prints it
	Actions  []string
	NoMatch  bool
	// Flow is the rule as an ovs.Flow (table, priority, cookie, match; actions when they
	// parse); FlowOK is false when the match uses fields sdnctl does not know.
	Flow   ovs.Flow
	FlowOK bool
	// Pass counts conntrack recirculations before this step.
	Pass int
}

var (
	// " 20. ip,in_port=3,nw_src=10.128.0.5, priority 100, cookie 0x2007d2abf00314f"
	traceStepRE = regexp.MustCompile(`^\s*(\d+)\.\s+(?:(.*?),?\s+)?priority (\d+)(?:, cookie (0x[0-9a-fA-F]+))?\s*$`)
	// " 70. No match."
	traceNoMatchRE = regexp.MustCompile(`^\s*(\d+)\.\s+No match\.?\s*$`)
	outputPortRE   = regexp.MustCompile(`^-> output port is (\d+)`)
	tunIDNowRE     = regexp.MustCompile(`^-> NXM_NX_TUN_ID\[(?:0\.\.31)?\] is now (0x[0-9a-fA-F]+|\d+)`)
)

// parseOFTrace parses ofproto/trace output. It fails only when the text has no bridge
// section at all (an error message from ovs-appctl, or not a trace).
func parseOFTrace(text string) (*ofTrace, error) {
	tr := &ofTrace{}
	pass := -1
	var cur *traceStep
	var tunDst netip.Addr // set in the current step
	var tunID uint64
	finish := func() {
		if cur != nil {
			cur.Flow, cur.FlowOK = stepFlow(*cur)
			tr.Steps = append(tr.Steps, *cur)
			cur = nil
		}
	}
	// The traced bridge is the first bridge("…") section. Other bridges' sections are
	// where the packet went next: on the userspace datapath a native VXLAN tunnel is
	// pushed out through the underlay bridge (br-phy) and ofproto/trace follows it there.
	// Their rules are not br0's pipeline: skip them.
	var traced string
	other := false
	for _, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		switch {
		case strings.HasPrefix(line, "bridge(\""):
			finish()
			name := strings.TrimSuffix(strings.TrimPrefix(line, "bridge(\""), "\")")
			if traced == "" {
				traced = name
			}
			if other = name != traced; !other {
				pass++
			}
			continue
		case strings.HasPrefix(line, "Flow:") || strings.HasPrefix(line, "Final flow:"):
			finish()
			other = false
			continue
		case strings.HasPrefix(line, "Datapath actions:"):
			finish()
			tr.DatapathActions = strings.TrimSpace(strings.TrimPrefix(line, "Datapath actions:"))
			continue
		case line == "":
			finish()
			continue
		}
		if pass < 0 || other {
			continue
		}
		if m := traceStepRE.FindStringSubmatch(raw); m != nil {
			finish()
			id, _ := strconv.ParseUint(m[1], 10, 8)
			prio, _ := strconv.ParseUint(m[3], 10, 16)
			t, _ := ovs.TableByID(uint8(id))
			cur = &traceStep{Table: t, Priority: uint16(prio), Match: m[2], Pass: pass}
			if m[4] != "" {
				cur.Cookie, _ = strconv.ParseUint(strings.TrimPrefix(m[4], "0x"), 16, 64)
			}
			tunDst = netip.Addr{}
			continue
		}
		if m := traceNoMatchRE.FindStringSubmatch(raw); m != nil {
			finish()
			id, _ := strconv.ParseUint(m[1], 10, 8)
			t, _ := ovs.TableByID(uint8(id))
			cur = &traceStep{Table: t, NoMatch: true, Pass: pass}
			continue
		}
		if cur == nil {
			continue // "thaw", "Resuming from table N", "Flow: …"
		}
		switch {
		case strings.HasPrefix(line, ">>"):
			tr.Notes = append(tr.Notes, fmt.Sprintf("%s: %s", cur.Table.Named(), strings.TrimSpace(strings.TrimPrefix(line, ">>"))))
		case strings.HasPrefix(line, "->"):
			if m := outputPortRE.FindStringSubmatch(line); m != nil {
				port, _ := strconv.ParseUint(m[1], 10, 32)
				tr.addOutput(cur.Table, uint32(port), tunDst, tunID)
			}
			if m := tunIDNowRE.FindStringSubmatch(line); m != nil {
				tunID, _ = strconv.ParseUint(m[1], 0, 64)
			}
		default:
			cur.Actions = append(cur.Actions, line)
			if v, ok := strings.CutPrefix(line, "set_field:"); ok && strings.HasSuffix(v, "->tun_dst") {
				tunDst, _ = netip.ParseAddr(strings.TrimSuffix(v, "->tun_dst"))
			}
			if v, ok := strings.CutPrefix(line, "output:"); ok {
				if port, err := strconv.ParseUint(v, 10, 32); err == nil {
					tr.addOutput(cur.Table, uint32(port), tunDst, tunID)
				}
			}
		}
	}
	finish()
	if pass < 0 {
		return nil, fmt.Errorf("not an ofproto/trace output: %s", firstLine(text))
	}
	if len(tr.Outputs) > 0 {
		tr.Verdict = tr.Outputs[0]
	} else if len(tr.Steps) > 0 {
		tr.Verdict = ovs.Verdict{Kind: ovs.VerdictDrop, Table: tr.Steps[len(tr.Steps)-1].Table}
	}
	return tr, nil
}

func (tr *ofTrace) addOutput(t ovs.Table, port uint32, tunDst netip.Addr, tunID uint64) {
	v := ovs.Verdict{Kind: ovs.VerdictOutput, Port: port, Table: t}
	if tunDst.IsValid() {
		v = ovs.Verdict{Kind: ovs.VerdictTunnel, Port: port, TunDst: tunDst, TunID: tunID, Table: t}
	}
	tr.Outputs = append(tr.Outputs, v)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// displayActions are the step's actions without the "drop" OVS prints after a ct()
// that recirculates (the packet continues in the next pass; it is not a drop).
func (s traceStep) displayActions() []string {
	var out []string
	for i, a := range s.Actions {
		if a == "drop" && i > 0 && strings.HasPrefix(s.Actions[i-1], "ct(") {
			continue
		}
		out = append(out, a)
	}
	return out
}

// stepFlow rebuilds the matched rule as an ovs.Flow.
func stepFlow(s traceStep) (ovs.Flow, bool) {
	if s.NoMatch {
		return ovs.Flow{}, false
	}
	head := fmt.Sprintf("table=%d,priority=%d,cookie=%#x", s.Table.ID, s.Priority, s.Cookie)
	if s.Match != "" {
		head += "," + s.Match
	}
	actions := s.displayActions()
	if f, err := ovs.ParseFlow(head + " actions=" + strings.Join(actions, ",")); err == nil {
		f.Table = s.Table
		return f, true
	}
	// Keep the match even if an action is unknown to pkg/ovs; only "drop" matters then.
	tail := "note:00"
	if len(actions) == 1 && actions[0] == "drop" {
		tail = "drop"
	}
	f, err := ovs.ParseFlow(head + " actions=" + tail)
	if err != nil {
		return ovs.Flow{}, false
	}
	f.Table = s.Table
	if tail != "drop" {
		f.Actions = nil
	}
	return f, true
}

// visits reports whether a step of the trace is in table tbl.
func (tr *ofTrace) visits(tbl ovs.Table) bool {
	for _, s := range tr.Steps {
		if s.Table.ID == tbl.ID {
			return true
		}
	}
	return false
}
