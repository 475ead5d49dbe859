package egressfirewall

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/dnsresolver"
)

// Rule is one rule of an EgressNetworkPolicy as the agent enforces it. It
// is comparable.
type Rule struct {
	// Index is the rule's position in spec.egress (0-based).
	Index int
	// Type is Allow or Deny.
	Type networkv1.EgressNetworkPolicyRuleType
	// CIDR is the destination of a cidrSelector rule, masked; 0.0.0.0/32 is
	// read as 0.0.0.0/0, as OpenShift SDN did. Invalid for a dnsName rule.
	CIDR netip.Prefix
	// DNSName is the destination of a dnsName rule, normalized
	// (dnsresolver.Normalize: lower case, no trailing dot); "" for a
	// cidrSelector rule.
	DNSName string
}

// Allow reports whether the rule allows.
func (r Rule) Allow() bool { return r.Type == networkv1.EgressNetworkPolicyRuleAllow }

// Dest is the rule's destination as the policy says it: "203.0.113.0/24"
// or "dnsName www.example.com".
func (r Rule) Dest() string {
	if r.DNSName != "" {
		return "dnsName " + r.DNSName
	}
	return r.CIDR.String()
}

// String is "egress[1]: Deny 203.0.113.8/29".
func (r Rule) String() string { return fmt.Sprintf("egress[%d]: %s %s", r.Index, r.Type, r.Dest()) }

// Policy is one EgressNetworkPolicy, converted.
type Policy struct {
	Namespace, Name string
	UID             types.UID
	Generation      int64
	Rules           []Rule
	// Err, when set, names the first field the agent cannot enforce: an
	// object the API server stored before the CRD validated it. Its VNID
	// then fails closed (KindDropAll).
	Err error
	// Notes are corrections made while converting ("0.0.0.0/32 read as
	// 0.0.0.0/0").
	Notes []string
}

// Key is "namespace/name".
func (p Policy) Key() string { return p.Namespace + "/" + p.Name }

// Convert converts one EgressNetworkPolicy. It never fails: what cannot be
// enforced is recorded in Policy.Err.
func Convert(enp *networkv1.EgressNetworkPolicy) Policy {
	p := Policy{Namespace: enp.Namespace, Name: enp.Name, UID: enp.UID, Generation: enp.Generation}
	if n := len(enp.Spec.Egress); n > networkv1.MaxEgressNetworkPolicyRules {
		p.Err = fmt.Errorf("spec.egress: %d rules, at most %d are allowed", n, networkv1.MaxEgressNetworkPolicyRules)
		return p
	}
	for i, r := range enp.Spec.Egress {
		rule, note, err := convertRule(i, r)
		if err != nil {
			p.Err, p.Rules = err, nil
			return p
		}
		if note != "" {
			p.Notes = append(p.Notes, note)
		}
		p.Rules = append(p.Rules, rule)
	}
	return p
}

var zeroHost = netip.MustParsePrefix("0.0.0.0/32")

func convertRule(i int, r networkv1.EgressNetworkPolicyRule) (Rule, string, error) {
	field := fmt.Sprintf("spec.egress[%d]", i)
	rule := Rule{Index: i, Type: r.Type}
	if r.Type != networkv1.EgressNetworkPolicyRuleAllow && r.Type != networkv1.EgressNetworkPolicyRuleDeny {
		return rule, "", fmt.Errorf("%s.type: %q is neither Allow nor Deny", field, r.Type)
	}
	switch cidr, name := r.To.CIDRSelector, r.To.DNSName; {
	case (cidr == "") == (name == ""):
		return rule, "", fmt.Errorf("%s.to: exactly one of cidrSelector and dnsName must be set", field)
	case name != "":
		n, err := dnsresolver.Normalize(name)
		if err != nil {
			return rule, "", fmt.Errorf("%s.to.dnsName: %w", field, err)
		}
		rule.DNSName = n
		return rule, "", nil
	default:
		pfx, err := netip.ParsePrefix(cidr)
		if err != nil || !pfx.Addr().Is4() {
			return rule, "", fmt.Errorf("%s.to.cidrSelector: %q is not an IPv4 CIDR", field, cidr)
		}
		rule.CIDR = pfx.Masked()
		if rule.CIDR == zeroHost {
			rule.CIDR = netip.PrefixFrom(rule.CIDR.Addr(), 0)
			return rule, field + ".to.cidrSelector: 0.0.0.0/32 read as 0.0.0.0/0 (as OpenShift SDN does)", nil
		}
		return rule, "", nil
	}
}

// Input is what the decisions depend on: every EgressNetworkPolicy and the
// VNID of every namespace that has one (a NetNamespace).
type Input struct {
	// Policies, sorted by namespace and name.
	Policies []Policy
	// VNIDs maps a namespace to its VNID.
	VNIDs map[string]uint32
}

// BuildInput converts the API objects, as the node agent, the controller and
// sdnctl all do. A NetNamespace's namespace is its netname (its name when
// netname is empty).
func BuildInput(policies []*networkv1.EgressNetworkPolicy, netNamespaces []*networkv1.NetNamespace) Input {
	in := Input{VNIDs: make(map[string]uint32, len(netNamespaces))}
	for _, nn := range netNamespaces {
		in.VNIDs[cmp.Or(nn.NetName, nn.Name)] = nn.NetID
	}
	for _, p := range policies {
		in.Policies = append(in.Policies, Convert(p))
	}
	slices.SortFunc(in.Policies, func(a, b Policy) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return in
}
