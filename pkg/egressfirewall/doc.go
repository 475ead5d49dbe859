// Package egressfirewall compiles EgressNetworkPolicy, OpenShift's egress
// firewall (SPEC §4.6, reference §7.1), into the flows of table 100
// (EgressFirewall). It is pure: API objects in, decisions and []ovs.Flow
// out, no I/O. The node agent (pkg/node, feature_egressfirewall.go), the
// sdn-controller (which reports invalid policies, once) and sdnctl (which
// explains table-100 flows and traces) share its conversion (BuildInput),
// its decisions (Evaluate) and its renderer (Flows), so all three say the
// same thing about a policy.
//
// # Semantics
//
// At most one EgressNetworkPolicy per namespace; its rules are evaluated in
// order and the first match wins; a packet no rule matches is allowed. Only
// traffic leaving the cluster network reaches table 100: Routing (31) sends
// destinations in the cluster networks, the service network and the node
// gateway elsewhere, so pod-to-pod and pod-to-service traffic never meets
// the firewall, and EgressPrelim (99) sends DNS to the node's own IP
// straight to tun0 first.
//
// Decisions are per VNID, the identity table 100 matches (reg0), in
// OpenShift SDN's order (ovscontroller.go UpdateEgressNetworkPolicyRules):
//
//   - VNID 0 (the global namespaces): policies there are ignored (their
//     traffic is never filtered) — KindIgnored;
//   - a VNID shared by several namespaces (multitenant join) with a policy
//     in any of them, or several policies among its namespaces: all its
//     traffic leaving the cluster network is dropped — KindDropAll;
//   - one policy with a rule the agent cannot enforce (an object stored
//     before the CRD validated it): dropped too, failing closed;
//   - otherwise the policy's rules — KindEnforced.
//
// Each case but the last is a Problem the sdn-controller reports as one
// Warning Event on each policy concerned.
//
// # Flows
//
// Rule i of n (0-based) becomes flows at priority n-i matching reg0=<vnid>
// and nw_dst=<cidr> (0.0.0.0/0: no nw_dst), action goto_table:101 (Allow)
// or drop (Deny). A dnsName rule becomes one such flow per address the
// node's resolver holds for the name (none while it has none: the rule
// matches nothing). KindDropAll is one flow at priority 1: reg0=<vnid> →
// drop. All of a VNID's flows have the owner EgressFirewallOwner(vnid) and
// change together, in one bundle.
//
// # Replies: connections the pod serves
//
// A pod that serves a connection opened from outside the cluster network (a
// NodePort with the client's address kept, an address routed to the pod)
// sends its replies to an outside address: they reach table 100 like the
// pod's own connections, and a Deny 0.0.0.0/0 would cut them. OpenShift
// SDN skipped replies (ct_state=+rpl) in table 101 only, relying on OVS
// sharing the kernel's conntrack; the userspace datapath has a conntrack
// of its own, which never saw the host's DNAT. So the egress firewall
// tracks these connections itself, in a conntrack zone of its own
// (ovs.CtZoneEgressFirewall), on both datapaths (StaticFlows):
//
//	30  p55  ip,in_port=tun0,nw_src=<cluster network> → goto 31
//	30  p50  ip,in_port=tun0,nw_dst=<local subnet> → ct(commit,zone=Z,table=31)
//	99  p100 ip → ct(commit,zone=Z,table=100)
//	100 p2000 ct_state=+rpl+trk → goto 101
//
// Every connection entering a local pod from tun0 with a source outside the
// cluster networks is committed in zone Z as opened from outside; every
// packet leaving the cluster network is committed in zone Z before the
// rules, so a connection the pod opens is known as the pod's before any
// reply comes back — its replies arriving through tun0 are replies in Z,
// never a new connection opened from outside. A pod's packet is therefore
// +rpl in zone Z exactly when the other side opened the connection, and
// only those skip the rules. Committing a connection the rules then deny
// costs a conntrack entry and opens nothing: its packets stay the
// originator's. Zone 0 is left alone: on the kernel datapath it is host
// iptables' zone, where a commit would hide new connections from NAT.
package egressfirewall
