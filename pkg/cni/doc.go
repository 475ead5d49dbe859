// Package cni is ovs-sdn's CNI: the sdn-cni shim the container runtime
// execs (type "ovs-sdn") and the node agent's CNI server that does the
// work.
//
// # Shim
//
// The shim is package shim (pkg/cni/shim), kept apart so the binary the
// runtime execs for every pod links only the CNI library and net/http
// (6 MB, ~3.4 ms CPU per exec here, against 15 MB and ~5.7 ms when it
// linked this package's netlink, OVSDB and metrics). cmd/sdn-cni is
// skel.PluginMainFuncs(shim.PluginFuncs(), shim.PluginVersions()).
// ADD, DEL, CHECK, GC and STATUS are forwarded unchanged (CNI_* variables
// and stdin, as a shim.Request) over the agent's root-only unix socket
// (DefaultSocketPath, or "serverSocket" in the netconf); the shim prints
// the ADD result in the request's cniVersion (0.3.1 … 1.1.0) or the
// agent's CNI error. VERSION is answered by skel. When nothing listens on
// the socket the shim fails with code 11 (50 for STATUS): "ovs-sdn node
// agent is not running on this node". The shim needs no cluster state.
//
// # Conflist
//
// The agent writes RenderConflist (testdata/conflist.golden): sdn-cni, then
// the standard portmap plugin as PortmapPluginType for pods' hostPorts. The
// runtime hands portmap the pod's port mappings (capability portMappings)
// and sdn-cni's result as prevResult (the pod interface eth0 with its
// sandbox and address); portmap DNATs the host ports in the node's iptables
// (backend iptables; snat, so 127.0.0.1 host ports answer) and removes its
// rules at DEL, which the runtime runs on portmap first. CHECK checks both.
// A node whose CNI bin dir lacks the portmap binary fails every pod ADD
// with libcni's "failed to find plugin" naming it.
//
// # Server
//
// Server (in the agent) attaches a pod in four steps, each idempotent:
//
//  1. an address from the node's HostSubnet, leased on disk with the CNI
//     host-local allocator (pkg/ipam; the gateway .1 is never handed out);
//  2. a veth pair — the pod end (CNI_IFNAME) with the overlay MTU, MAC
//     0a:58:<ip>, the address, on-link routes to the cluster CIDRs and a
//     default route via the gateway; the host end HostVethName(container,
//     ifname) in the netns of ovs-vswitchd; TX checksum offload off on both
//     on the netdev datapath;
//  3. an OVS port on br0 with external_ids sandbox, ip, k8s_pod_namespace,
//     k8s_pod_name (OVSDB, libovsdb), from which the agent can rebuild the
//     pod after a restart;
//  4. the pod's flows, through PodNetwork.PodAdded (the agent).
//
// A failing ADD undoes, last step first, what it created. A repeated ADD
// re-ensures every step and returns the same result. DEL undoes the steps
// in reverse order, skipping what is gone, and releases the address last.
// CHECK verifies every step read-only. GC detaches leases and ports of
// containers missing from cni.dev/valid-attachments. STATUS fails (code
// 50) until PodNetwork.NodeConfig reports the agent synced. Requests for
// different containers run in parallel; per container they are serialized.
//
// Nothing but the lease files and OVSDB holds state: the host veth name is
// derived from the container ID and ifname, so a restarted server finds
// everything an earlier one made.
package cni
