package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	listers "github.com/ovs-sdn/ovs-sdn/pkg/client/listers/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// multicastFeature renders multicast (SPEC §4.8; pipeline/multicast.go) in
// the modes with VNIDs: the table-111 replication to every valid remote
// node (owner multicast/remote) and, for each multicast-enabled VNID, the
// table-110 admission and the table-120 delivery to the VNID's local pods
// (owner multicast/vnid/<id>). A VNID is enabled when every NetNamespace
// holding it carries MulticastEnabledAnnotation "true" (reference §5.3):
// joined projects share one group, and one project that has not opted in
// keeps it off for all.
//
// Keys: keyRemote (a HostSubnet changed), "vnid/<id>" (a NetNamespace of
// that VNID appeared, went, changed its annotation, or moved to or from
// it), keyLocalPods (the pods feature's local pods changed; the VNIDs whose
// receivers changed are found by diffing them). Every render is
// proportional to the VNIDs it touches, except the replication flow, which
// is rebuilt from all HostSubnets when any changes (one flow, as
// OpenShift SDN did).
type multicastFeature struct {
	e       *env
	subnets listers.HostSubnetLister
	netns   cache.Indexer // NetNamespaces, indexed by NetID

	enabled   map[uint32]bool               // VNIDs with flows set
	receivers map[uint32][]pipeline.PodInfo // local pods per VNID, as last rendered
}

// Keys of the multicast feature besides keyLocalPods.
const (
	keyRemote      = "remote"
	vnidKeyPrefix  = "vnid/"
	netIDIndexName = "netid"
)

func vnidKey(id uint32) string { return vnidKeyPrefix + strconv.FormatUint(uint64(id), 10) }

func (*multicastFeature) name() string          { return featureMulticast }
func (*multicastFeature) stage() pipeline.Stage { return pipeline.StageMulticast }

func (f *multicastFeature) start(_ context.Context, e *env) ([]cache.InformerSynced, error) {
	hs := e.net.Network().V1().HostSubnets()
	nn := e.net.Network().V1().NetNamespaces().Informer()
	f.subnets = hs.Lister()
	if err := nn.AddIndexers(cache.Indexers{netIDIndexName: netIDIndex}); err != nil {
		return nil, fmt.Errorf("NetNamespace index: %w", err)
	}
	f.netns = nn.GetIndexer()
	regHS, err := hs.Informer().AddEventHandler(changeHandler(func(any, any) { e.mark(featureMulticast, keyRemote) }))
	if err != nil {
		return nil, err
	}
	regNN, err := nn.AddEventHandler(changeHandler(f.onNetNamespace))
	if err != nil {
		return nil, err
	}
	return []cache.InformerSynced{regHS.HasSynced, regNN.HasSynced}, nil
}

func netIDIndex(obj any) ([]string, error) {
	if nn, ok := obj.(*networkv1.NetNamespace); ok {
		return []string{strconv.FormatUint(uint64(nn.NetID), 10)}, nil
	}
	return nil, nil
}

// multicastRequested reports whether nn carries the annotation "true".
func multicastRequested(nn *networkv1.NetNamespace) bool {
	return nn.Annotations[networkv1.MulticastEnabledAnnotation] == "true"
}

// onNetNamespace marks the VNIDs whose enablement the change can affect:
// the old and the new NetID, when the NetID or the annotation changed.
func (f *multicastFeature) onNetNamespace(old, obj any) {
	nn, ok := obj.(*networkv1.NetNamespace)
	if !ok {
		return
	}
	if o, ok := old.(*networkv1.NetNamespace); ok {
		if o.NetID == nn.NetID && multicastRequested(o) == multicastRequested(nn) {
			return
		}
		f.e.mark(featureMulticast, vnidKey(o.NetID))
	}
	f.e.mark(featureMulticast, vnidKey(nn.NetID))
}

