package controller

import (
	"errors"
	"net/netip"
	"strconv"

	"k8s.io/klog/v2"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/subnet"
	"github.com/ovs-sdn/ovs-sdn/pkg/vnid"
)

// rebuild marks every subnet and netid recorded in the caches as allocated.
// It runs after the caches have synced and before any reconciler, so no
// allocation can hand out something the API already holds.
func (c *controller) rebuild() {
	hostSubnets, _ := c.hostSubnets.List(everything)
	for _, hs := range hostSubnets {
		c.markSubnet(hs)
	}
	if !c.cfg.Mode.UsesVNIDs() {
		return
	}
	netNamespaces, _ := c.netNamespaces.List(everything)
	for _, netns := range netNamespaces {
		c.markVNID(netns)
	}
}

// markSubnet records hs's subnet as allocated. Subnets that are empty,
// unparsable or outside the cluster networks are skipped (the HostSubnet
// reconciler replaces them); marking twice is harmless.
func (c *controller) markSubnet(hs *networkv1.HostSubnet) {
	if hs.Subnet == "" {
		return
	}
	p, err := netip.ParsePrefix(hs.Subnet)
	if err == nil {
		err = c.subnets.MarkAllocated(p.Masked())
	}
	if err != nil && !errors.Is(err, subnet.ErrAlreadyAllocated) {
		klog.V(2).InfoS("HostSubnet subnet is not a node subnet of the cluster networks", "hostSubnet", hs.Name, "subnet", hs.Subnet, "err", err)
	}
}

// releaseSubnetIfUnused frees s unless another cached HostSubnet still holds
// it, then lets Nodes waiting for a subnet try again.
func (c *controller) releaseSubnetIfUnused(s string) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return
	}
	p = p.Masked()
	if holders, _ := c.hostSubnetIndex.ByIndex(subnetIndex, p.String()); len(holders) > 0 {
		return
	}
	if !c.subnets.IsAllocated(p) {
		return
	}
	if err := c.subnets.Release(p); err != nil {
		klog.V(2).InfoS("Subnet not released", "subnet", p, "err", err)
		return
	}
	klog.InfoS("Released node subnet", "subnet", p, "allocated", c.subnets.Allocated())
	c.requeueNodesWithoutSubnet()
}

// requeueNodesWithoutSubnet enqueues every Node without a HostSubnet and
// every pending assign-subnet HostSubnet, so that a freed subnet is handed
// out at once instead of after the retry backoff.
func (c *controller) requeueNodesWithoutSubnet() {
	nodes, _ := c.nodes.List(everything)
	for _, n := range nodes {
		if _, err := c.hostSubnets.Get(n.Name); err != nil {
			c.hostSubnetQueue.add(n.Name)
		}
	}
	hostSubnets, _ := c.hostSubnets.List(everything)
	for _, hs := range hostSubnets {
		if _, ok := hs.Annotations[networkv1.AssignHostSubnetAnnotation]; ok {
			c.hostSubnetQueue.add(hs.Name)
		}
	}
}

// markVNID records netns's netid as allocated (ids below vnid.MinVNID are
// global or reserved and never allocated).
func (c *controller) markVNID(netns *networkv1.NetNamespace) {
	if netns.NetID < vnid.MinVNID {
		return
	}
	if err := c.vnids.Mark(netns.NetID); err != nil && !errors.Is(err, vnid.ErrAlreadyAllocated) {
		klog.V(2).InfoS("NetNamespace netid not marked", "netNamespace", netns.Name, "netid", netns.NetID, "err", err)
	}
}

// vnidHolders returns the names of cached NetNamespaces with netid id.
func (c *controller) vnidHolders(id uint32) []string {
	objs, _ := c.netNamespaceIdx.ByIndex(netidIndex, strconv.FormatUint(uint64(id), 10))
	names := make([]string, 0, len(objs))
	for _, o := range objs {
		if netns, ok := o.(*networkv1.NetNamespace); ok {
			names = append(names, netns.Name)
		}
	}
	return names
}

// releaseVNIDIfUnused frees id when no cached NetNamespace uses it any more
// (VNIDs are shared in multitenant mode, so they are reference-counted by
// scanning the cache), then lets Namespaces waiting for a VNID try again.
func (c *controller) releaseVNIDIfUnused(id uint32) {
	if id < vnid.MinVNID {
		return // 0 (global) and the reserved ids are never released
	}
	c.vnidMu.Lock()
	released := len(c.vnidHolders(id)) == 0 && c.vnids.Has(id)
	if released {
		if err := c.vnids.Release(id); err != nil {
			klog.V(2).InfoS("VNID not released", "netid", id, "err", err)
			released = false
		}
	}
	c.vnidMu.Unlock()
	if released {
		klog.InfoS("Released VNID", "netid", id, "allocated", c.vnids.Allocated())
		c.requeueNamespacesWithoutVNID()
	}
}

func (c *controller) requeueNamespacesWithoutVNID() {
	namespaces, _ := c.namespaces.List(everything)
	for _, ns := range namespaces {
		if _, err := c.netNamespaces.Get(ns.Name); err != nil {
			c.netNamespaceQueue.add(ns.Name)
		}
	}
}
