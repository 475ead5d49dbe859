package egressip

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Assignment is an active egress IP and the node that holds it.
type Assignment struct {
	IP     netip.Addr
	Node   string
	HostIP netip.Addr
}

// Egress is the egress state of one VNID that requests egress IPs.
type Egress struct {
	VNID       uint32
	Namespaces []string     // the NetNamespaces with this VNID that request IPs, sorted
	Requested  []netip.Addr // merged requests, in namespace-name then request order
	// Active are the usable requested IPs, in Requested order. Empty means
	// the VNID's traffic leaving the cluster must be dropped.
	Active []Assignment
}

// ProblemKind classifies why a requested egress IP is not active.
type ProblemKind string

// The problems, each making the IPs concerned inactive.
const (
	// RequestedTwice: several VNIDs request the IP.
	RequestedTwice ProblemKind = "RequestedTwice"
	// HostedTwice: several HostSubnets list the IP.
	HostedTwice ProblemKind = "HostedTwice"
	// SameNode: one node lists several IPs of one VNID (IPs has them all).
	SameNode ProblemKind = "SameNode"
	// NotHosted: requested, but no HostSubnet lists it.
	NotHosted ProblemKind = "NotHosted"
	// NodeUnreachable: the one node listing it is marked unreachable.
	NodeUnreachable ProblemKind = "NodeUnreachable"
)

// Problem is one reason some requested egress IPs are inactive.
type Problem struct {
	Kind ProblemKind
	IPs  []netip.Addr // sorted; one except for SameNode
	// Namespaces and Nodes are the NetNamespaces and HostSubnets involved, sorted.
	Namespaces, Nodes []string
}

// Message explains the problem, naming every object involved.
func (p Problem) Message() string {
	ips, nss, nodes := joinAddrs(p.IPs), strings.Join(p.Namespaces, ", "), strings.Join(p.Nodes, ", ")
	switch p.Kind {
	case RequestedTwice:
		on := ""
		if nodes != "" {
			on = " (on HostSubnet " + nodes + ")"
		}
		return fmt.Sprintf("egress IP %s%s is requested by NetNamespaces %s; an egress IP serves one namespace, so it is inactive for all of them until only one requests it", ips, on, nss)
	case HostedTwice:
		return fmt.Sprintf("egress IP %s of NetNamespace %s is on HostSubnets %s; it is inactive until exactly one of them lists it", ips, nss, nodes)
	case SameNode:
		return fmt.Sprintf("egress IPs %s of NetNamespace %s are all on HostSubnet %s; a node gives a namespace one source address, so they are inactive until all but one are on other nodes", ips, nss, nodes)
	case NotHosted:
		return fmt.Sprintf("egress IP %s of NetNamespace %s is on no HostSubnet: add it to one node's egressIPs, or an egressCIDR holding it to a node", ips, nss)
	}
	return fmt.Sprintf("egress IP %s of NetNamespace %s is on HostSubnet %s, whose node does not answer health checks; it is inactive until the node answers", ips, nss, nodes)
}

func joinAddrs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ", ")
}

// State is the outcome of Evaluate.
type State struct {
	// Egress has an entry for every VNID whose namespaces request egress IPs.
	Egress map[uint32]*Egress
	// Problems explain every requested IP that is not active, sorted.
	Problems []Problem
}

// Hosted returns the active egress IPs node must hold (and SNAT to), by IP.
func (s State) Hosted(node string) []Assignment {
	var out []Assignment
	for _, e := range s.Egress {
		for _, a := range e.Active {
			if a.Node == node {
				out = append(out, a)
			}
		}
	}
	slices.SortFunc(out, func(a, b Assignment) int { return a.IP.Compare(b.IP) })
	return out
}

// Evaluate decides which requested egress IPs are active and where, and why
// the others are not (see the package comment). nodes are the HostSubnets as
// stored (for agents) or as the controller is about to write them.
func Evaluate(nodes []Node, namespaces []Namespace) State {
	req := newRequests(namespaces)
	holders := map[netip.Addr][]Node{}
	for _, n := range sortedNodes(nodes) {
		for _, ip := range n.EgressIPs {
			holders[ip] = append(holders[ip], n)
		}
	}
	st := State{Egress: map[uint32]*Egress{}}
	usable := map[netip.Addr]Node{} // single VNID, single reachable holder
	for ip, vnids := range req.vnidsOf {
		if p, ok := ipProblem(ip, vnids, holders[ip], req); ok {
			st.Problems = append(st.Problems, p)
			continue
		}
		usable[ip] = holders[ip][0]
	}
	for _, p := range sameNode(usable, req) {
		st.Problems = append(st.Problems, p)
		for _, ip := range p.IPs {
			delete(usable, ip)
		}
	}
	for vnid, ips := range req.byVNID {
		e := &Egress{VNID: vnid, Namespaces: req.names[vnid], Requested: ips}
		for _, ip := range ips {
			if n, ok := usable[ip]; ok {
				e.Active = append(e.Active, Assignment{IP: ip, Node: n.Name, HostIP: n.HostIP})
			}
		}
		st.Egress[vnid] = e
	}
	slices.SortFunc(st.Problems, compareProblems)
	return st
}

// ipProblem returns the problem of one requested IP, if any.
func ipProblem(ip netip.Addr, vnids []uint32, holders []Node, req requests) (Problem, bool) {
	p := Problem{IPs: []netip.Addr{ip}, Namespaces: sortedStrings(req.nsOf[ip]), Nodes: nodeNames(holders)}
	switch {
	case len(vnids) > 1:
		p.Kind = RequestedTwice
	case len(holders) > 1:
		p.Kind = HostedTwice
	case len(holders) == 0:
		p.Kind = NotHosted
	case holders[0].Unreachable:
		p.Kind = NodeUnreachable
	default:
		return Problem{}, false
	}
	return p, true
}

// sameNode finds nodes holding several usable IPs of one VNID.
func sameNode(usable map[netip.Addr]Node, req requests) []Problem {
	type key struct {
		vnid uint32
		node string
	}
	groups := map[key][]netip.Addr{}
	for ip, n := range usable {
		vnid, _ := req.owner(ip)
		groups[key{vnid, n.Name}] = append(groups[key{vnid, n.Name}], ip)
	}
	var out []Problem
	for k, ips := range groups {
		if len(ips) < 2 {
			continue
		}
		var nss []string
		for _, ip := range ips {
			nss = append(nss, req.nsOf[ip]...)
		}
		out = append(out, Problem{Kind: SameNode, IPs: sortedAddrs(ips), Namespaces: sortedStrings(nss), Nodes: []string{k.node}})
	}
	return out
}

func compareProblems(a, b Problem) int {
	if c := a.IPs[0].Compare(b.IPs[0]); c != 0 {
		return c
	}
	return cmp.Compare(a.Kind, b.Kind)
}

func sortedNodes(nodes []Node) []Node {
	out := slices.Clone(nodes)
	slices.SortFunc(out, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func nodeNames(nodes []Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Name
	}
	return out
}

func sortedStrings(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}
