// Package networkpolicy compiles Kubernetes NetworkPolicy (networking/v1)
// into the flows of tables PolicyEgress (27) and PolicyIngress (80) for one
// node. It is pure: Input (namespaces with VNIDs, pods, policies) in, flows
// keyed by owner out, no I/O. docs/networkpolicy.md has the long form.
//
// # Where each direction is enforced
//
// Ingress is enforced at the destination's node in table 80, where reg1 is
// the destination VNID (it names the namespace) and nw_dst the target pod;
// allowed packets are output to reg2. Egress is enforced at the source's
// node in table 27, where reg0 is the source VNID and nw_src the pod;
// allowed packets go to 30. Only local pods are targets; every pod of the
// cluster can be a peer. The static networkpolicy flows of pkg/node stay
// above everything compiled here: p300 gateway (80) and services (27),
// p200 replies of committed connections (both).
//
// # Flows of one namespace with local pods (priorities in types.go)
//
//	p195 plain allows: boxes whose cross product is no larger than a
//	     conjunction (targets × peers × ports <= their sum + 1), and boxes
//	     that found no conjunction level or ID.
//	p190…p101 conjunction levels: one conjunction per box (a rule, split
//	     per named-port resolution group): dimension 1 targets (nw_dst or
//	     nw_src of each target pod, or just the namespace register when the
//	     podSelector is empty), 2 peers (nw_src/nw_dst prefixes, or reg0 =
//	     source VNID for whole namespaces in ingress), 3 ports (proto +
//	     tp_dst[/mask]); unrestricted dimensions are left out. A box goes to
//	     the first level where no conjunction of its namespace could match
//	     the same packet (box.overlaps, conservative like ovs.ValidatePipeline:
//	     a reg0 peer and an nw_src peer may overlap), so no two conjunctive
//	     flows at one priority overlap. Conjunction ID = VNID<<8 | index,
//	     unique in the table (at most 256 per namespace and table; further
//	     boxes become plain flows).
//	p100 allow each local pod that no policy of the direction selects.
//	p60  the namespace default: allow when the namespace has no policy for
//	     the direction, drop when it has some (default isolation).
//
// Unselected pods get per-pod allows rather than selected pods per-pod
// drops, so a pod that appears before its namespace is recompiled is
// isolated, not open ("isolate first, then allow"). p60 is above p50,
// where pkg/node puts its allow-all only when it runs without a Kubernetes
// client (BaseFlows no longer has that placeholder), so it can never
// override a compiled decision.
//
// # Peers
//
// Ingress namespace peers (namespaceSelector without podSelector, or an
// empty podSelector) match reg0 = the namespace's VNID: one flow, valid on
// every node (VXLAN carries the VNID), and it covers pods created later.
// VNID 0 is shared with the host (traffic from tun0 has reg0 = 0), so a
// VNID-0 namespace is expanded to its pod IPs instead. In egress the
// destination VNID is not known in table 27, so namespace peers expand to
// pod IPs. ipBlock except is rendered as disjoint prefixes (cidr minus the
// excepts). Host-network pods and pods without an IPv4 IP are never
// selected.
//
// # Ports
//
// TCP (default), UDP, SCTP; a port without number matches the protocol;
// endPort ranges become aligned value/mask blocks. Named ports are
// resolved on the destination pod: per target in ingress (targets grouped
// by resolution), per peer pod in egress (peers grouped by resolution; an
// ipBlock destination has no container ports, so only numeric ports apply
// to it; a rule without peers resolves against every pod).
//
// # Ownership and per-namespace recompute
//
// Every flow that matches a namespace register (targets, conj_id flows,
// plain allows, per-pod and namespace defaults) is owned by
// "policy-ns/<namespace>" and carries its cookie. Peer and port clause
// flows do not mention the namespace: a clause used by conjunctions of
// several namespaces at one priority is ONE flow carrying all their
// conjunction actions, owned by "policy-match/<flow key>" with the cookie
// of SharedCookieKey. The Compiler keeps every namespace's contribution to
// each shared flow; Update recompiles the named namespaces only, replaces
// their contributions and re-merges just the shared flows whose
// contribution changed (contributions are kept in VNID order, and IDs are
// VNID<<8|index, so merging is a concatenation). Affected tells which
// namespaces depend on a change. The agent Sets each returned owner in one
// bundle; owner keys never collide (namespace flows always match the
// namespace register, shared ones never do).
//
// # Errors
//
// A policy with an unparsable CIDR, invalid selector, unsupported
// protocol or bad port range is reported as a *PolicyError and contributes
// no allows in that direction; the pods it selects stay isolated (all pods
// of the namespace when its podSelector itself is invalid). Other policies
// are unaffected. A namespace whose VNID another namespace holds gets no
// flows at all (fail closed) and a *DuplicateVNIDError.
package networkpolicy
