package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	listers "github.com/ovs-sdn/ovs-sdn/pkg/client/listers/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
	"github.com/ovs-sdn/ovs-sdn/pkg/vnid"
)

// nodesFeature renders the flows of the remote nodes (one owner per
// HostSubnet name: tables 10, 50, 90). Keys are HostSubnet names.
// HostSubnets that lose a conflict (subnet_conflicts.go) get no flows. (The
// table-111 replication to the remote nodes is the multicast feature's; it
// skips the losers through env.remoteNode.)
type nodesFeature struct {
	e       *env
	subnets listers.HostSubnetLister
}

func (*nodesFeature) name() string          { return featureNodes }
func (*nodesFeature) stage() pipeline.Stage { return pipeline.StageNodes }

func (f *nodesFeature) start(_ context.Context, e *env) ([]cache.InformerSynced, error) {
	inf := e.net.Network().V1().HostSubnets()
	f.subnets = inf.Lister()
	reg, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    f.onHostSubnet,
		UpdateFunc: func(_, obj any) { f.onHostSubnet(obj) },
		DeleteFunc: f.onHostSubnet,
	})
	if err != nil {
		return nil, err
	}
	return []cache.InformerSynced{reg.HasSynced}, nil
}

func (f *nodesFeature) onHostSubnet(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if hs, ok := obj.(*networkv1.HostSubnet); ok {
		f.e.mark(featureNodes, hs.Name)
	}
}

func (f *nodesFeature) render(_ context.Context, keys []string, all bool) error {
	hss, err := f.subnets.List(labels.Everything())
	if err != nil {
		return err
	}
	// Every pass recomputes the conflict losers over the whole cache, so
	// the result never depends on the order the HostSubnets arrived in;
	// a HostSubnet whose loser status changed is rendered again (deleting a
	// winner promotes its loser).
	changed := f.resolveConflicts(hss)
	keys = append(keys, changed...)
	if len(changed) > 0 {
		f.e.markIfPresent(featureMulticast, keyRemote) // its replication list skips the losers
	}
	if all {
		keys = f.allNames(hss)
	}
	if len(keys) == 0 {
		return nil
	}
	f.publishPeers(hss)
	return f.renderNodes(keys)
}

// publishPeers gives the hostIPs of the remote nodes that get flows to
// the tunnel-neighbour upkeep (tunnelneigh.go).
func (f *nodesFeature) publishPeers(hss []*networkv1.HostSubnet) {
	var ips []netip.Addr
	for _, hs := range hss {
		if n, err := f.e.remoteNode(hs); err == nil {
			ips = append(ips, n.HostIP)
		}
	}
	f.e.tunnels.setPeers(ips)
}

// renderNodes renders the nodes named by keys: first every deletion, then
// every set, so that a loser promoted in this pass can take the flow keys
// (its subnet, its hostIP) of a winner deleted in this pass.
func (f *nodesFeature) renderNodes(keys []string) error {
	slices.Sort(keys)
	keys = slices.Compact(keys)
	var set []pipeline.RemoteNode
	for _, name := range keys {
		if n, ok := f.desiredNode(name); ok {
			set = append(set, n)
		} else {
			f.e.store.Delete(pipeline.NodeOwner(name, ""))
		}
	}
	var errs []error
	for _, n := range set {
		errs = append(errs, f.e.set(featureNodes, n.Owner(), pipeline.RemoteNodeFlows(f.e.fc, n)))
	}
	return errors.Join(errs...)
}

// remoteNode converts a HostSubnet into a RemoteNode, or explains why it is
// not one: our own node, the loser of a conflict (as the nodes feature last
// computed them; it renders first in every pass), an incomplete object, or
// an invalid one. Every feature that needs the remote nodes converts them
// here.
func (e *env) remoteNode(hs *networkv1.HostSubnet) (pipeline.RemoteNode, error) {
	if hs.Name == e.cfg.NodeName || hs.Host == e.cfg.NodeName {
		return pipeline.RemoteNode{}, errOwnNode
	}
	if c, lost := e.losers[hs.Name]; lost {
		return pipeline.RemoteNode{}, conflictError{c}
	}
	ip, err := netip.ParseAddr(hs.HostIP)
	if err != nil || !ip.Is4() {
		return pipeline.RemoteNode{}, fmt.Errorf("HostSubnet %s: invalid hostIP %q", hs.Name, hs.HostIP)
	}
	if ip == e.fc.NodeIP {
		return pipeline.RemoteNode{}, errOwnNode
	}
	sub, err := netip.ParsePrefix(hs.Subnet)
	if err != nil || !e.cn.ContainsNodeSubnet(sub) {
		return pipeline.RemoteNode{}, fmt.Errorf("HostSubnet %s: subnet %q is not a node subnet of the cluster network", hs.Name, hs.Subnet)
	}
	n := pipeline.RemoteNode{Name: hs.Name, UID: string(hs.UID), HostIP: ip, Subnet: sub}
	if v, ok := hs.Annotations[networkv1.FixedVNIDHostAnnotation]; ok {
		id, err := strconv.ParseUint(v, 10, 32)
		if err != nil || !vnid.Valid(uint32(id)) {
			return pipeline.RemoteNode{}, fmt.Errorf("HostSubnet %s: invalid %s %q", hs.Name, networkv1.FixedVNIDHostAnnotation, v)
		}
		fixed := uint32(id)
		n.FixedVNID = &fixed
	}
	return n, nil
}

var errOwnNode = errors.New("own node")

// desiredNode returns the remote node name from the HostSubnet cache, or
// false when it has no flows: deleted, our own node, invalid, or the loser
// of a conflict. A HostIP or subnet change replaces the node's flows in one
// step (same owner).
func (f *nodesFeature) desiredNode(name string) (pipeline.RemoteNode, bool) {
	hs, err := f.subnets.Get(name)
	if err != nil {
		return pipeline.RemoteNode{}, false // not found: deleted
	}
	n, err := f.e.remoteNode(hs)
	if err != nil {
		var lost conflictError
		if !errors.Is(err, errOwnNode) && !errors.As(err, &lost) { // losers: logged by resolveConflicts
			klog.InfoS("Ignoring HostSubnet", "hostSubnet", name, "reason", err)
		}
		return pipeline.RemoteNode{}, false
	}
	return n, true
}

// allNames returns the names of every HostSubnet in hss and every node
// owner in the store, so that a full render also removes the flows of
// nodes deleted while nobody watched.
func (f *nodesFeature) allNames(hss []*networkv1.HostSubnet) []string {
	names := make([]string, 0, len(hss))
	for _, hs := range hss {
		names = append(names, hs.Name)
	}
	for _, o := range f.e.store.Owners() {
		if o.Kind() == pipeline.KindNode {
			names = append(names, o.ID())
		}
	}
	return names
}