func (f *multicastFeature) render(_ context.Context, keys []string, all bool) error {
	if f.enabled == nil {
		f.enabled = map[uint32]bool{}
	}
	local := f.localByVNID()
	vnids := changedReceivers(f.receivers, local)
	f.receivers = local
	remote := all
	for _, k := range keys {
		if k == keyRemote {
			remote = true
		} else if id, ok := parseVNIDKey(k); ok {
			vnids[id] = true
		}
	}
	if all {
		f.allVNIDs(vnids)
	}
	var errs []error
	if remote {
		errs = append(errs, f.renderRemote())
	}
	for id := range vnids {
		errs = append(errs, f.renderVNID(id, local[id]))
	}
	f.e.m.multicastVNIDs.Set(float64(len(f.enabled)))
	return errors.Join(errs...)
}

func parseVNIDKey(k string) (uint32, bool) {
	s, ok := strings.CutPrefix(k, vnidKeyPrefix)
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseUint(s, 10, 32)
	return uint32(id), err == nil
}

// localByVNID groups the local pods the pods feature rendered by VNID,
// each group in ofport order.
func (f *multicastFeature) localByVNID() map[uint32][]pipeline.PodInfo {
	out := map[uint32][]pipeline.PodInfo{}
	for _, p := range f.e.local {
		out[p.VNID] = append(out[p.VNID], p)
	}
	for _, pods := range out {
		slices.SortFunc(pods, func(a, b pipeline.PodInfo) int { return int(a.OFPort) - int(b.OFPort) })
	}
	return out
}

// changedReceivers returns the VNIDs whose local pods differ between a and b.
func changedReceivers(a, b map[uint32][]pipeline.PodInfo) map[uint32]bool {
	out := map[uint32]bool{}
	for id, pods := range b {
		if !slices.Equal(a[id], pods) {
			out[id] = true
		}
	}
	for id := range a {
		if _, ok := b[id]; !ok {
			out[id] = true
		}
	}
	return out
}

// allVNIDs adds every VNID that has a NetNamespace or flows set.
func (f *multicastFeature) allVNIDs(into map[uint32]bool) {
	for _, id := range f.netns.ListIndexFuncValues(netIDIndexName) {
		if v, err := strconv.ParseUint(id, 10, 32); err == nil {
			into[uint32(v)] = true
		}
	}
	for id := range f.enabled {
		into[id] = true
	}
}

// vnidEnabled reports whether VNID id has NetNamespaces, all of them with
// the annotation.
func (f *multicastFeature) vnidEnabled(id uint32) (bool, error) {
	objs, err := f.netns.ByIndex(netIDIndexName, strconv.FormatUint(uint64(id), 10))
	if err != nil {
		return false, err
	}
	for _, o := range objs {
		if nn, ok := o.(*networkv1.NetNamespace); !ok || !multicastRequested(nn) {
			return false, nil
		}
	}
	return len(objs) > 0, nil
}

// renderVNID sets the flows of VNID id with its local pods as receivers,
// or deletes them when the VNID is not (or no longer) enabled.
func (f *multicastFeature) renderVNID(id uint32, receivers []pipeline.PodInfo) error {
	owner := pipeline.MulticastVNIDOwner(id)
	on, err := f.vnidEnabled(id)
	if err != nil {
		f.e.mark(featureMulticast, vnidKey(id))
		return fmt.Errorf("multicast VNID %d: %w", id, err)
	}
	if !on {
		f.e.store.Delete(owner)
		delete(f.enabled, id)
		return nil
	}
	if err := f.e.set(featureMulticast, owner, pipeline.MulticastVNIDFlows(f.e.fc, id, receivers)); err != nil {
		return err
	}
	f.enabled[id] = true
	return nil
}

// renderRemote rebuilds the replication flow from every valid remote node.
func (f *multicastFeature) renderRemote() error {
	all, err := f.subnets.List(labels.Everything())
	if err != nil {
		f.e.mark(featureMulticast, keyRemote)
		return err
	}
	var ips []netip.Addr
	for _, hs := range all {
		if n, err := f.e.remoteNode(hs); err == nil {
			ips = append(ips, n.HostIP)
		}
	}
	return f.e.set(featureMulticast, pipeline.OwnerMulticastRemote, []ovs.Flow{pipeline.MulticastRemoteFlow(f.e.fc, ips)})
}
