package networkpolicy

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// Namespace is one namespace as the compiler sees it. VNIDs must be unique
// among namespaces (networkpolicy mode allocates one per namespace; only
// "default" has VNID 0); a namespace whose VNID is already used by another
// (lower-named) namespace is reported in Result.Errors and gets no flows,
// so its local pods fall through to the tables' final drop (fail closed).
type Namespace struct {
	Name   string
	Labels map[string]string
	VNID   uint32
}

// Pod is one pod of the cluster, local or remote. Pods without a valid IPv4
// IP and host-network pods are never selected, neither as peers nor as
// targets (they do not traverse br0 with their own address).
type Pod struct {
	Namespace, Name string
	Labels          map[string]string
	// IP is the pod IP; the zero Addr means "not assigned yet".
	IP          netip.Addr
	HostNetwork bool
	// Local is true for pods running on the node being compiled for. Only
	// local pods are targets (ingress in table 80, egress in table 27);
	// every pod of the cluster can be a peer.
	Local bool
	// Ports are the pod's named container ports, used to resolve named
	// ports of policies whose destination is this pod.
	Ports []ContainerPort
}

// ContainerPort is a named container port (corev1.ContainerPort reduced to
// what NetworkPolicy needs). An empty Protocol means TCP.
type ContainerPort struct {
	Name     string
	Protocol corev1.Protocol
	Port     uint16
}

// Input is everything the compiler reads: a consistent snapshot of the
// cluster for one node. The compiler never modifies it.
type Input struct {
	Namespaces []Namespace
	Pods       []Pod
	Policies   []*networkingv1.NetworkPolicy
}

// PolicyError reports a policy that could not be compiled (unparsable CIDR,
// invalid selector, unsupported protocol, bad port range). The policy
// contributes no allows; the pods it selects stay isolated, so the error
// fails closed for them and has no effect on any other policy.
type PolicyError struct {
	Namespace, Name string
	Err             error
}

func (e *PolicyError) Error() string {
	return fmt.Sprintf("networkpolicy %s/%s: %v", e.Namespace, e.Name, e.Err)
}

func (e *PolicyError) Unwrap() error { return e.Err }

// The compiled flows are owned by pipeline.PolicyNamespaceOwner(namespace)
// (every flow that matches the namespace's VNID register: targets, conj_id
// flows, plain allows and isolation flows) and pipeline.PolicyMatchOwner(key)
// (one shared conjunctive match flow, a peer or port clause used by
// conjunctions of any namespace; its cookie is pipeline.PolicyMatchCookieKey's).

// Priorities of the compiled flows in PolicyEgress and PolicyIngress: the
// band pipeline.StageNetworkPolicy owns. They sit below the static flows of
// networkpolicy mode (p300 gateway/services, p200 replies) and above the
// allow-all placeholder (p50), so the compiled flows decide for every
// namespace with local pods whether or not the placeholder is still
// installed.
const (
	// PriorityPlainAllow holds small rules rendered as plain flows (their
	// cross product is not larger than a conjunction would be) and rules
	// whose conjunction found no free level. Plain allow flows may overlap:
	// they all have the same action.
	PriorityPlainAllow uint16 = 195
	// PriorityConjTop is conjunction level 0; level i is PriorityConjTop-i,
	// down to PriorityConjBottom. Two conjunctions that could match one
	// packet are never placed at one level.
	PriorityConjTop    uint16 = 190
	PriorityConjBottom uint16 = 101
	// PriorityPodAllow allows a local pod that no policy of the direction
	// selects, in a namespace that has policies for that direction.
	PriorityPodAllow uint16 = 100
	// PriorityNamespace is the namespace's default: allow when it has no
	// policy for the direction, drop (isolation) when it has some.
	PriorityNamespace uint16 = 60
)

// conjsPerTable bounds the conjunctions of one namespace in one table:
// conjunction IDs are VNID<<8 | index (VNIDs are 24 bits), unique in the
// table. Further boxes of the namespace are rendered as plain flows.
const conjsPerTable = 256

// numLevels is the number of conjunction priority levels.
const numLevels = int(PriorityConjTop-PriorityConjBottom) + 1

// direction is ingress (table 80, the namespace is reg1 = destination VNID)
// or egress (table 27, reg0 = source VNID).
type direction uint8

const (
	ingress direction = iota
	egress
)

func (d direction) table() ovs.Table {
	if d == ingress {
		return ovs.TablePolicyIngress
	}
	return ovs.TablePolicyEgress
}

// nsReg is the register holding the VNID of the namespace whose pods the
// direction protects.
func (d direction) nsReg() ovs.RegField {
	if d == ingress {
		return ovs.DstVNIDField
	}
	return ovs.SrcVNIDField
}

// allow is the action of every allow flow of the direction.
func (d direction) allow() ovs.Action {
	if d == ingress {
		return pipeline.IngressAllow
	}
	return ovs.Goto(ovs.TableConntrackCommit)
}

// targetField matches the protected pod's address, peerField the other end.
// In ingress the target is the receiving pod as tables LocalPod and
// MulticastToLocal name it in reg3 (ovs.DstPodIPField), not nw_dst: the
// destination of a multicast datagram is its group, and both paths must meet
// the same decision. Targets are single pods (host prefixes).
func (d direction) targetField(p netip.Prefix) ovs.MatchField {
	if d == ingress {
		return ovs.DstPodIPField.MatchMasked(ovs.IPv4Value(p.Addr()), ^uint32(0)<<(32-p.Bits()))
	}
	return ovs.NwSrc(p)
}

func (d direction) peerField(p netip.Prefix) ovs.MatchField {
	if d == ingress {
		return ovs.NwSrc(p)
	}
	return ovs.NwDst(p)
}

func (d direction) String() string {
	if d == ingress {
		return "ingress"
	}
	return "egress"
}
