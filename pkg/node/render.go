package node

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	listers "github.com/ovs-sdn/ovs-sdn/pkg/client/listers/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/vnid"
)

// Pod port external_ids keys written by the CNI server (and by tests) on a
// pod's OVS Interface; the agent rebuilds its local pods from them, so pods
// survive an agent or OVS restart without any other record.
const (
	ExternalIDSandbox   = "sandbox"
	ExternalIDIP        = "ip"
	ExternalIDNamespace = "k8s_pod_namespace"
	ExternalIDPodName   = "k8s_pod_name"
)

// SwitchPort is one port of br0 as read from OVSDB.
type SwitchPort struct {
	Name        string
	OFPort      int
	ExternalIDs map[string]string
}

// podFromPort returns the local pod a port carries, or false if the port is
// not a pod port (vxlan0, tun0, a port without pod external_ids, or one
// without a usable ofport yet).
func podFromPort(p SwitchPort) (PodInfo, bool) {
	ns, name := p.ExternalIDs[ExternalIDNamespace], p.ExternalIDs[ExternalIDPodName]
	ip, err := netip.ParseAddr(p.ExternalIDs[ExternalIDIP])
	if ns == "" || name == "" || err != nil || !ip.Is4() || p.OFPort < 3 {
		return PodInfo{}, false
	}
	return PodInfo{Namespace: ns, Name: name, IP: ip, OFPort: uint32(p.OFPort)}, true
}

// renderer turns the agent's inputs (HostSubnet cache, VNID map, OVSDB pod
// ports) into the desired flows of a FlowStore. It does no I/O and is used
// only from the agent's sync goroutine.
type renderer struct {
	fc       FlowConfig
	cn       *clusternetwork.Config
	nodeName string
	store    *FlowStore
	vnids    *vnid.Map
	subnets  listers.HostSubnetLister

	pods           map[string]PodInfo  // owner → last rendered local pod
	tenants        map[uint32]struct{} // VNIDs with TenantFlows installed
	onVNIDNotFound func(namespace string)
	// onPods, if set, is called after every renderPods with the rendered
	// local pods (NetworkPolicy, policy.go: the pods' namespaces are
	// recompiled into the store before the caller syncs).
	onPods func(pods map[string]PodInfo) error
}

// renderPipeline sets the base flows and the version flow.
func (r *renderer) renderPipeline() error {
	if err := r.store.Set(OwnerPipeline, BaseFlows(r.fc)); err != nil {
		return err
	}
	return r.store.Set(OwnerVersion, []ovs.Flow{VersionFlow(r.fc)})
}

// remoteNode converts a HostSubnet into a RemoteNode, or explains why it is
// not one: our own node, an incomplete object, or an invalid one.
func (r *renderer) remoteNode(hs *networkv1.HostSubnet) (RemoteNode, error) {
	if hs.Name == r.nodeName || hs.Host == r.nodeName {
		return RemoteNode{}, errOwnNode
	}
	ip, err := netip.ParseAddr(hs.HostIP)
	if err != nil || !ip.Is4() {
		return RemoteNode{}, fmt.Errorf("HostSubnet %s: invalid hostIP %q", hs.Name, hs.HostIP)
	}
	if ip == r.fc.NodeIP {
		return RemoteNode{}, errOwnNode
	}
	sub, err := netip.ParsePrefix(hs.Subnet)
	if err != nil || !r.cn.ContainsNodeSubnet(sub) {
		return RemoteNode{}, fmt.Errorf("HostSubnet %s: subnet %q is not a node subnet of the cluster network", hs.Name, hs.Subnet)
	}
	n := RemoteNode{Name: hs.Name, UID: string(hs.UID), HostIP: ip, Subnet: sub}
	if v, ok := hs.Annotations[networkv1.FixedVNIDHostAnnotation]; ok {
		id, err := strconv.ParseUint(v, 10, 32)
		if err != nil || !vnid.Valid(uint32(id)) {
			return RemoteNode{}, fmt.Errorf("HostSubnet %s: invalid %s %q", hs.Name, networkv1.FixedVNIDHostAnnotation, v)
		}
		fixed := uint32(id)
		n.FixedVNID = &fixed
	}
	return n, nil
}

var errOwnNode = errors.New("own node")

