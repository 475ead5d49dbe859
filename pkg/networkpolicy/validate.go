package networkpolicy

import (
	"fmt"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
)

// FieldError is one direction of a NetworkPolicy that the compiler does not
// enforce: the first field it could not parse, and its error.
type FieldError struct {
	// Direction is "ingress" or "egress".
	Direction string
	// Field is the path of the offending field, e.g.
	// "spec.egress[1].to[0].ipBlock.cidr".
	Field string
	// Err is the compiler's error, the same as PolicyError.Err.
	Err error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

func (e *FieldError) Unwrap() error { return e.Err }

// ValidationError lists the rejected directions of one NetworkPolicy,
// ingress first.
type ValidationError struct {
	Namespace, Name string
	Fields          []*FieldError
}

// Error renders "networkpolicy ns/name: <field>: <err> (ingress rules not
// enforced); ...".
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = fmt.Sprintf("%s (%s rules not enforced)", f, f.Direction)
	}
	return fmt.Sprintf("networkpolicy %s/%s: %s", e.Namespace, e.Name, strings.Join(parts, "; "))
}

// Validate reports what the compiler rejects in np, without a cluster: nil,
// or a *ValidationError with one FieldError per direction (of the policy's
// effective policyTypes) that the compiler does not enforce. It is the
// compiler's own decision — each direction is compiled by compilePolicy
// against an empty one-namespace cluster, and the parse errors do not
// depend on pods or namespaces — so a policy is rejected here exactly when
// Compiler.Errors() reports it for a namespace with local pods; Errors()
// carries the first rejected direction's Err (ingress before egress).
// Field locates the error for people; it is found by walking np with the
// compiler's parse functions in the compiler's order.
func Validate(np *networkingv1.NetworkPolicy) error {
	ns := &nsInfo{Namespace: Namespace{Name: np.Namespace}}
	c := &cluster{namespaces: map[string]*nsInfo{np.Namespace: ns}, names: []string{np.Namespace}, dupVNID: map[string]string{}}
	var fields []*FieldError
	for _, d := range []direction{ingress, egress} {
		if !affects(np, d) {
			continue
		}
		cp := c.compilePolicy(ns, np, d, &deps{namespaces: map[string]bool{}})
		if cp.err == nil {
			continue
		}
		field := c.locate(ns, np, d)
		if field == "" {
			field = "spec" // not found by the walk: still the compiler's verdict
		}
		fields = append(fields, &FieldError{Direction: d.String(), Field: field, Err: cp.err})
	}
	if len(fields) == 0 {
		return nil
	}
	return &ValidationError{Namespace: np.Namespace, Name: np.Name, Fields: fields}
}

// locate returns the path of the first field of direction d that the
// compiler rejects, checking in compilePolicy's order: the podSelector,
// then per rule its ports, then its peers.
func (c *cluster) locate(ns *nsInfo, np *networkingv1.NetworkPolicy, d direction) string {
	if _, err := selector(&np.Spec.PodSelector); err != nil {
		return "spec.podSelector"
	}
	for i := range ruleCount(np, d) {
		peers, ports := ruleAt(np, d, i)
		rule := fmt.Sprintf("spec.%s[%d]", d, i)
		for j, p := range ports {
			if _, err := parsePorts([]networkingv1.NetworkPolicyPort{p}); err != nil {
				return fmt.Sprintf("%s.ports[%d]", rule, j)
			}
		}
		peerList := rule + ".from"
		if d == egress {
			peerList = rule + ".to"
		}
		for j, peer := range peers {
			if suffix, bad := c.locatePeer(ns, d, peer); bad {
				return fmt.Sprintf("%s[%d]%s", peerList, j, suffix)
			}
		}
	}
	return ""
}

// locatePeer reports whether the compiler rejects peer and, if so, the
// suffix naming the rejected part ("" for the peer itself).
func (c *cluster) locatePeer(ns *nsInfo, d direction, peer networkingv1.NetworkPolicyPeer) (string, bool) {
	if peer.IPBlock != nil {
		if _, err := ipBlockPrefixes(peer.IPBlock); err == nil {
			return "", false
		}
		if _, err := ipBlockPrefixes(&networkingv1.IPBlock{CIDR: peer.IPBlock.CIDR}); err != nil {
			return ".ipBlock.cidr", true
		}
		return ".ipBlock.except", true
	}
	var ps peerSet
	if err := c.addSelectorPeer(ns, d, peer, &deps{namespaces: map[string]bool{}}, &ps); err == nil {
		return "", false
	}
	if peer.NamespaceSelector != nil {
		if _, err := selector(peer.NamespaceSelector); err != nil {
			return ".namespaceSelector", true
		}
	}
	if peer.PodSelector != nil {
		return ".podSelector", true
	}
	return "", true // neither ipBlock, podSelector nor namespaceSelector
}

// ReasonInvalid is the reason of the Warning Event that reports a
// NetworkPolicy Validate rejects (sent once per policy and spec generation
// by the sdn-controller).
const ReasonInvalid = "NetworkPolicyInvalid"
