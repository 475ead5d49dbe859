// Package ovs is the OpenFlow layer of the node agent: the table layout, the
// register map and named bit fields and marks, a typed Flow with one
// canonical ovs-ofctl text form (including OpenFlow groups, conntrack with
// zones, NAT and marks, and learn), cookies that encode ownership, a parser
// for dump-flows and dump-groups output, the ovs-ofctl transport (Bridge), a
// validating fake bridge and an in-process packet tracer. Generators
// elsewhere return []Flow and []GroupEntry with no I/O; a Bridge applies
// them. README.md describes each construct and the text OVS prints for it.
//
// # Pipeline (OpenShift SDN rule version 13 layout)
//
// br0 has no default behaviour: fail_mode=secure, and every table ends in an
// explicit priority-0 flow with an empty match — a drop, except where the
// table's documented default is to continue (30, 99, 100, 101). Drops are
// explicit so that they are counted in n_packets and visible in sdnctl.
// goto_table only jumps forward (ValidateFlow enforces it); ct(table=N) and
// resubmit may re-enter the current table.
//
// Registers (fields.go): reg0 = source VNID, reg1 = destination VNID,
// reg2 = output port. The VXLAN key (tun_id[0..31]) carries the source VNID
// between nodes. Port 1 is vxlan0, port 2 is tun0, pods start at port 3.
//
//	0   Classifier: every packet enters here. Untracked IP gets ct(table=0)
//	    first. From vxlan0: known cluster sources/destinations, load reg0
//	    from tun_id, go to 10. From tun0: gateway traffic to 30, DNATed
//	    pod→service traffic to 25, multicast dropped. Everything else IP/ARP
//	    goes to 20 (a pod port). Default: drop (unknown ports, non-IP).
//	10  VXLANIngress: only VXLAN from known nodes (tun_src per HostSubnet,
//	    cookie = that node) continues to 30. Default: drop.
//	20  PodAntiSpoof: per pod (in_port + IP, and ARP sha/spa) load reg0 =
//	    the namespace VNID; IP to 21 (OVS service proxy) or 27, ARP to 30.
//	    Pods may not emit VXLAN. Default: drop (spoofed sources).
//	21  ServiceLB (--proxy-mode=ovs): new connections to a Service's
//	    virtual address and port (ClusterIP, or the NodePort address the
//	    host DNATs node-port traffic to) pick an endpoint through the
//	    Service's select group and are DNATed by ct(commit,nat(dst=EP));
//	    established ones get their NAT re-applied. Default: go to 22.
//	22  ServiceSNAT: connections that must come back through this node
//	    (NodePort with externalTrafficPolicy Cluster, hairpin) are SNATed to
//	    the node gateway in the SNAT zone. Default: go to 23.
//	23  ServicePost: host and hairpin traffic skips egress policy (to 30),
//	    pod traffic continues to 27. Default: go to 27.
//	24  ServiceAffinity: flows learned by sessionAffinity ClientIP buckets
//	    (client, VIP, port → endpoint); resubmitted to from 21. Default:
//	    mark the packet "endpoint to select".
//	25  ServiceReturn: traffic coming back from host iptables after DNAT
//	    (--proxy-mode=kube-proxy); reload reg0 from the pod source IP, go to
//	    27. Default: drop.
//	27  PolicyEgress: NetworkPolicy egress; services and replies pass to
//	    30. Default: drop (in subnet/multitenant a priority-500 allow). On
//	    the userspace datapath an SCTP packet first looks for a reflexive
//	    reply flow in 28 (see 81).
//	28  PolicyEgressReplies (userspace datapath): flows learned from the
//	    SCTP packets delivered here (81): the reverse 5-tuple may leave as a
//	    reply. Default: drop (no flag).
//	30  ConntrackCommit: ct(commit,table=31) for pod-network-internal
//	    traffic leaving for another node (after egress policy decided);
//	    traffic to a local pod is committed in 81, after ingress policy
//	    decided, so that a packet ingress drops leaves no entry that would
//	    let the reverse direction pass as a reply. Userspace SCTP is never
//	    committed (OVS 3.1 tracks it without ports); its reverse 5-tuple is
//	    learned into 82 instead. Default: go to 31.
//	31  Routing: replies of service connections are un-DNATed first;
//	    gateway to tun0, local to 40/70, remote to 50/90, services to 60,
//	    multicast to 110/120, other IP to 99. Default: drop.
//	40  ARPLocal: ARP for a local pod is output to its port (not isolated).
//	    Default: drop.
//	50  ARPRemote: ARP for a remote node subnet goes into VXLAN with
//	    tun_id = reg0 and tun_dst = the node. Default: drop.
//	60  Services: service CIDR traffic to tun0 (kube-proxy mode: host
//	    kube-proxy; ovs mode: a Service without a usable endpoint, which the
//	    host rejects). Default: drop.
//	70  LocalPod: per local pod IP load reg1 = pod VNID, reg2 = pod port,
//	    reg3 = pod IP, go to 80. Default: drop.
//	80  PolicyIngress: tenant isolation / NetworkPolicy ingress, allowed
//	    traffic is output to reg2 (networkpolicy mode: through 81). The
//	    gateway always passes; a hairpin (a pod reaching itself through its
//	    Service) goes back out IN_PORT. Userspace SCTP first looks for a
//	    reflexive reply flow in 82. Default: drop.
//	81  IngressCommit (networkpolicy mode): what ingress allowed is
//	    committed (ct(commit)) and output to reg2; userspace SCTP instead
//	    learns its reverse 5-tuple into 28 and 82. Default: output to reg2.
//	82  PolicyIngressReplies (userspace datapath): flows learned from SCTP
//	    packets that left a local pod (30) or were delivered (81): the
//	    reverse 5-tuple may enter as a reply. Default: drop (no flag).
//	90  RemotePod: per remote node subnet, tun_id = reg0, tun_dst = node
//	    IP, output to vxlan0. Default: drop.
//	99  EgressPrelim: DNS to the node IP bypasses egress controls.
//	    Default: go to 100.
//	100 EgressFirewall: EgressNetworkPolicy per VNID, first match wins
//	    (SPEC §4.6). Default: go to 101.
//	101 EgressRouting: egress IPs per VNID through select groups over the
//	    egress nodes (SPEC §4.7), replies to tun0. Default: output to tun0.
//	110 MulticastFromLocal: multicast-enabled VNIDs go to 111 (SPEC §4.8).
//	    Default: drop.
//	111 MulticastToRemote: copy to every remote node, then 120. Default:
//	    drop.
//	120 MulticastToLocal: each local pod of the VNID through 80 (resubmit,
//	    with reg1/reg2/reg3 as LocalPod loads them). Default: drop.
//	253 Version: a single note flow "PP.VV" (plugin, rule version) written
//	    last; its absence or a different value makes the agent rebuild br0.
package ovs