// renderNode sets or deletes the flows of the remote node name from the
// HostSubnet cache. A HostIP or subnet change replaces the node's flows in
// one step (same owner); a deleted, own or invalid HostSubnet has none.
func (r *renderer) renderNode(name string) error {
	hs, err := r.subnets.Get(name)
	if err != nil {
		r.store.Delete(NodeOwner(name))
		return nil // not found: deleted
	}
	n, err := r.remoteNode(hs)
	if err != nil {
		r.store.Delete(NodeOwner(name))
		if errors.Is(err, errOwnNode) {
			return nil
		}
		klog.InfoS("Ignoring HostSubnet", "hostSubnet", name, "reason", err)
		return nil
	}
	return r.store.Set(NodeOwner(name), RemoteNodeFlows(r.fc, n))
}

// renderMulticast rebuilds the table-111 replication flow from every valid
// remote node.
func (r *renderer) renderMulticast() error {
	all, err := r.subnets.List(labels.Everything())
	if err != nil {
		return err
	}
	var ips []netip.Addr
	for _, hs := range all {
		if n, err := r.remoteNode(hs); err == nil {
			ips = append(ips, n.HostIP)
		}
	}
	return r.store.Set(OwnerMulticastRemote, []ovs.Flow{MulticastRemoteFlow(r.fc, ips)})
}

// allNodeNames returns the names of every HostSubnet in the cache and every
// node owner in the store, so that a full render also removes the flows of
// nodes deleted while nobody watched.
func (r *renderer) allNodeNames() ([]string, error) {
	all, err := r.subnets.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	set := map[string]struct{}{}
	for _, hs := range all {
		set[hs.Name] = struct{}{}
	}
	for _, o := range r.store.Owners() {
		if len(o) > 5 && o[:5] == "node/" {
			set[o[5:]] = struct{}{}
		}
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// renderPods makes the pod flows equal the pod ports found in OVSDB, with
// the current VNIDs, and (multitenant) keeps TenantFlows for exactly the
// VNIDs of local pods. A pod whose namespace has no VNID yet gets no flows
// (it is isolated, never given the wrong VNID); it is rendered again when
// its NetNamespace arrives.
func (r *renderer) renderPods(ports []SwitchPort) error {
	next := map[string]PodInfo{}
	inUse := map[uint32]struct{}{}
	for _, p := range ports {
		pod, ok := podFromPort(p)
		if !ok {
			continue
		}
		if r.fc.Mode != clusternetwork.ModeSubnet {
			id, ok := r.vnids.Get(pod.Namespace)
			if !ok {
				r.onVNIDNotFound(pod.Namespace)
				continue
			}
			pod.VNID = id
		}
		next[PodOwner(pod.Namespace, pod.Name)] = pod
		inUse[pod.VNID] = struct{}{}
	}
	var errs []error
	for owner := range r.pods {
		if _, ok := next[owner]; !ok {
			r.store.Delete(owner)
		}
	}
	prev := r.pods
	r.pods = map[string]PodInfo{}
	for owner, pod := range next {
		if prev[owner] == pod {
			// Unchanged (e.g. a port a CNI ADD already rendered): PodFlows
			// depends on PodInfo and r.fc only, so the store holds them.
			r.pods[owner] = pod
			continue
		}
		if err := r.store.Set(owner, PodFlows(r.fc, pod)); err != nil {
			errs = append(errs, err)
			continue
		}
		r.pods[owner] = pod
	}
	errs = append(errs, r.renderTenants(inUse))
	if r.onPods != nil {
		errs = append(errs, r.onPods(r.pods))
	}
	return errors.Join(errs...)
}

// renderTenants installs TenantFlows for every in-use VNID and removes them
// for VNIDs no local pod uses any more (multitenant mode only).
func (r *renderer) renderTenants(inUse map[uint32]struct{}) error {
	if r.fc.Mode != clusternetwork.ModeMultitenant {
		return nil
	}
	for id := range r.tenants {
		if _, ok := inUse[id]; !ok {
			r.store.Delete(VNIDOwner(id))
			delete(r.tenants, id)
		}
	}
	var errs []error
	for id := range inUse {
		if err := r.store.Set(VNIDOwner(id), TenantFlows(r.fc, id)); err != nil {
			errs = append(errs, err)
			continue
		}
		r.tenants[id] = struct{}{}
	}
	return errors.Join(errs...)
}
