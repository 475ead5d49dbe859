package controller

import (
	"reflect"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
)

const reasonClusterNetworkChanged = "ClusterNetworkChanged"

// clusterNetworkHandlers watch ClusterNetwork "default" while leading. The
// API server refuses updates of every field a running cluster cannot take
// (CEL rules on the CRD), but deleting and recreating the object with other
// values is still possible. The controller and the agents read it only at
// start, so such a change is not applied by anything running and would be
// applied piecemeal by whatever restarts: the controller says so, once per
// differing object, with a Warning Event and a log line, and keeps using
// the configuration it started with.
func (c *controller) clusterNetworkHandlers() cache.ResourceEventHandlerFuncs {
	check := func(obj any) {
		cn, ok := obj.(*networkv1.ClusterNetwork)
		if !ok || cn.Name != networkv1.ClusterNetworkDefault {
			return
		}
		if cfg, err := clusternetwork.Parse(cn); err == nil && reflect.DeepEqual(cfg, c.cfg) {
			return
		}
		klog.ErrorS(nil, "ClusterNetwork differs from the one this controller started with; keeping the running configuration",
			"clusterNetwork", cn.Name, "running", c.cfg.String())
		c.recorder.Eventf(cn, corev1.EventTypeWarning, reasonClusterNetworkChanged,
			"this ClusterNetwork differs from the one the running sdn-controller and nodes use (%s); nothing applies it now, and components that restart would apply it piecemeal: restore the previous values, or restart sdn-controller and every sdn-node together (and recreate pods) to change the cluster network",
			c.cfg.String())
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: check,
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*networkv1.ClusterNetwork)
			n, ok2 := newObj.(*networkv1.ClusterNetwork)
			// A new UID is a recreation the watch missed; a new generation a
			// spec change (refused today, checked anyway).
			if ok1 && ok2 && (o.UID != n.UID || o.Generation != n.Generation) {
				check(n)
			}
		},
	}
}
