// Package egressip decides where egress IPs live and which of them are in
// use (SPEC §4.7). It is pure: API objects in (through FromAPI), decisions
// out, no I/O, deterministic, independent of input order. The sdn-controller
// and every node agent call the same functions on their own caches, so they
// agree on what is active without extra API objects.
//
// # The API
//
//   - NetNamespace.egressIPs: the IPs a namespace's external traffic should
//     leave with. Namespaces sharing a VNID (multitenant join) are one
//     network: their requests are merged.
//   - HostSubnet.egressIPs without egressCIDRs: manual — the node hosts
//     exactly these; the controller never edits them.
//   - HostSubnet.egressCIDRs: automatic — the controller owns the node's
//     egressIPs and fills them by Allocate; anything else written there is
//     replaced. A node is either manual or automatic, as in OpenShift.
//   - Annotation network.ovs-sdn.io/egress-unreachable on a HostSubnet: the
//     controller's health check found the node down (value: since when).
//     Set and cleared by the controller only.
//
// # Allocate (controller)
//
// Allocate returns the egressIPs of every automatic node. An IP is
// allocatable when exactly one VNID requests it and no manual HostSubnet
// lists it. Existing assignments are kept while they stay valid (the node
// is reachable, one of its egressCIDRs holds the IP, the IP is allocatable,
// and the node keeps no other IP of the same VNID): healthy assignments are
// never reshuffled, so connections through them survive unrelated changes —
// a node coming back gets new IPs, not old ones back. Every other
// allocatable IP goes to a reachable automatic node whose egressCIDRs hold
// it and that hosts no other IP of the same VNID, the least loaded first
// (ties: node name); IPs with fewer candidate nodes are placed first. An IP
// on an unreachable node moves (Moved) or, with no candidate, is removed.
//
// # Evaluate (controller and agents)
//
// An egress IP is active when exactly one VNID requests it, exactly one
// HostSubnet lists it, that node is not marked unreachable, and that node
// lists no other IP requested by the same VNID (a node SNATs a VNID to one
// address). Anything else makes the IP inactive and is a Problem naming the
// objects involved. A VNID that requests egress IPs and has none active must
// drop its external traffic — never let it out with a node's own address.
package egressip
