// Package pipeline renders the OpenFlow pipeline of br0: pure functions from
// the node's configuration and objects (pods, remote nodes, VNIDs) to
// []ovs.Flow, each flow stamped with its owner's cookie. It is a leaf: it
// does no I/O and imports neither the agent nor the CLI, so the agent
// (pkg/node), sdnctl and the lab share one definition of the flows, the
// owners (owner.go), the port numbers, the pod MAC rule and the priority
// bands (bands.go). The isolation mode is a strategy (isolation.go); no
// other code branches on it.
//
// # Which renderer fills which table
//
// br0 runs the OpenShift SDN rule-version-13 table layout (reference §3.1);
// the tables are declared and described once in pkg/ovs/tables.go, the
// registers in pkg/ovs/fields.go (reg0 source VNID, reg1 destination VNID,
// reg2 output port; tun_id[0..31] carries reg0 between nodes). This comment
// says which renderer fills which table and where we differ from OpenShift.
//
//	0   Classifier     BaseFlows. ct(table=0) for untracked IP in every mode
//	                   (OpenShift did it in every mode too; our userspace
//	                   datapath has its own conntrack, which is what we want:
//	                   the state stays in OVS). vxlan0 (port 1): cluster
//	                   sources/destinations load reg0 from tun_id → 10;
//	                   tun0 (port 2): gateway → 30, DNATed pod→service
//	                   traffic → 25, multicast dropped (whatever the
//	                   source), other IP and gateway ARP → 30; anything
//	                   else IP/ARP → 20.
//	10  VXLANIngress   RemoteNodeFlows: tun_src of each known node → 30.
//	                   OpenShift's p210/p200 eth_dst rewrites exist only for
//	                   an SDN→OVN live migration; we never migrate, so they
//	                   are omitted.
//	20  PodAntiSpoof   BaseFlows: pods may not emit VXLAN (udp to the VXLAN
//	                   port, p300). PodFlows: in_port+IP (and ARP spa+sha)
//	                   load reg0 = pod VNID; IP → 27, ARP → 30.
//	25  ServiceReturn  PodFlows: reload reg0 by pod source IP → 27.
//	27  PolicyEgress   Isolation.StaticFlows: subnet/multitenant p500
//	                   allow; networkpolicy p300 services, p200 replies.
//	                   Compiled NetworkPolicy p60..p195 (pkg/networkpolicy).
//	30  ConntrackCommit networkpolicy isolation: ct(commit,table=31) for
//	                   every (cluster CIDR, cluster CIDR) pair, -rpl.
//	31  Routing        BaseFlows: gateway, local (40/70), replies ct(nat)
//	                   → 70, remote (50/90), services (60), multicast
//	                   (110/120), other IP → 99.
//	40  ARPLocal       PodFlows: ARP for a pod IP → its port.
//	50  ARPRemote      RemoteNodeFlows: ARP for a node subnet → VXLAN.
//	60  Services       BaseFlows: everything → tun0 (SPEC §4.5); OVS-native
//	                   load balancing (select groups, ct nat) comes here.
//	70  LocalPod       PodFlows: reg1 = VNID, reg2 = ofport, reg3 = pod
//	                   address (the ingress target) → 80.
//	80  PolicyIngress  BaseFlows p300: the gateway always passes (kubelet
//	                   probes). Isolation.StaticFlows: subnet p200 all;
//	                   multitenant p200 reg0=0 / reg1=0 and TenantFlows p100
//	                   reg0=reg1=V; networkpolicy p200 replies. Compiled
//	                   NetworkPolicy p60..p195.
//	90  RemotePod      RemoteNodeFlows: IP for a node subnet → VXLAN.
//	99  EgressPrelim   BaseFlows: DNS to the node IP → tun0.
//	100 EgressFirewall EgressNetworkPolicy per VNID (next: SPEC §4.6).
//	101 EgressRouting  BaseFlows: replies → tun0; egress IPs per VNID
//	                   (next: SPEC §4.7).
//	110 MulticastFromLocal  MulticastVNIDFlows: enabled VNIDs → 111.
//	111 MulticastToRemote   MulticastRemoteFlow: head-end replication.
//	120 MulticastToLocal    MulticastVNIDFlows: each local pod of the
//	                   VNID through PolicyIngress (multicast.go).
//	253 Version        VersionFlow: note <plugin>.<PipelineVersion>,
//	                   written last by the agent.
//
// # Owners
//
// Every flow carries its owner's cookie (owner.go): OwnerPipeline (BaseFlows),
// OwnerIsolation (the mode's static flows; up to pipeline version 0x11 they
// were part of OwnerPipeline), OwnerVersion, PodOwner, NodeOwner (cookie
// keyed by the HostSubnet UID), TenantOwner, the NetworkPolicy owners
// (PolicyNamespaceOwner, PolicyMatchOwner), OwnerMulticastRemote and
// MulticastVNIDOwner.
//
// # Final flows
//
// SPEC §4.1 demands an explicit priority-0 drop at the end of every table;
// pkg/ovs.ValidatePipeline checks that every table has a priority-0 flow with
// an empty match. Where OpenShift's priority-0 flow is a continuation rather
// than a drop — 30 → goto 31, 99 → goto 100, 100 → goto 101, 101 →
// output:tun0 — we keep it: it IS the table's final catch-all, explicit and
// counted in n_packets, and adding a drop below it would be unreachable (OVS
// forbids two flows with the same empty match at one priority anyway). Where
// OpenShift had no final flow (60, 111) or a split one, we add or normalize
// an explicit drop:
//   - 60: OpenShift's p200 catch-all output:2 stays; we add p0 drop (never
//     hit, but the table now ends like every other one).
//   - 31: OpenShift's p0 "ip → 99" and p0 "arp → drop" become p1 "ip → 99"
//     and p0 drop (same behaviour, one empty-match final flow).
//   - 111: the p100 flow is owned by MulticastRemoteFlow
//     (OwnerMulticastRemote, rewritten when nodes come and go); BaseFlows
//     adds the p0 drop.
//
// # Other intended differences from reference §3.1 / seeds 003
//
//   - The fixed-VNID tunnel load (HostSubnet annotation fixed-vnid-host) is
//     rendered as load:<n>->reg0, move:reg0->tun_id instead of
//     load:<n>->NXM_NX_TUN_ID[0..31]: pkg/ovs has no load into the tunnel
//     key. reg0 is dead after that flow's output, so behaviour is the same.
//   - udp_dst=<port> is printed tp_dst=<port> (what OVS dumps back too).
//   - The table-253 note flow has priority 0 (OpenShift used the default);
//     the note bytes are <plugin id>.<PipelineVersion>, padded by OVS.
//   - TenantFlows renders nothing for VNID 0, which the p200 reg0=0/reg1=0
//     rules already cover.
//   - Table 0 drops multicast from tun0 at p460, above the gateway's p400
//     (OpenShift: p250, so the host's multicast from the gateway address
//     reached VNID 0's group).
//   - Table 120 delivers through PolicyIngress (resubmit per receiver,
//     reg3 = the receiver) instead of output:<ports>, so multicast meets
//     tenant isolation and NetworkPolicy ingress; compiled ingress matches
//     the target pod in reg3 rather than nw_dst. OpenShift ignored
//     NetworkPolicy for multicast (openshift-docs#15626).
//   - Multicast exists only in the modes with VNIDs; subnet mode has no
//     table-111 flow (110 drops everything).
//
// NetworkPolicy (networkpolicy mode): OpenShift installs per-namespace p50
// allows (reg0=V / reg1=V) from its policy plugin. Here the compiler
// (pkg/networkpolicy) owns tables 27 and 80 below the isolation statics:
// per namespace with local pods, p60 default (allow, or drop when isolated)
// up to p195 allows. PolicyAllowAllFlows (p50) exists only for agents run
// without a Kubernetes client.
package pipeline
