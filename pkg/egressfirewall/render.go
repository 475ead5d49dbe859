package egressfirewall

import (
	"net/netip"
	"slices"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// Priorities of table 100 (pipeline.StageEgressFirewall).
const (
	// PriorityReplies: replies of connections opened from outside pass
	// before any rule.
	PriorityReplies uint16 = 2000
	// PriorityDropAll: the single flow of a KindDropAll VNID.
	PriorityDropAll uint16 = 1
)

// RulePriority is the priority of rule i of n: n-i, so the first rule has
// the highest (n ≤ the CRD's 1,000).
func RulePriority(i, n int) uint16 { return uint16(n - i) }

// Resolved returns the addresses the node holds for a dnsName (sorted or
// not; duplicates are ignored); nil while it has none.
type Resolved func(name string) []netip.Addr

var (
	toRouting = ovs.Goto(ovs.TableEgressRouting)
	fwTable   = ovs.TableEgressFirewall
)

// Flows renders the table-100 flows of one decision, stamped with
// EgressFirewallOwner(d.VNID); nil for KindIgnored. addrs is asked for the
// addresses of every dnsName rule.
func Flows(d Decision, addrs Resolved) []ovs.Flow {
	vnid := ovs.NewFlow(fwTable, 0).MatchIPv4().MatchReg(ovs.SrcVNIDField, d.VNID)
	var flows []ovs.Flow
	switch d.Kind {
	case KindDropAll:
		flows = []ovs.Flow{at(vnid, PriorityDropAll).Action(ovs.DropAction())}
	case KindEnforced:
		for _, r := range d.Rules {
			flows = append(flows, ruleFlows(vnid, r, len(d.Rules), addrs)...)
		}
	default:
		return nil
	}
	return pipeline.EgressFirewallOwner(d.VNID).Stamp(flows)
}

// ruleFlows renders one rule: one flow for a CIDR (none for 0.0.0.0/0's
// nw_dst), one per address for a dnsName.
func ruleFlows(vnid ovs.Flow, r Rule, n int, addrs Resolved) []ovs.Flow {
	f := at(vnid, RulePriority(r.Index, n)).Action(ruleAction(r))
	if r.DNSName == "" {
		if r.CIDR.Bits() == 0 {
			return []ovs.Flow{f}
		}
		return []ovs.Flow{f.MatchNwDst(r.CIDR)}
	}
	var ips []netip.Addr
	if addrs != nil {
		ips = slices.Clone(addrs(r.DNSName))
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	ips = slices.Compact(ips)
	var out []ovs.Flow
	for _, ip := range ips {
		if ip.Is4() {
			out = append(out, f.MatchNwDst(ovs.HostPrefix(ip)))
		}
	}
	return out
}

func ruleAction(r Rule) ovs.Action {
	if r.Allow() {
		return toRouting
	}
	return ovs.DropAction()
}

func at(f ovs.Flow, p uint16) ovs.Flow { f.Priority = p; return f }

// StaticFlows are the egress firewall's flows that depend on the
// configuration only (owner pipeline.OwnerEgressFirewall): replies of
// connections pods serve pass before any rule (see the package doc).
func StaticFlows(pipeline.FlowConfig) []ovs.Flow {
	return pipeline.OwnerEgressFirewall.Stamp([]ovs.Flow{
		ovs.NewFlow(fwTable, PriorityReplies).MatchIPv4().MatchCtState(ovs.CtTrk|ovs.CtRpl, 0).Action(toRouting),
	})
}
