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
// A pod serving a connection opened from outside the cluster network (a
// NodePort whose client address is kept, an address routed to the pod)
// replies to an outside address: its replies reach table 100 like the pod's
// own connections, and a Deny 0.0.0.0/0 would cut them. So table 100 lets
// replies pass before any rule (StaticFlows):
//
//	100 p2000 ip,ct_state=+rpl+trk → goto 101
//
// The state is zone 0's, from table 0's ct(table=0). A pod's packet is a
// reply there only when the other side opened the connection and someone
// committed it: the host on the kernel datapath (OVS shares its conntrack:
// kube-proxy's NodePort DNAT, the host's forwarding), br0 itself on both
// datapaths for Service connections (ServiceLB) and, in networkpolicy mode,
// for what ingress allowed (IngressCommit, 81). A connection the pod opens is
// never a reply from its side, so it meets the rules on every packet (a rule
// change cuts it, as in OpenShift SDN). What stays uncovered: on the
// userspace datapath in multitenant and subnet modes, nothing commits a
// connection opened from outside straight to a pod address (not through a
// Service), so its replies meet the rules.
package egressfirewall
