package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
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
// HostSubnet name: tables 10, 50, 90). Keys are HostSubnet names. (The
// table-111 replication to them is the multicast feature's.)
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
	if all {
		names, err := f.allNames()
		if err != nil {
			return err
		}
		keys = names
	}
	if len(keys) == 0 {
		return nil
	}
	var errs []error
	for _, name := range keys {
		errs = append(errs, f.renderNode(name))
	}
	return errors.Join(errs...)
}

// remoteNode converts a HostSubnet into a RemoteNode, or explains why it is
// not one: our own node, an incomplete object, or an invalid one. Every
// feature that needs the remote nodes converts them here.
func (e *env) remoteNode(hs *networkv1.HostSubnet) (pipeline.RemoteNode, error) {
	if hs.Name == e.cfg.NodeName || hs.Host == e.cfg.NodeName {
		return pipeline.RemoteNode{}, errOwnNode
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

// renderNode sets or deletes the flows of the remote node name from the
// HostSubnet cache. A HostIP or subnet change replaces the node's flows in
// one step (same owner); a deleted, own or invalid HostSubnet has none.
func (f *nodesFeature) renderNode(name string) error {
	owner := pipeline.NodeOwner(name, "")
	hs, err := f.subnets.Get(name)
	if err != nil {
		f.e.store.Delete(owner)
		return nil // not found: deleted
	}
	n, err := f.e.remoteNode(hs)
	if err != nil {
		f.e.store.Delete(owner)
		if errors.Is(err, errOwnNode) {
			return nil
		}
		klog.InfoS("Ignoring HostSubnet", "hostSubnet", name, "reason", err)
		return nil
	}
	return f.e.set(featureNodes, n.Owner(), pipeline.RemoteNodeFlows(f.e.fc, n))
}

// allNames returns the names of every HostSubnet in the cache and every
// node owner in the store, so that a full render also removes the flows of
// nodes deleted while nobody watched.
func (f *nodesFeature) allNames() ([]string, error) {
	all, err := f.subnets.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	set := map[string]struct{}{}
	for _, hs := range all {
		set[hs.Name] = struct{}{}
	}
	for _, o := range f.e.store.Owners() {
		if o.Kind() == pipeline.KindNode {
			set[o.ID()] = struct{}{}
		}
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	return names, nil
}
