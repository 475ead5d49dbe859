package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// SwitchPort is one port of br0 as read from OVSDB.
type SwitchPort struct {
	Name        string
	OFPort      int
	ExternalIDs map[string]string
}

// podFromPort returns the local pod a port carries, or false if the port is
// not a pod port (vxlan0, tun0, a port without pod external_ids, or one
// without a usable ofport yet). The CNI server writes the external_ids
// (ovsdb.ExternalID*) on a pod's OVS Interface; the agent rebuilds its local
// pods from them, so pods survive an agent or OVS restart without any other
// record.
func podFromPort(p SwitchPort) (pipeline.PodInfo, bool) {
	ns, name := p.ExternalIDs[ovsdb.ExternalIDPodNamespace], p.ExternalIDs[ovsdb.ExternalIDPodName]
	ip, err := netip.ParseAddr(p.ExternalIDs[ovsdb.ExternalIDIP])
	if ns == "" || name == "" || err != nil || !ip.Is4() || p.OFPort < int(pipeline.FirstPodOFPort) {
		return pipeline.PodInfo{}, false
	}
	return pipeline.PodInfo{Namespace: ns, Name: name, IP: ip, OFPort: uint32(p.OFPort)}, true
}

// Keys of the pods feature.
const (
	keyPorts = "ports" // br0's ports changed in OVSDB: list them again
	keyVNIDs = "vnids" // a namespace's VNID changed
	keyCNI   = "cni"   // a CNI call recorded or removed a port
)

// podsFeature renders the five flows of every local pod (owner
// pipeline.PodOwner) from br0's pod ports merged with the CNI server's
// calls (localPods, pods.go), with the current VNIDs, and publishes the
// rendered pods in env.local for the features after it. A pod whose
// namespace has no VNID yet gets no flows (it is isolated, never given the
// wrong VNID); it is rendered again when its NetNamespace arrives.
type podsFeature struct{ e *env }

func (*podsFeature) name() string          { return featurePods }
func (*podsFeature) stage() pipeline.Stage { return pipeline.StagePods }

func (f *podsFeature) start(context.Context, *env) ([]cache.InformerSynced, error) { return nil, nil }

func (f *podsFeature) render(ctx context.Context, keys []string, all bool) error {
	if all || containsKey(keys, keyPorts) {
		ports, err := f.e.db.Ports(ctx, pipeline.BridgeName)
		if err != nil {
			f.e.mark(featurePods, keyPorts)
			return fmt.Errorf("list pod ports: %w", err)
		}
		f.e.pods.setListed(ports)
	}
	return f.renderPorts(f.e.pods.merged())
}

func containsKey(keys []string, k string) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}

// renderPorts makes the pod flows equal the pods of ports.
func (f *podsFeature) renderPorts(ports []SwitchPort) error {
	next := map[string]pipeline.PodInfo{}
	for _, p := range ports {
		pod, ok := podFromPort(p)
		if !ok {
			continue
		}
		if f.e.iso.UsesVNIDs() {
			id, ok := f.e.vnids.Get(pod.Namespace)
			if !ok {
				f.e.m.vnidNotFound.Inc()
				klog.InfoS("No VNID yet for a local pod's namespace; pod isolated until its NetNamespace arrives", "namespace", pod.Namespace)
				continue
			}
			pod.VNID = id
		}
		next[pipeline.PodOwner(pod.Namespace, pod.Name).String()] = pod
	}
	changed := false
	for key, pod := range f.e.local {
		if _, ok := next[key]; !ok {
			f.e.store.Delete(pipeline.PodOwner(pod.Namespace, pod.Name))
			changed = true
		}
	}
	var errs []error
	prev := f.e.local
	f.e.local = map[string]pipeline.PodInfo{}
	for key, pod := range next {
		if prev[key] == pod {
			// Unchanged (e.g. a port a CNI ADD already rendered): PodFlows
			// depends on PodInfo and the config only, so the store holds them.
			f.e.local[key] = pod
			continue
		}
		changed = true
		if err := f.e.set(featurePods, pipeline.PodOwner(pod.Namespace, pod.Name), pipeline.PodFlows(f.e.fc, pod)); err != nil {
			errs = append(errs, err)
			continue
		}
		f.e.local[key] = pod
	}
	if changed {
		f.e.mark(featureIsolation, keyLocalPods)
		f.e.mark(featureNetworkPolicy, keyLocalPods)
		f.e.mark(featureMulticast, keyLocalPods)
	}
	return errors.Join(errs...)
}
