package cni

import (
	"context"
	"net"
	"net/netip"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb"
)

// NodeConfig is what the CNI server needs to know about the node's pod
// network. It is a value; the server never modifies it.
type NodeConfig struct {
	// Subnet is the node's HostSubnet (e.g. 10.128.2.0/23); pod addresses
	// come from it.
	Subnet netip.Prefix
	// Gateway is the pod default gateway on tun0; the zero value means the
	// first address of Subnet (.1). It is never handed out to a pod.
	Gateway netip.Addr
	// ClusterNetworks are the cluster pod CIDRs, routed on-link in pods
	// (pods ARP for every pod address; remote ones are answered across the
	// tunnel).
	ClusterNetworks []netip.Prefix
	// ServiceNetwork is the service CIDR (reached through the default route).
	ServiceNetwork netip.Prefix
	// MTU is the overlay MTU of pod interfaces (e.g. 1450).
	MTU int
	// DatapathType is br0's datapath: "system" or "netdev". On "netdev"
	// (userspace) TX checksum offload is turned off on both veth ends, or
	// TCP breaks.
	DatapathType string
}

// gateway returns Gateway or the first address of Subnet.
func (c NodeConfig) gateway() netip.Addr {
	if c.Gateway.IsValid() {
		return c.Gateway
	}
	return c.Subnet.Masked().Addr().Next()
}

// PodPort describes one pod attachment as the agent needs it to render the
// pod's flows. It is also what the server writes into the OVS Interface's
// external_ids, so the agent can rebuild it from OVSDB after a restart.
type PodPort struct {
	Namespace, Name string
	// SandboxID is the CNI container ID (the pod sandbox).
	SandboxID string
	IP        netip.Addr
	MAC       net.HardwareAddr
	// PortName is the host end of the veth, the port's name on the bridge.
	PortName string
	// OFPort is the port's OpenFlow number (>= 3); 0 on PodDeleted when the
	// port was already gone.
	OFPort uint32
	// VNID is the VNID of the pod's namespace (0 on PodDeleted when not
	// known).
	VNID uint32
}

// PodNetwork is the CNI server's view of the node agent, implemented by
// pkg/node. Every method must be safe for concurrent use: the server calls
// it from one goroutine per request, for different pods at once (never for
// the same sandbox at once).
type PodNetwork interface {
	// NodeConfig returns the node's pod network configuration; ok is false
	// until the agent has synced (its informers and br0). While ok is false
	// STATUS reports not ready and ADD fails with CNI error 11 ("try again
	// later"). Must not block.
	NodeConfig() (cfg NodeConfig, ok bool)
	// VNID returns the VNID of namespace, waiting briefly (bounded by ctx,
	// a few seconds at most) for a NetNamespace that is about to appear. An
	// unknown namespace is an error; the server turns it into CNI error 11.
	VNID(ctx context.Context, namespace string) (uint32, error)
	// PodAdded renders and applies the pod's flows (and any policy
	// isolation) and returns once they are in effect on the bridge.
	// Idempotent: adding a pod again with the same PodPort changes nothing;
	// with a different one it replaces the pod's flows. All-or-nothing: on
	// error the pod has no flows.
	PodAdded(ctx context.Context, p PodPort) error
	// PodDeleted removes the pod's flows and returns once they are gone.
	// Idempotent: deleting a pod the agent does not know is not an error.
	// Only Namespace and Name are guaranteed to be set; the rest is filled
	// in when the server still knows it.
	PodDeleted(ctx context.Context, p PodPort) error
	// CheckPod reports an error describing what is wrong when the pod's
	// flows are not installed as PodAdded would install them (for CNI
	// CHECK). Read-only.
	CheckPod(ctx context.Context, p PodPort) error
}

// Switch is the part of the OVSDB client the server uses;
// *ovsdb.Client implements it (see pkg/ovs/ovsdb for the contracts:
// AddPort and DeletePort are idempotent and return once ovs-vswitchd has
// applied the change).
type Switch interface {
	AddPort(ctx context.Context, bridge, name string, externalIDs map[string]string) (int, error)
	DeletePort(ctx context.Context, bridge, name string) error
	Ports(ctx context.Context, bridge string) ([]ovsdb.PortInfo, error)
}

var _ Switch = (*ovsdb.Client)(nil)
