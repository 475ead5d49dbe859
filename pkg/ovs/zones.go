package ovs

// Conntrack zones of br0, named once like the registers (SPEC §4.5). Zone 0
// is the default zone: table 0's ct(table=0) tracks every IP packet there
// and the isolation mode commits pod-network-internal connections there
// (on the kernel datapath it is the zone host iptables uses too). Other
// zones keep connections apart from it.
const (
	// CtZoneEgressFirewall holds the connections that cross the egress
	// firewall (pkg/egressfirewall): every packet leaving the cluster
	// network is committed there in EgressPrelim, and every connection
	// opened from outside the cluster network to a local pod through tun0
	// is committed there in ConntrackCommit, so that EgressFirewall can
	// tell a pod's reply (ct_state=+rpl in this zone: the pod is the
	// server) from a connection the pod opens. A zone of its own: a commit
	// in zone 0 would hide new connections from host iptables (NAT) on the
	// kernel datapath.
	CtZoneEgressFirewall uint16 = 65100
)