import (
	"fmt"
	"strconv"
)

// Table is one OpenFlow table of the pipeline. IDs are fixed so that
// `ovs-ofctl dump-flows br0 table=N` stays stable for operators; code refers
// to tables only through the variables below, never through numbers.
type Table struct {
	ID   uint8
	Name string
}

// String returns the numeric form used on the wire ("20").
func (t Table) String() string { return strconv.Itoa(int(t.ID)) }

// Named returns the readable form used in goldens and sdnctl
// ("PodAntiSpoof(20)"); tables unknown to the pipeline render as "Unknown(N)".
func (t Table) Named() string {
	name := t.Name
	if name == "" {
		name = "Unknown"
	}
	return fmt.Sprintf("%s(%d)", name, t.ID)
}

// Classification and ingress from the overlay.
var (
	// TableClassifier classifies by in_port and sends untracked IP through conntrack.
	TableClassifier = Table{ID: 0, Name: "Classifier"}
	// TableVXLANIngress admits VXLAN only from known nodes.
	TableVXLANIngress = Table{ID: 10, Name: "VXLANIngress"}
)

// Traffic from local pods: anti-spoofing, source VNID, egress policy.
var (
	// TablePodAntiSpoof checks pod source addresses and loads the source VNID.
	TablePodAntiSpoof = Table{ID: 20, Name: "PodAntiSpoof"}
	// TableServiceLB load-balances new connections to Services (ovs proxy).
	TableServiceLB = Table{ID: 21, Name: "ServiceLB"}
	// TableServiceSNAT SNATs service connections that must return here.
	TableServiceSNAT = Table{ID: 22, Name: "ServiceSNAT"}
	// TableServicePost sends host and hairpin traffic past egress policy.
	TableServicePost = Table{ID: 23, Name: "ServicePost"}
	// TableServiceAffinity holds the learned sessionAffinity flows.
	TableServiceAffinity = Table{ID: 24, Name: "ServiceAffinity"}
	// TableServiceReturn reloads the source VNID for traffic DNATed by the host.
	TableServiceReturn = Table{ID: 25, Name: "ServiceReturn"}
	// TablePolicyEgress enforces NetworkPolicy egress rules.
	TablePolicyEgress = Table{ID: 27, Name: "PolicyEgress"}
	// TablePolicyEgressReplies holds the learned SCTP reply flows of egress
	// (userspace datapath).
	TablePolicyEgressReplies = Table{ID: 28, Name: "PolicyEgressReplies"}
	// TableConntrackCommit commits pod-network-internal connections.
	TableConntrackCommit = Table{ID: 30, Name: "ConntrackCommit"}
)

