package networkpolicy

import (
	"fmt"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// cluster is Input indexed for the compiler: namespaces by name, their pods
// and policies in name order. It is immutable once built.
type cluster struct {
	namespaces map[string]*nsInfo
	names      []string // sorted namespace names
	// dupVNID holds namespaces whose VNID an earlier-named namespace holds.
	dupVNID map[string]string
	// alwaysConj: see renderer.alwaysConj.
	alwaysConj bool
}

type nsInfo struct {
	Namespace
	labels   labels.Set
	pods     []*podInfo // selectable pods (IP, not host network), by name
	local    []*podInfo // selectable local pods, by name
	policies []*networkingv1.NetworkPolicy
}

// podInfo is a selectable pod: it has an IPv4 address and its own network.
type podInfo struct {
	*Pod
	labels labels.Set
}

func newCluster(in Input) *cluster {
	c := &cluster{namespaces: map[string]*nsInfo{}, dupVNID: map[string]string{}}
	for _, ns := range in.Namespaces {
		c.namespaces[ns.Name] = &nsInfo{Namespace: ns, labels: labels.Set(ns.Labels)}
		c.names = append(c.names, ns.Name)
	}
	slices.Sort(c.names)
	byVNID := map[uint32]string{}
	for _, name := range c.names {
		v := c.namespaces[name].VNID
		if other, ok := byVNID[v]; ok {
			c.dupVNID[name] = other
			continue
		}
		byVNID[v] = name
	}
	for i := range in.Pods {
		p := &in.Pods[i]
		ns := c.namespaces[p.Namespace]
		if ns == nil || p.HostNetwork || !p.IP.Is4() {
			continue
		}
		pi := &podInfo{Pod: p, labels: labels.Set(p.Labels)}
		ns.pods = append(ns.pods, pi)
		if p.Local {
			ns.local = append(ns.local, pi)
		}
	}
	for _, np := range in.Policies {
		if ns := c.namespaces[np.Namespace]; ns != nil {
			ns.policies = append(ns.policies, np)
		}
	}
	for _, ns := range c.namespaces {
		byName := func(a, b *podInfo) int { return strings.Compare(a.Name, b.Name) }
		slices.SortFunc(ns.pods, byName)
		slices.SortFunc(ns.local, byName)
		slices.SortFunc(ns.policies, func(a, b *networkingv1.NetworkPolicy) int { return strings.Compare(a.Name, b.Name) })
	}
	return c
}

// selector converts a label selector; nil selects nothing, as in
// metav1.LabelSelectorAsSelector.
func selector(s *metav1.LabelSelector) (labels.Selector, error) {
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return nil, fmt.Errorf("invalid selector: %w", err)
	}
	return sel, nil
}

// matchingNamespaces returns the namespaces selected by sel, in name order.
func (c *cluster) matchingNamespaces(sel labels.Selector) []*nsInfo {
	var out []*nsInfo
	for _, name := range c.names {
		if ns := c.namespaces[name]; sel.Matches(ns.labels) {
			out = append(out, ns)
		}
	}
	return out
}

// matchingPods returns the pods of ns selected by sel.
func matchingPods(pods []*podInfo, sel labels.Selector) []*podInfo {
	if sel.Empty() {
		return pods
	}
	var out []*podInfo
	for _, p := range pods {
		if sel.Matches(p.labels) {
			out = append(out, p)
		}
	}
	return out
}
