package egressfirewall

import (
	"fmt"
	"net/netip"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// RuleOf returns the decision and the rule a table-100 flow renders: the
// flow's reg0 names the VNID, its priority the rule (n-i). ok is false for
// a flow no current rule renders (the static flows, a drop-all flow, a
// stale flow).
func RuleOf(decisions map[uint32]Decision, f ovs.Flow) (Decision, Rule, bool) {
	vnid, ok := srcVNID(f)
	if !ok || f.Table.ID != ovs.TableEgressFirewall.ID {
		return Decision{}, Rule{}, false
	}
	d, ok := decisions[vnid]
	if !ok || d.Kind != KindEnforced {
		return d, Rule{}, false
	}
	i := len(d.Rules) - int(f.Priority)
	if i < 0 || i >= len(d.Rules) || d.Rules[i].Allow() == f.IsDrop() {
		return d, Rule{}, false
	}
	r := d.Rules[i]
	if r.DNSName == "" && dst(f) != cidrMatch(r.CIDR) {
		return d, Rule{}, false
	}
	return d, r, true
}

// Explain says, in words, what a flow of the egress firewall decided for a
// packet of source VNID vnid ("" for flows it does not own): which
// EgressNetworkPolicy rule allowed or denied it, why a VNID drops all, that
// replies pass, or that no rule matched.
func Explain(decisions map[uint32]Decision, vnid uint32, f ovs.Flow) string {
	if f.Table.ID != ovs.TableEgressFirewall.ID {
		return ""
	}
	switch f.Priority {
	case PriorityReplies:
		return "allowed: a reply of a connection opened from outside the cluster network (the pod serves it); EgressNetworkPolicy does not apply"
	case 0:
		return defaultWords(decisions, vnid)
	}
	if d, r, ok := RuleOf(decisions, f); ok {
		p, _ := d.Policy()
		words := "denied"
		if r.Allow() {
			words = "allowed"
		}
		s := fmt.Sprintf("%s by EgressNetworkPolicy %s %s", words, p.Key(), r)
		if r.DNSName != "" {
			s += fmt.Sprintf(" (%s is an address the node resolved %s to)", dst(f).Addr(), r.DNSName)
		}
		return s
	}
	if v, ok := srcVNID(f); ok {
		if d := decisions[v]; d.Kind == KindDropAll && f.Priority == PriorityDropAll {
			return "denied: " + d.Message
		}
	}
	return "a flow no current EgressNetworkPolicy rule renders (stale, or the policies changed since)"
}

func defaultWords(decisions map[uint32]Decision, vnid uint32) string {
	d, ok := decisions[vnid]
	switch {
	case !ok:
		return fmt.Sprintf("allowed: no EgressNetworkPolicy applies to VNID %d", vnid)
	case d.Kind == KindIgnored:
		return "allowed: " + d.Message
	case d.Kind == KindEnforced:
		p, _ := d.Policy()
		return fmt.Sprintf("allowed: no rule of EgressNetworkPolicy %s matched (the default is to allow)", p.Key())
	}
	return fmt.Sprintf("allowed by the default flow, although VNID %d should drop all (%s): the drop flow is missing", vnid, d.Reason)
}

func srcVNID(f ovs.Flow) (uint32, bool) {
	for _, m := range f.Match {
		if r, ok := m.(ovs.RegMatch); ok && r.Field.Reg == ovs.SrcVNIDField.Reg && r.Mask == ^uint32(0) {
			return r.Value, true
		}
	}
	return 0, false
}

// cidrMatch is the nw_dst a CIDR rule's flow has: none for 0.0.0.0/0.
func cidrMatch(p netip.Prefix) netip.Prefix {
	if p.Bits() == 0 {
		return netip.Prefix{}
	}
	return p
}

func dst(f ovs.Flow) netip.Prefix {
	for _, m := range f.Match {
		if a, ok := m.(ovs.AddrMatch); ok && a.Field == "nw_dst" {
			return a.Prefix
		}
	}
	return netip.Prefix{}
}
