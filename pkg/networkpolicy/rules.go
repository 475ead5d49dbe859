package networkpolicy

import (
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// subRule is one box of allowed traffic for one namespace and direction:
// targets × peers × ports. A rule becomes several subRules when it has
// named ports (one per group of destination pods resolving them alike).
type subRule struct {
	targetsAll bool         // every pod of the namespace (reg only)
	targets    []netip.Addr // local target pods otherwise, sorted
	anyPeer    bool
	peers      []netip.Prefix // ipBlock pieces and pod /32s
	vnids      []uint32       // ingress: whole namespaces by source VNID
	anyPort    bool
	ports      []portClause
}

// deps records what a namespace's flows read from other namespaces, so a
// caller knows which namespaces to recompute after a change (Affected).
type deps struct {
	namespaces map[string]bool // pods or VNID of these namespaces were read
	allPods    bool            // pods of every namespace were read
	nsLabels   bool            // a namespaceSelector was evaluated
}

// peerSet is a rule's parsed peers.
type peerSet struct {
	any      bool
	prefixes []netip.Prefix
	pods     []*podInfo
	vnids    []uint32
}

// affects reports whether np has direction d in its effective policyTypes
// (absent policyTypes: Ingress, plus Egress when egress rules exist).
func affects(np *networkingv1.NetworkPolicy, d direction) bool {
	want := networkingv1.PolicyTypeIngress
	if d == egress {
		want = networkingv1.PolicyTypeEgress
	}
	if len(np.Spec.PolicyTypes) == 0 {
		return d == ingress || len(np.Spec.Egress) > 0
	}
	return slices.Contains(np.Spec.PolicyTypes, want)
}

// compiledPolicy is one policy in one direction: the local pods it isolates
// and the boxes each of its rules allows (rules[i] for spec rule i). On
// error rules is nil and the targets stay isolated.
type compiledPolicy struct {
	name       string
	targets    []*podInfo
	targetsAll bool
	rules      [][]subRule
	err        error
}

func (c *cluster) compilePolicy(ns *nsInfo, np *networkingv1.NetworkPolicy, d direction, dp *deps) compiledPolicy {
	sel, err := selector(&np.Spec.PodSelector)
	if err != nil {
		return compiledPolicy{name: np.Name, targets: ns.local, targetsAll: true, err: err}
	}
	cp := compiledPolicy{name: np.Name, targets: matchingPods(ns.local, sel), targetsAll: sel.Empty()}
	for i := range ruleCount(np, d) {
		peers, ports := ruleAt(np, d, i)
		rules, err := c.compileRule(ns, d, cp, peers, ports, dp)
		if err != nil {
			return compiledPolicy{name: np.Name, targets: cp.targets, targetsAll: cp.targetsAll, err: err}
		}
		cp.rules = append(cp.rules, rules)
	}
	return cp
}

// info is what the policy selects, for the explainer.
func (cp compiledPolicy) info() policyInfo {
	pi := policyInfo{name: cp.name, targetsAll: cp.targetsAll, failed: cp.err != nil, targets: make(map[netip.Addr]bool, len(cp.targets))}
	for _, p := range cp.targets {
		pi.targets[p.IP] = true
	}
	return pi
}

func ruleCount(np *networkingv1.NetworkPolicy, d direction) int {
	if d == ingress {
		return len(np.Spec.Ingress)
	}
	return len(np.Spec.Egress)
}

func ruleAt(np *networkingv1.NetworkPolicy, d direction, i int) ([]networkingv1.NetworkPolicyPeer, []networkingv1.NetworkPolicyPort) {
	if d == ingress {
		return np.Spec.Ingress[i].From, np.Spec.Ingress[i].Ports
	}
	return np.Spec.Egress[i].To, np.Spec.Egress[i].Ports
}

// compileRule splits one rule into boxes. Numeric ports apply to every
// destination; named ports are resolved per destination pod: per target in
// ingress, per peer pod in egress (an ipBlock destination has no container
// ports, so only numeric ports apply to it).
func (c *cluster) compileRule(ns *nsInfo, d direction, cp compiledPolicy, peers []networkingv1.NetworkPolicyPeer,
	ports []networkingv1.NetworkPolicyPort, dp *deps) ([]subRule, error) {
	rp, err := parsePorts(ports)
	if err != nil {
		return nil, err
	}
	ps, err := c.parsePeers(ns, d, peers, dp)
	if err != nil {
		return nil, err
	}
	if len(cp.targets) == 0 && !cp.targetsAll {
		return nil, nil
	}
	base := subRule{targetsAll: cp.targetsAll, targets: podIPs(cp.targets), anyPeer: ps.any, peers: ps.peerPrefixes(), vnids: ps.vnids}
	var out []subRule
	if rp.any || len(rp.numeric) > 0 {
		r := base
		r.anyPort, r.ports = rp.any, rp.numeric
		out = append(out, r)
	}
	if len(rp.named) == 0 {
		return out, nil
	}
	if d == ingress {
		for _, g := range groupByPorts(cp.targets, rp) {
			r := base
			r.targetsAll, r.targets, r.ports = false, podIPs(g.pods), g.ports
			out = append(out, r)
		}
		return out, nil
	}
	dests := ps.pods
	if ps.any {
		dests, dp.allPods = c.allPods(), true
	}
	for _, g := range groupByPorts(dests, rp) {
		r := base
		r.anyPeer, r.peers, r.vnids, r.ports = false, hostPrefixes(g.pods), nil, g.ports
		out = append(out, r)
	}
	return out, nil
}

// parsePeers evaluates a rule's peers. For ingress, a peer selecting whole
// namespaces (no podSelector, or an empty one) becomes the namespaces'
// VNIDs: the source VNID is in reg0 on every node, one flow per namespace,
// and new pods are covered without recompiling. VNID 0 is shared with the
// host (tun0 traffic), so a VNID-0 namespace expands to its pod IPs instead.
func (c *cluster) parsePeers(ns *nsInfo, d direction, peers []networkingv1.NetworkPolicyPeer, dp *deps) (peerSet, error) {
	ps := peerSet{any: len(peers) == 0}
	for _, peer := range peers {
		if peer.IPBlock != nil {
			prefixes, err := ipBlockPrefixes(peer.IPBlock)
			if err != nil {
				return peerSet{}, err
			}
			ps.prefixes = append(ps.prefixes, prefixes...)
			continue
		}
		if err := c.addSelectorPeer(ns, d, peer, dp, &ps); err != nil {
			return peerSet{}, err
		}
	}
	slices.Sort(ps.vnids)
	ps.vnids = slices.Compact(ps.vnids)
	return ps, nil
}

func (c *cluster) addSelectorPeer(ns *nsInfo, d direction, peer networkingv1.NetworkPolicyPeer, dp *deps, ps *peerSet) error {
	if peer.PodSelector == nil && peer.NamespaceSelector == nil {
		return errors.New("peer with neither ipBlock, podSelector nor namespaceSelector")
	}
	namespaces := []*nsInfo{ns}
	if peer.NamespaceSelector != nil {
		nsSel, err := selector(peer.NamespaceSelector)
		if err != nil {
			return err
		}
		namespaces, dp.nsLabels = c.matchingNamespaces(nsSel), true
	}
	podSel := labels.Everything()
	if peer.PodSelector != nil {
		var err error
		if podSel, err = selector(peer.PodSelector); err != nil {
			return err
		}
	}
	for _, pns := range namespaces {
		dp.namespaces[pns.Name] = true
		if d == ingress && podSel.Empty() && pns.VNID != 0 && c.dupVNID[pns.Name] == "" {
			ps.vnids = append(ps.vnids, pns.VNID)
			continue
		}
		ps.pods = append(ps.pods, matchingPods(pns.pods, podSel)...)
	}
	return nil
}

// peerPrefixes returns the ipBlock pieces and the pod /32s, deduplicated.
func (ps peerSet) peerPrefixes() []netip.Prefix {
	out := append(slices.Clone(ps.prefixes), hostPrefixes(ps.pods)...)
	slices.SortFunc(out, comparePrefixes)
	return slices.Compact(out)
}

func (c *cluster) allPods() []*podInfo {
	var out []*podInfo
	for _, name := range c.names {
		out = append(out, c.namespaces[name].pods...)
	}
	return out
}

// portGroup is a set of destination pods resolving a rule's named ports to
// the same clauses.
type portGroup struct {
	pods  []*podInfo
	ports []portClause
}

// groupByPorts groups pods by their resolution of rp's named ports; pods
// resolving none are left out. Groups come in first-pod order.
func groupByPorts(pods []*podInfo, rp rulePorts) []portGroup {
	var groups []portGroup
	index := map[string]int{}
	for _, p := range pods {
		ports := rulePorts{named: rp.named}.resolve(p)
		if len(ports) == 0 {
			continue
		}
		var key strings.Builder
		for _, pc := range ports {
			key.WriteString(strconv.Itoa(int(pc.proto)<<16|int(pc.port)) + ",")
		}
		i, ok := index[key.String()]
		if !ok {
			i = len(groups)
			index[key.String()] = i
			groups = append(groups, portGroup{ports: ports})
		}
		groups[i].pods = append(groups[i].pods, p)
	}
	return groups
}

func podIPs(pods []*podInfo) []netip.Addr {
	out := make([]netip.Addr, 0, len(pods))
	for _, p := range pods {
		out = append(out, p.IP)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

func hostPrefixes(pods []*podInfo) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(pods))
	for _, p := range pods {
		out = append(out, ovs.HostPrefix(p.IP))
	}
	slices.SortFunc(out, comparePrefixes)
	return slices.Compact(out)
}

func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
