package controller

import (
	"fmt"
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
)

// Cache indexes: HostSubnets by normalised subnet, NetNamespaces by netid.
// They answer "who else holds this allocation?" without a full scan.
const (
	subnetIndex = "subnet"
	netidIndex  = "netid"
)

var everything = labels.Everything()

// setupInformers creates the informers, their indexes and event handlers.
// Handlers only enqueue names and keep the allocators in line with what
// the API holds (mark on add/update, release on delete/renumber); all
// decisions are taken by the reconcilers.
func (c *controller) setupInformers() error {
	nodeInf := c.kubeInformers.Core().V1().Nodes()
	hsInf := c.networkInformers.Network().V1().HostSubnets()
	c.nodes, c.hostSubnets = nodeInf.Lister(), hsInf.Lister()
	c.hostSubnetIndex = hsInf.Informer().GetIndexer()
	if err := hsInf.Informer().AddIndexers(cache.Indexers{subnetIndex: indexBySubnet}); err != nil {
		return fmt.Errorf("hostsubnet informer: %w", err)
	}
	if _, err := nodeInf.Informer().AddEventHandler(c.nodeHandlers()); err != nil {
		return fmt.Errorf("node informer: %w", err)
	}
	if _, err := hsInf.Informer().AddEventHandler(c.hostSubnetHandlers()); err != nil {
		return fmt.Errorf("hostsubnet informer: %w", err)
	}
	cnInf := c.networkInformers.Network().V1().ClusterNetworks()
	if _, err := cnInf.Informer().AddEventHandler(c.clusterNetworkHandlers()); err != nil {
		return fmt.Errorf("clusternetwork informer: %w", err)
	}
	c.informersSynced = []cache.InformerSynced{nodeInf.Informer().HasSynced, hsInf.Informer().HasSynced, cnInf.Informer().HasSynced}
	if err := c.setupEgressFirewall(); err != nil {
		return err
	}
	if !c.cfg.Mode.UsesVNIDs() {
		return nil // subnet mode: no NetNamespaces are managed
	}
	nsInf := c.kubeInformers.Core().V1().Namespaces()
	netnsInf := c.networkInformers.Network().V1().NetNamespaces()
	c.namespaces, c.netNamespaces = nsInf.Lister(), netnsInf.Lister()
	c.netNamespaceIdx = netnsInf.Informer().GetIndexer()
	if err := netnsInf.Informer().AddIndexers(cache.Indexers{netidIndex: indexByNetID}); err != nil {
		return fmt.Errorf("netnamespace informer: %w", err)
	}
	if _, err := nsInf.Informer().AddEventHandler(c.namespaceHandlers()); err != nil {
		return fmt.Errorf("namespace informer: %w", err)
	}
	if _, err := netnsInf.Informer().AddEventHandler(c.netNamespaceHandlers()); err != nil {
		return fmt.Errorf("netnamespace informer: %w", err)
	}
	c.informersSynced = append(c.informersSynced, nsInf.Informer().HasSynced, netnsInf.Informer().HasSynced)
	if c.cfg.Mode != clusternetwork.ModeNetworkPolicy {
		return nil
	}
	npInf := c.kubeInformers.Networking().V1().NetworkPolicies()
	c.networkPolicies = npInf.Lister()
	if _, err := npInf.Informer().AddEventHandler(c.networkPolicyHandlers()); err != nil {
		return fmt.Errorf("networkpolicy informer: %w", err)
	}
	c.informersSynced = append(c.informersSynced, npInf.Informer().HasSynced)
	return nil
}

// networkPolicyHandlers enqueue a policy when it appears, goes or its spec
// changes (a new generation); metadata-only updates are ignored.
func (c *controller) networkPolicyHandlers() cache.ResourceEventHandlerFuncs {
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.policyQueue.add(key)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue,
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*networkingv1.NetworkPolicy)
			n, ok2 := newObj.(*networkingv1.NetworkPolicy)
			if ok1 && ok2 && o.Generation != n.Generation {
				enqueue(n)
			}
		},
		DeleteFunc: enqueue,
	}
}

