// Package proxy is the pure part of OVS-native Service load balancing
// (SPEC §4.5, --proxy-mode=ovs): the model of a node's Services (which
// virtual addresses and ports to program, which endpoints back them), the
// one conversion from Services and EndpointSlices to that model (shared by
// the agent and sdnctl, as networkpolicy.BuildInput is for NetworkPolicy),
// and the renderer of the model into br0's flows and groups. It does no
// I/O.
package proxy

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// ServicePort is one port of one Service as a node programs it: every
// (virtual address, port) it answers on and the endpoints behind it. It is a
// value; Endpoints is sorted and deduplicated. The zero value is not usable.
type ServicePort struct {
	// Namespace, Name and PortName identify it ("ns/name:port" in logs).
	Namespace, Name, PortName string
	// ID is the port's group ID and the value of the service register in
	// its flows: stable across agent restarts (a hash of the identity,
	// probed on collision, see AssignIDs), unique on the node.
	ID       uint32
	Protocol ovs.Proto // TCP, UDP or SCTP
	// ClusterIP and Port: the virtual address (IPv4) and port.
	ClusterIP netip.Addr
	Port      uint16
	// NodePort is the port on every node's addresses (0: none).
	NodePort uint16
	// Endpoints are the ready, non-terminating endpoints (IPv4).
	Endpoints []Endpoint
	// AffinityTimeout is sessionAffinity ClientIP's timeout (0: none).
	AffinityTimeout time.Duration
	// InternalLocal (internalTrafficPolicy: Local) limits cluster traffic
	// to endpoints on the same node; ExternalLocal (externalTrafficPolicy:
	// Local) limits NodePort traffic to them and keeps the client's
	// address.
	InternalLocal, ExternalLocal bool
}

// Endpoint is one backend of a ServicePort.
type Endpoint struct {
	IP   netip.Addr
	Port uint16
	// Local is true for an endpoint on the node being rendered for.
	Local bool
}

// Key identifies the port: "ns/name:port".
func (s ServicePort) Key() string { return s.Namespace + "/" + s.Name + ":" + s.PortName }

// String is Key with the virtual address, for logs.
func (s ServicePort) String() string {
	return fmt.Sprintf("%s (%s %s:%d)", s.Key(), s.Protocol, s.ClusterIP, s.Port)
}

// LocalEndpoints returns the endpoints on this node.
func (s ServicePort) LocalEndpoints() []Endpoint {
	return slices.DeleteFunc(slices.Clone(s.Endpoints), func(e Endpoint) bool { return !e.Local })
}

// clusterEndpoints are the endpoints cluster traffic may reach.
func (s ServicePort) clusterEndpoints() []Endpoint {
	if s.InternalLocal {
		return s.LocalEndpoints()
	}
	return s.Endpoints
}

// externalEndpoints are the endpoints NodePort traffic may reach.
func (s ServicePort) externalEndpoints() []Endpoint {
	if s.ExternalLocal {
		return s.LocalEndpoints()
	}
	return s.Endpoints
}

func compareEndpoints(a, b Endpoint) int {
	if c := a.IP.Compare(b.IP); c != 0 {
		return c
	}
	return int(a.Port) - int(b.Port)
}

// Service port IDs (and ClusterIP group IDs) lie in [MinID, MaxID]; the
// NodePort group of a port is ID|1<<31. Group IDs below MinID belong to
// other features (egress IPs: VNID|1<<30 is above MaxID too; multicast and
// the rest keep below 2^24).
const (
	MinID uint32 = 1 << 24
	MaxID uint32 = 1<<30 - 1
)

// idOf is the preferred ID of key: FNV-32a folded into [MinID, MaxID].
func idOf(key string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return MinID + h.Sum32()%(MaxID-MinID+1)
}

// nextID is the ID probed after id.
func nextID(id uint32) uint32 {
	if id >= MaxID {
		return MinID
	}
	return id + 1
}

// IDAllocator gives the ports of one node their IDs: the hash of the
// port's key (idOf), or, when another port holds it, the next free value.
// A port keeps its ID from Assign to Release. The agent assigns in key
// order at start-up, so a restarted agent gives the same ports the same IDs
// (its groups are then modified in place, not re-created). Not safe for
// concurrent use.
type IDAllocator struct {
	byKey map[string]uint32
	used  map[uint32]string
}

// NewIDAllocator returns an allocator with no IDs given.
func NewIDAllocator() *IDAllocator {
	return &IDAllocator{byKey: map[string]uint32{}, used: map[uint32]string{}}
}

// Assign sets the ID of every port: the one it holds, or a new one.
func (a *IDAllocator) Assign(ports []ServicePort) {
	for i := range ports {
		key := ports[i].Key()
		if id, ok := a.byKey[key]; ok {
			ports[i].ID = id
			continue
		}
		id := idOf(key)
		for a.used[id] != "" {
			id = nextID(id)
		}
		a.byKey[key], a.used[id] = id, key
		ports[i].ID = id
	}
}

// Release frees the ID of the port with key (no-op if it has none).
func (a *IDAllocator) Release(key string) {
	if id, ok := a.byKey[key]; ok {
		delete(a.used, id)
		delete(a.byKey, key)
	}
}

// AssignIDs gives every port its ID: the hash of its key, or, when that is
// taken, the next free value. Ports are assigned in key order, so the same
// set of ports always gets the same IDs; a collision (rare: 31 bits) moves
// only the later key. IDs of ports present in prev are kept.
func AssignIDs(ports []ServicePort, prev map[string]uint32) {
	a := NewIDAllocator()
	for _, p := range ports {
		if id, ok := prev[p.Key()]; ok {
			a.byKey[p.Key()], a.used[id] = id, p.Key()
		}
	}
	order := make([]int, 0, len(ports))
	for i := range ports {
		order = append(order, i)
	}
	slices.SortStableFunc(order, func(x, y int) int { return strings.Compare(ports[x].Key(), ports[y].Key()) })
	for _, i := range order {
		a.Assign(ports[i : i+1])
	}
}
