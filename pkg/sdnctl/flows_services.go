package sdnctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// Services in `sdnctl flows`: --service, the OpenFlow groups a block's flows
// use (a Service's select groups, one per port and kind of traffic), and
// the names of Service owners from the API.

// affinityCookie selects the flows that the learn actions of a Service's
// sessionAffinity buckets install in ServiceAffinity: pkg/proxy gives them
// the learned category and the Service owner's key (its learn's cookie).
// They belong to no owner of the agent (OVS installs them), so sdnctl shows
// them apart, under "learned". TestAffinityCookieIsTheRenderers keeps this
// in step with pkg/proxy.
func affinityCookie(namespace, name string) ovs.CookieMatch {
	return ovs.MatchOwner(ovs.CookieLearned, pipeline.ServiceOwner(namespace, name).String())
}

// usedGroups returns the IDs of the groups flows send packets to, in first
// use order, once each.
func usedGroups(flows []ovs.DumpedFlow) []uint32 {
	var ids []uint32
	for _, f := range flows {
		ids = appendGroupRefs(ids, f.Actions)
	}
	return ids
}

func appendGroupRefs(ids []uint32, actions []ovs.Action) []uint32 {
	for _, a := range actions {
		if g, ok := a.(ovs.Group); ok && !slices.Contains(ids, g.ID) {
			ids = append(ids, g.ID)
		}
	}
	return ids
}

// attachGroups gives every block the groups its flows use, and the groups
// those groups' buckets use, read from the bridge once, and returns how
// many distinct groups the blocks use. The bridge is asked only when some
// flow uses a group; when it cannot be read, a note says why and the
// blocks are shown without groups.
func attachGroups(ctx context.Context, backend OVSBackend, target string, blocks []*flowGroup, notes io.Writer) int {
	used := map[*flowGroup][]uint32{}
	for _, g := range blocks {
		if ids := usedGroups(g.flows); len(ids) > 0 {
			used[g] = ids
		}
	}
	if len(used) == 0 {
		return 0
	}
	all, err := dumpGroups(ctx, backend, target)
	if err != nil {
		fmt.Fprintf(notes, "note: the flows use OpenFlow groups, not shown: %v\n", err)
		return 0
	}
	byID := map[uint32]ovs.GroupEntry{}
	for _, e := range all {
		byID[e.ID] = e
	}
	distinct := map[uint32]bool{}
	for g, ids := range used {
		// Buckets may use groups too: follow them (IDs appended while iterating).
		for i := 0; i < len(ids); i++ {
			distinct[ids[i]] = true
			e, ok := byID[ids[i]]
			if !ok {
				g.missingGroups = append(g.missingGroups, ids[i])
				continue
			}
			g.groups = append(g.groups, e)
			for _, b := range e.Buckets {
				ids = appendGroupRefs(ids, b.Actions)
			}
		}
	}
	return len(distinct)
}

// fromServices names Service owners ("proj1/web", with the ClusterIP) and
// their learned affinity flows from the Services the API lists. Without the
// API it only records why.
func (n *namer) fromServices(ctx context.Context, c *cli) {
	clients, err := apiClients(c)
	if err == nil && clients.Kube == nil {
		err = errors.New("no Kubernetes client")
	}
	if err != nil {
		n.kubeErr = err
		return
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	svcs, err := clients.Kube.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		n.kubeErr = fmt.Errorf("listing services: %w", err)
		return
	}
	for _, s := range svcs.Items {
		n.nameService(s.Namespace, s.Name, s.Spec.ClusterIP)
	}
}

// nameService names the owner of a Service's flows and its learned flows.
func (n *namer) nameService(namespace, name, clusterIP string) {
	id := namespace + "/" + name
	n.add(pipeline.ServiceOwner(namespace, name), ownerName{name: id, detail: clusterIP})
	n.addCookie(affinityCookie(namespace, name).Cookie, ownerName{name: "service " + id, detail: "session affinity"})
}
