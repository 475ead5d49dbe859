package egressfirewall

import (
	"fmt"
	"slices"
	"strings"
)

// Kind is what a VNID's egress firewall does.
type Kind uint8

// Kinds of Decision.
const (
	// KindEnforced: one valid policy; its rules are rendered.
	KindEnforced Kind = iota + 1
	// KindDropAll: all traffic of the VNID leaving the cluster network is
	// dropped (shared VNID, several policies, or an invalid one).
	KindDropAll
	// KindIgnored: VNID 0; its policies have no effect.
	KindIgnored
)

func (k Kind) String() string {
	switch k {
	case KindEnforced:
		return "enforced"
	case KindDropAll:
		return "drop all"
	case KindIgnored:
		return "ignored"
	}
	return fmt.Sprintf("kind %d", k)
}

// Reasons of the Warning Events on EgressNetworkPolicies (the
// sdn-controller records them; Decision.Reason says which applies).
const (
	// ReasonMultiple: more than one policy among the namespaces of a VNID.
	ReasonMultiple = "MultipleEgressNetworkPolicies"
	// ReasonSharedVNID: a policy in a namespace whose VNID is shared.
	ReasonSharedVNID = "EgressNetworkPolicySharedVNID"
	// ReasonGlobalVNID: a policy in a namespace with VNID 0.
	ReasonGlobalVNID = "EgressNetworkPolicyGlobalVNID"
	// ReasonInvalid: a rule the agent cannot enforce.
	ReasonInvalid = "EgressNetworkPolicyInvalid"
	// ReasonCorrected: a rule read differently from how it is written
	// (0.0.0.0/32 as 0.0.0.0/0).
	ReasonCorrected = "EgressNetworkPolicyCorrected"
	// ReasonNotEnforced: the cluster runs a mode without VNIDs (subnet).
	ReasonNotEnforced = "EgressNetworkPolicyNotEnforced"
)

// Decision is what one VNID's egress firewall does, and why.
type Decision struct {
	VNID uint32
	Kind Kind
	// Namespaces are the namespaces with this VNID, sorted.
	Namespaces []string
	// Policies are the policies in those namespaces, sorted.
	Policies []Policy
	// Rules are the enforced policy's rules (KindEnforced only).
	Rules []Rule
	// Reason is one of the Reason constants for KindDropAll and
	// KindIgnored; Message says it in words, naming the objects.
	Reason, Message string
}

// Policy returns the enforced policy (KindEnforced), or false.
func (d Decision) Policy() (Policy, bool) {
	if d.Kind != KindEnforced {
		return Policy{}, false
	}
	return d.Policies[0], true
}

// Names returns the dnsName destinations of the enforced rules, sorted and
// unique: the names the node's resolver must track for this VNID.
func (d Decision) Names() []string {
	var out []string
	for _, r := range d.Rules {
		if r.DNSName != "" {
			out = append(out, r.DNSName)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Equal reports whether d and o render the same flows given the same
// addresses (the messages may differ).
func (d Decision) Equal(o Decision) bool {
	return d.VNID == o.VNID && d.Kind == o.Kind && slices.Equal(d.Rules, o.Rules)
}

// Evaluate decides the egress firewall of every VNID that has at least one
// policy (see the package doc). Policies of a namespace without a VNID are
// in no decision: nothing can be enforced for it yet.
func Evaluate(in Input) map[uint32]Decision {
	byVNID := map[uint32][]Policy{}
	for _, p := range in.Policies {
		if id, ok := in.VNIDs[p.Namespace]; ok {
			byVNID[id] = append(byVNID[id], p)
		}
	}
	if len(byVNID) == 0 {
		return nil
	}
	namespaces := map[uint32][]string{}
	for ns, id := range in.VNIDs {
		if _, ok := byVNID[id]; ok {
			namespaces[id] = append(namespaces[id], ns)
		}
	}
	out := make(map[uint32]Decision, len(byVNID))
	for id, ps := range byVNID {
		nss := namespaces[id]
		slices.Sort(nss)
		out[id] = decide(Decision{VNID: id, Namespaces: nss, Policies: ps})
	}
	return out
}

// decide fills Kind, Rules, Reason and Message of d, whose VNID, namespaces
// and policies are set.
func decide(d Decision) Decision {
	switch {
	case d.VNID == 0:
		d.Kind, d.Reason = KindIgnored, ReasonGlobalVNID
		d.Message = fmt.Sprintf("EgressNetworkPolicy %s is in a global namespace (VNID 0), where egress firewalls are not allowed: ignored, its traffic is not filtered",
			policyList(d.Policies))
	case len(d.Namespaces) > 1:
		d.Kind, d.Reason = KindDropAll, ReasonSharedVNID
		d.Message = fmt.Sprintf("EgressNetworkPolicy %s is not allowed in a shared NetNamespace: VNID %d is shared by namespaces %s; %s",
			policyList(d.Policies), d.VNID, strings.Join(d.Namespaces, ", "), d.dropped())
	case len(d.Policies) > 1:
		d.Kind, d.Reason = KindDropAll, ReasonMultiple
		d.Message = fmt.Sprintf("namespace %s has %d EgressNetworkPolicies (%s) and at most one is allowed; %s",
			d.Namespaces[0], len(d.Policies), policyList(d.Policies), d.dropped())
	case d.Policies[0].Err != nil:
		d.Kind, d.Reason = KindDropAll, ReasonInvalid
		d.Message = fmt.Sprintf("EgressNetworkPolicy %s cannot be enforced as written: %v; %s", d.Policies[0].Key(), d.Policies[0].Err, d.dropped())
	default:
		d.Kind, d.Rules = KindEnforced, d.Policies[0].Rules
	}
	return d
}

func (d Decision) dropped() string {
	return fmt.Sprintf("all traffic of VNID %d leaving the cluster network is dropped until this is fixed", d.VNID)
}

func policyList(ps []Policy) string {
	keys := make([]string, len(ps))
	for i, p := range ps {
		keys[i] = p.Key()
	}
	return strings.Join(keys, ", ")
}

// Problem is one Warning Event to record on a policy.
type Problem struct {
	Policy          Policy
	Reason, Message string
}

// Problems returns the Warning Events of the decision: its reason on every
// policy concerned (KindDropAll, KindIgnored), and the corrections made to
// an enforced policy.
func (d Decision) Problems() []Problem {
	var out []Problem
	if d.Kind != KindEnforced {
		for _, p := range d.Policies {
			out = append(out, Problem{Policy: p, Reason: d.Reason, Message: d.Message})
		}
		return out
	}
	p := d.Policies[0]
	for _, n := range p.Notes {
		out = append(out, Problem{Policy: p, Reason: ReasonCorrected, Message: n})
	}
	return out
}
