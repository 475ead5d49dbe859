package pipeline

import (
	"net/netip"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// PodInfo is what the pipeline needs to know about a local pod. The zero
// value is not usable: IP must be a valid IPv4 address in the node's
// LocalSubnet and OFPort the pod's port on br0 (>= 3).
type PodInfo struct {
	Namespace, Name string
	IP              netip.Addr
	OFPort          uint32
	// VNID is the pod namespace's VNID; the isolation mode decides what
	// the pod carries (Isolation.PodVNID: 0 in subnet mode).
	VNID uint32
}

// PodMAC returns the MAC the CNI plugin gives a pod with address ip:
// 0a:58:<ip octets>.
func PodMAC(ip netip.Addr) ovs.MAC {
	a := ip.As4()
	return ovs.MAC{0x0a, 0x58, a[0], a[1], a[2], a[3]}
}

// podSHAMask matches the low four bytes of an ARP sender MAC: the pod's
// ARP is checked against the IP part of 0a:58:<ip> (reference §2).
var podSHAMask = ovs.MAC{0, 0, 0xff, 0xff, 0xff, 0xff}

// PodFlows returns the five flows of one local pod (owner
// "pod/<ns>/<name>"): table 20 ARP and IP anti-spoofing, which load the
// source VNID (IP continues to the service LB in ovs proxy mode, else to
// egress policy); table 25, which reloads it for traffic coming back from
// host iptables; table 40 ARP delivery; table 70, which loads the
// destination VNID, port and pod address and sets the pod's MAC before the
// ingress checks of table 80.
func PodFlows(c FlowConfig, p PodInfo) []ovs.Flow {
	vnid := c.Isolation().PodVNID(p.VNID)
	ip := host(p.IP)
	loadSrc := ovs.SrcVNIDField.Load(vnid)
	fromPod := ovs.NewFlow(ovs.TablePodAntiSpoof, 100).MatchInPort(p.OFPort)
	next := ovs.TablePolicyEgress
	if c.OVSProxy() {
		next = ovs.TableServiceLB
	}
	flows := []ovs.Flow{
		fromPod.MatchARP().MatchArpSpa(ip).With(ovs.ArpSha(PodMAC(p.IP), podSHAMask)).
			Action(loadSrc, ovs.Goto(ovs.TableConntrackCommit)),
		fromPod.MatchIPv4().MatchNwSrc(ip).Action(loadSrc, ovs.Goto(next)),
		ovs.NewFlow(ovs.TableServiceReturn, 100).MatchIPv4().MatchNwSrc(ip).
			Action(loadSrc, ovs.Goto(ovs.TablePolicyEgress)),
		ovs.NewFlow(ovs.TableARPLocal, 100).MatchARP().MatchArpTpa(ip).Action(ovs.Output(p.OFPort)),
		// The Ethernet destination is set to the pod's MAC: a packet DNATed
		// to this pod, or un-SNATed back to it, still carries the MAC it was
		// sent to (the gateway's, or the host's service next hop).
		ovs.NewFlow(ovs.TableLocalPod, 100).MatchIPv4().MatchNwDst(ip).
			Action(ovs.DstVNIDField.Load(vnid), ovs.OutPortField.Load(p.OFPort), ovs.DstPodIPField.Load(ovs.IPv4Value(p.IP)),
				ovs.SetEthernetDst(PodMAC(p.IP)),
				ovs.Goto(ovs.TablePolicyIngress)),
	}
	return PodOwner(p.Namespace, p.Name).Stamp(flows)
}