// Routing and delivery.
var (
	// TableRouting dispatches by destination.
	TableRouting = Table{ID: 31, Name: "Routing"}
	// TableARPLocal answers ARP for local pods by delivering it to the pod.
	TableARPLocal = Table{ID: 40, Name: "ARPLocal"}
	// TableARPRemote tunnels ARP for remote node subnets.
	TableARPRemote = Table{ID: 50, Name: "ARPRemote"}
	// TableServices sends service CIDR traffic to the host.
	TableServices = Table{ID: 60, Name: "Services"}
	// TableLocalPod loads destination VNID and output port of a local pod.
	TableLocalPod = Table{ID: 70, Name: "LocalPod"}
	// TablePolicyIngress enforces tenant isolation and NetworkPolicy ingress.
	TablePolicyIngress = Table{ID: 80, Name: "PolicyIngress"}
	// TableIngressCommit commits what ingress allowed and delivers it.
	TableIngressCommit = Table{ID: 81, Name: "IngressCommit"}
	// TablePolicyIngressReplies holds the learned SCTP reply flows of
	// ingress (userspace datapath).
	TablePolicyIngressReplies = Table{ID: 82, Name: "PolicyIngressReplies"}
	// TableRemotePod tunnels IP to the node owning the destination subnet.
	TableRemotePod = Table{ID: 90, Name: "RemotePod"}
)

// Egress out of the cluster network.
var (
	// TableEgressPrelim holds exceptions evaluated before egress controls.
	TableEgressPrelim = Table{ID: 99, Name: "EgressPrelim"}
	// TableEgressFirewall enforces EgressNetworkPolicy.
	TableEgressFirewall = Table{ID: 100, Name: "EgressFirewall"}
	// TableEgressRouting selects egress IPs or the host.
	TableEgressRouting = Table{ID: 101, Name: "EgressRouting"}
)

// Multicast and the version marker.
var (
	// TableMulticastFromLocal admits multicast of multicast-enabled VNIDs.
	TableMulticastFromLocal = Table{ID: 110, Name: "MulticastFromLocal"}
	// TableMulticastToRemote copies multicast to every remote node.
	TableMulticastToRemote = Table{ID: 111, Name: "MulticastToRemote"}
	// TableMulticastToLocal delivers multicast to local pods of the VNID.
	TableMulticastToLocal = Table{ID: 120, Name: "MulticastToLocal"}
	// TableVersion holds the single pipeline-version note flow.
	TableVersion = Table{ID: 253, Name: "Version"}
)

// Tables lists every table of the pipeline in ID order.
var Tables = []Table{
	TableClassifier, TableVXLANIngress,
	TablePodAntiSpoof, TableServiceLB, TableServiceSNAT, TableServicePost, TableServiceAffinity,
	TableServiceReturn, TablePolicyEgress, TablePolicyEgressReplies, TableConntrackCommit,
	TableRouting, TableARPLocal, TableARPRemote, TableServices, TableLocalPod,
	TablePolicyIngress, TableIngressCommit, TablePolicyIngressReplies, TableRemotePod,
	TableEgressPrelim, TableEgressFirewall, TableEgressRouting,
	TableMulticastFromLocal, TableMulticastToRemote, TableMulticastToLocal,
	TableVersion,
}

// TableByID returns the pipeline table with the given ID; ok is false for IDs
// that are not part of the pipeline.
func TableByID(id uint8) (t Table, ok bool) {
	for _, t := range Tables {
		if t.ID == id {
			return t, true
		}
	}
	return Table{ID: id}, false
}

// TableByName returns the pipeline table with the given name (exact match).
func TableByName(name string) (t Table, ok bool) {
	for _, t := range Tables {
		if t.Name == name {
			return t, true
		}
	}
	return Table{}, false
}
