// Package netlab builds the network-namespace skeleton of the multi-node lab: an underlay
// switch, node namespaces each running a private Open vSwitch (ovsdb-server + ovs-vswitchd on
// the userspace datapath), and test pods wired straight into a node's br0. It is shared by the
// node-agent integration tests and by cmd/sdn-lab; it knows nothing about the SDN pipeline.
//
// # Names
//
// Everything a Lab creates derives from its prefix (see ValidPrefix), so Sweep(prefix) can find
// the leftovers of a crashed run:
//
//	netns        <prefix>-underlay, <prefix>-<node>, <prefix>-<node>-<pod>, <prefix>-<host>
//	state dir    <StateRoot>/<prefix>/            (default StateRoot /run/netlab)
//	node OVS     <StateRoot>/<prefix>/<node>/     conf.db, db.sock, *.pid, *.ctl, *.mgmt, *.log
//	pidfiles     <StateRoot>/<prefix>/pids/*.pid  every process netlab started ("pid starttime")
//
// No network device is ever created in the root namespace: veths are created with one end
// already inside the target namespace, so deleting the namespaces removes every device.
// Interface names inside namespaces are short and fixed: the underlay bridge "underlay", the
// underlay end of a node's uplink "u-<node>", the node end "eth0", a pod's host end
// "veth<8 hex>" (a hash of node/pod), the pod end "eth0".
//
// The state dir is short on purpose: unix socket paths are limited to 108 bytes, which rules
// out t.TempDir().
//
// # Open vSwitch
//
// Each node runs its own ovsdb-server and ovs-vswitchd inside the node netns (vswitchd must
// live there: the userspace datapath learns routes and neighbours for tunnels from the netns it
// runs in). OVS_RUNDIR, OVS_DBDIR, OVS_LOGDIR and OVS_SYSCONFDIR point at the node's state dir,
// so nothing touches /var/run/openvswitch, and the standard tools work unchanged with
// Node.Env(): `ovs-vsctl show`, `ovs-ofctl -O OpenFlow13 dump-flows br0` (via
// <rundir>/br0.mgmt) and `ovs-appctl -t ovs-vswitchd ...` (via <rundir>/ovs-vswitchd.pid).
//
// On the userspace datapath VXLAN only leaves the node when the route to the remote node goes
// out through an OVS bridge, so the node's uplink eth0 is a port of a second netdev bridge
// "br-phy" and the node IP lives on br-phy's internal interface (OVS userspace-tunneling
// guide). With the IP on eth0 itself, encapsulated packets are silently lost.
//
// TX checksum offload is turned off on both ends of every veth netlab creates: the userspace
// datapath (OVS 3.1) forwards CHECKSUM_PARTIAL packets without completing the checksum, so
// TCP through it (and through userspace conntrack) fails otherwise. Measured here: the end
// that matters is the pod's eth0, where the TCP segments are built; with offload left on
// there, ICMP still passes but TCP connects time out. The pod's host end and the underlay
// veths carry no locally built TCP and work either way; they are turned off too, for
// symmetry and for host-originated traffic. Pod MTU must be the overlay MTU (underlay MTU −
// 50 for VXLAN, 1450 on a 1500 underlay).
//
// Tunnel neighbours: the userspace datapath drops a packet it would encapsulate towards a node
// whose MAC is not in its neighbour cache (`ovs-appctl tnl/neigh/show`) while it ARPs for it;
// the cache starts empty, is emptied by every vswitchd restart, and ages out entries (static
// ones too) after 15 idle minutes. Measured here without help: the first pod packet towards a
// node is lost (a pod's first ARP request, retried by the pod kernel 1 s later, so a 1 s ping
// times out; after the sender's vswitchd restart, with the pod's ARP cached, the datagram
// itself). So netlab writes the entries itself (`tnl/neigh/set br-phy <peer IP> <peer br-phy
// MAC>`) between every pair of nodes: on AddNode, after Restart of ovs-vswitchd, and every
// minute. No warm-up ping is needed. A lab made WithoutTunnelNeighbors leaves this to the node
// agents (sdn-node keeps the entries on the userspace datapath itself, pkg/node tunnelneigh.go),
// as on a real node, where nobody else would: sdn-lab (pkg/lab) and the node agent's
// integration tests do so since issue 17; the default is for labs without agents (netlab's own
// tests, which program br0 by hand).
//
// A node's OVS ports (eth0, pod veths) are AF_PACKET ports: the kernel still receives every
// frame on them as on any device. With the default arp_ignore=0 the kernel of node b answers
// an ARP request for b's IP arriving on eth0 with eth0's MAC, besides the answer of br-phy;
// a's vswitchd snoops both, and while it holds eth0's MAC its VXLAN misses b's tnl/ports
// entry (which matches br-phy's MAC) and b's kernel receives it on eth0 and answers ICMP
// port unreachable. Each node netns therefore sets net.ipv4.conf.all.arp_ignore=1: only the
// device holding the address answers.
//
// # Processes
//
// Daemons are started from one goroutine locked to its own OS thread for the lifetime of the
// Lab. Linux delivers PR_SET_PDEATHSIG when the *thread* that forked the child exits, and Go
// retires an OS thread whenever a goroutine that locked it exits (ns.Do does this when it
// cannot restore a namespace), so a child forked from an arbitrary goroutine could be killed
// at a random moment. With the default options every daemon gets Pdeathsig=SIGKILL and dies
// with the test binary; WithDetachedProcesses drops that (and starts each in its own session)
// for cmd/sdn-lab, whose daemons must outlive the CLI; they are then removed by Sweep.
//
// # The outside world
//
// AddExternalHost adds a host that is not a node (exthost.go): netns <prefix>-<name> on the
// underlay at 198.18.0.254/24 (above the node range .11–.210), with 203.0.113.1–.16 (TEST-NET-3)
// on its loopback, each running TCP echo servers on ports 80 and 443 and UDP echo servers on
// 53 and 5353, and 203.0.113.53 reserved for the lab DNS server (pkg/lab/dnsserver). Every
// node routes 203.0.113.0/24 via 198.18.0.254 on br-phy (re-added whenever br-phy is
// recreated), so pod traffic reaches it through the node's own egress path. The servers
// answer with the client address they see and log every contact; a packet socket on the
// host's eth0 logs every IPv4 packet that arrives. The host has no default route and does
// not forward.
//
// # Traffic
//
// Probes (Pod.Ping, Pod.TCPConnect, Pod.ServeTCP) run in the calling process: a socket belongs
// to the network namespace it was created in, so netlab creates the socket on a thread
// switched into the pod netns (containernetworking's ns.Do) and then uses it from any
// goroutine. No helper binary, no re-exec of the test binary, no ping(8) (not installed
// everywhere): Ping speaks ICMP over a raw socket.
package netlab