func indexBySubnet(obj any) ([]string, error) {
	hs, ok := obj.(*networkv1.HostSubnet)
	if !ok {
		return nil, nil
	}
	if p, err := netip.ParsePrefix(hs.Subnet); err == nil {
		return []string{p.Masked().String()}, nil
	}
	return nil, nil
}

func indexByNetID(obj any) ([]string, error) {
	if netns, ok := obj.(*networkv1.NetNamespace); ok {
		return []string{strconv.FormatUint(uint64(netns.NetID), 10)}, nil
	}
	return nil, nil
}

// tombstone unwraps a DeletedFinalStateUnknown.
func tombstone[T any](obj any) (T, bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	t, ok := obj.(T)
	return t, ok
}

func (c *controller) nodeHandlers() cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if n, ok := tombstone[*corev1.Node](obj); ok {
				c.hostSubnetQueue.add(n.Name)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*corev1.Node)
			n, ok2 := newObj.(*corev1.Node)
			// Only the InternalIP and the UID matter to the HostSubnet.
			if ok1 && ok2 && (internalIPString(o) != internalIPString(n) || o.UID != n.UID) {
				c.hostSubnetQueue.add(n.Name)
			}
		},
		DeleteFunc: func(obj any) {
			if n, ok := tombstone[*corev1.Node](obj); ok {
				c.hostSubnetQueue.add(n.Name)
			}
		},
	}
}

func (c *controller) hostSubnetHandlers() cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if hs, ok := tombstone[*networkv1.HostSubnet](obj); ok {
				c.markSubnet(hs)
				c.hostSubnetQueue.add(hs.Name)
				c.conflictQueue.add(conflictsKey)
				c.egressQueue.add(egressKey)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*networkv1.HostSubnet)
			n, ok2 := newObj.(*networkv1.HostSubnet)
			if !ok1 || !ok2 {
				return
			}
			c.markSubnet(n)
			if o.Subnet != n.Subnet {
				c.releaseSubnetIfUnused(o.Subnet)
			}
			c.hostSubnetQueue.add(n.Name)
			c.conflictQueue.add(conflictsKey)
			c.egressQueue.add(egressKey)
		},
		DeleteFunc: func(obj any) {
			if hs, ok := tombstone[*networkv1.HostSubnet](obj); ok {
				c.releaseSubnetIfUnused(hs.Subnet)
				c.hostSubnetQueue.add(hs.Name)
				c.conflictQueue.add(conflictsKey)
				c.egressQueue.add(egressKey)
			}
		},
	}
}

func (c *controller) namespaceHandlers() cache.ResourceEventHandlerFuncs {
	enqueue := func(obj any) {
		if ns, ok := tombstone[*corev1.Namespace](obj); ok {
			c.netNamespaceQueue.add(ns.Name)
		}
	}
	return cache.ResourceEventHandlerFuncs{AddFunc: enqueue, DeleteFunc: enqueue}
}

func (c *controller) netNamespaceHandlers() cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if netns, ok := tombstone[*networkv1.NetNamespace](obj); ok {
				c.markVNID(netns)
				c.netNamespaceQueue.add(netns.Name)
				c.egressQueue.add(egressKey)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*networkv1.NetNamespace)
			n, ok2 := newObj.(*networkv1.NetNamespace)
			if !ok1 || !ok2 {
				return
			}
			c.markVNID(n)
			if o.NetID != n.NetID {
				c.releaseVNIDIfUnused(o.NetID)
			}
			c.netNamespaceQueue.add(n.Name)
			c.egressQueue.add(egressKey)
		},
		DeleteFunc: func(obj any) {
			if netns, ok := tombstone[*networkv1.NetNamespace](obj); ok {
				c.releaseVNIDIfUnused(netns.NetID)
				c.netNamespaceQueue.add(netns.Name)
				c.egressQueue.add(egressKey)
			}
		},
	}
}
