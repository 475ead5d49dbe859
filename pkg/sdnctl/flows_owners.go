package sdnctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// Naming the owners of flows: every owner's cookie is pipeline.Owner.Cookie,
// so names come from what can produce owners — the flows themselves
// (singletons, VNIDs), the bridge's ports in OVSDB (pods and their
// namespaces) and the API (remote nodes, NetNamespaces).

// ownerName is a name (and detail) for an owner cookie.
type ownerName struct{ name, detail string }

// namer collects owner names from the flows, OVSDB and the API, keyed by owner cookie.
type namer struct {
	names map[uint64]ownerName
	notes io.Writer

	// ovsdbErr, apiErr (network.openshift.io) and kubeErr (Services) say why
	// a source of names was not read.
	ovsdbErr, apiErr, kubeErr error
}

func (n *namer) add(owner pipeline.Owner, name ownerName) { n.addCookie(owner.Cookie(), name) }

// addCookie names an owner cookie that is no pipeline.Owner's (learned flows).
func (n *namer) addCookie(cookie uint64, name ownerName) {
	if n.names == nil {
		n.names = map[uint64]ownerName{}
	}
	n.names[cookie&ovs.OwnerMask] = name
}

// fromFlows names what the flows themselves reveal: the pipeline owners, and the VNID of
// every namespace owner (its flows match on the VNID registers).
func (n *namer) fromFlows(flows []ovs.DumpedFlow) {
	n.add(pipeline.OwnerPipeline, ownerName{})
	n.add(pipeline.OwnerIsolation, ownerName{name: "isolation"})
	n.add(pipeline.OwnerVersion, ownerName{name: "version"})
	n.add(pipeline.OwnerServiceProxy, ownerName{name: "service proxy"})
	n.add(pipeline.OwnerMulticastRemote, ownerName{name: "remote nodes"})
	n.add(pipeline.OwnerPolicyAllowAll, ownerName{name: "allow-all"})
	n.add(pipeline.PolicyMatchOwner(""), ownerName{name: "shared matches"})
	n.add(pipeline.OwnerEgressFirewall, ownerName{name: "firewall (replies)"})
	for _, f := range flows {
		for _, vnid := range vnidsOf(f.Flow) {
			id := strconv.FormatUint(uint64(vnid), 10)
			name := ownerName{name: "vnid " + id}
			for _, o := range []pipeline.Owner{pipeline.TenantOwner(vnid), pipeline.MulticastVNIDOwner(vnid)} {
				if _, ok := n.names[o.Cookie()]; !ok {
					n.add(o, name)
				}
			}
			if _, ok := n.names[pipeline.EgressFirewallOwner(vnid).Cookie()]; !ok {
				n.add(pipeline.EgressFirewallOwner(vnid), ownerName{name: "firewall of vnid " + id})
			}
		}
	}
}

// vnidsOf returns the values f matches in or loads into the VNID registers.
func vnidsOf(f ovs.Flow) []uint32 {
	isVNID := func(r ovs.RegField) bool { return r == ovs.SrcVNIDField || r == ovs.DstVNIDField }
	var out []uint32
	for _, m := range f.Match {
		if r, ok := m.(ovs.RegMatch); ok && isVNID(r.Field) && r.Mask == ^uint32(0) {
			out = append(out, r.Value)
		}
	}
	for _, a := range f.Actions {
		if l, ok := a.(ovs.LoadReg); ok && isVNID(l.Field) {
			out = append(out, l.Value)
		}
	}
	return out
}

// bridgeOf is the bridge name behind an ovs-ofctl target: the target itself, or the
// bridge of a management socket ("unix:/run/openvswitch/br0.mgmt" → "br0"); "" when it
// cannot be told (tcp:…).
func bridgeOf(target string) string {
	if path, ok := strings.CutPrefix(target, "unix:"); ok {
		if base := filepath.Base(path); strings.HasSuffix(base, ".mgmt") {
			return strings.TrimSuffix(base, ".mgmt")
		}
		return ""
	}
	if strings.ContainsAny(target, ":/") {
		return ""
	}
	return target
}

// fromOVSDB names pods (and their namespaces' policy owners) from the external_ids of
// the bridge's ports.
func (n *namer) fromOVSDB(ctx context.Context, backend OVSBackend, endpoint, target string) {
	if endpoint == "" {
		return
	}
	bridge := bridgeOf(target)
	if bridge == "" {
		n.ovsdbErr = fmt.Errorf("cannot tell the bridge name of --ofctl-target %s", target)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	ports, err := backend.Ports(ctx, endpoint, bridge)
	if err != nil {
		n.ovsdbErr = fmt.Errorf("reading the ports of %s from %s: %w", bridge, endpoint, err)
		return
	}
	for _, p := range ports {
		ns, name := p.ExternalIDs[ovsdb.ExternalIDPodNamespace], p.ExternalIDs[ovsdb.ExternalIDPodName]
		if ns == "" || name == "" {
			continue
		}
		detail := fmt.Sprintf("port %s ofport %d", p.Name, p.OFPort)
		if ip := p.ExternalIDs[ovsdb.ExternalIDIP]; ip != "" {
			detail += ", " + ip
		}
		n.add(pipeline.PodOwner(ns, name), ownerName{name: ns + "/" + name, detail: detail})
		n.add(pipeline.PolicyNamespaceOwner(ns), ownerName{name: "namespace " + ns})
	}
}

// fromAPI names remote nodes from HostSubnets and namespaces from NetNamespaces. Without
// a usable kubeconfig or a reachable server it only records why.
func (n *namer) fromAPI(ctx context.Context, c *cli) {
	clients, err := apiClients(c)
	if err != nil {
		n.apiErr = err
		return
	}
	if clients.Network == nil {
		n.apiErr = errors.New("no network.openshift.io client")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	api := clients.Network.NetworkV1()
	subnets, err := api.HostSubnets().List(ctx, metav1.ListOptions{})
	if err != nil {
		n.apiErr = fmt.Errorf("listing hostsubnets: %w", err)
		return
	}
	for _, hs := range subnets.Items {
		name := ownerName{name: hs.Host, detail: hs.HostIP + " " + hs.Subnet}
		if name.name == "" {
			name.name = hs.Name
		}
		n.add(pipeline.NodeOwner(hs.Name, ""), name)
		if hs.UID != "" {
			n.add(pipeline.NodeOwner(hs.Name, string(hs.UID)), name)
		}
	}
	netnss, err := api.NetNamespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		n.apiErr = fmt.Errorf("listing netnamespaces: %w", err)
		return
	}
	byVNID := map[uint32][]string{}
	for _, nn := range netnss.Items {
		byVNID[nn.NetID] = append(byVNID[nn.NetID], nn.Name)
		n.add(pipeline.PolicyNamespaceOwner(nn.Name), ownerName{name: "namespace " + nn.Name})
	}
	for vnid, names := range byVNID {
		slices.Sort(names)
		n.add(pipeline.TenantOwner(vnid), ownerName{
			name: "vnid " + strconv.FormatUint(uint64(vnid), 10), detail: strings.Join(names, ", "),
		})
		n.add(pipeline.EgressFirewallOwner(vnid), ownerName{
			name: "firewall of vnid " + strconv.FormatUint(uint64(vnid), 10), detail: strings.Join(names, ", "),
		})
	}
}

// apiClients returns the invocation's API clients, or why there are none
// (without a kubeconfig, naming is skipped rather than failing the command).
func apiClients(c *cli) (*Clients, error) {
	if c.injected == nil {
		if _, err := c.RESTConfig(); err != nil {
			if clientcmd.IsEmptyConfig(err) {
				err = errors.New("no kubeconfig (pass --kubeconfig)")
			}
			return nil, err
		}
	}
	return c.Clients()
}

// name names every group it can, describes unnamed remote nodes by their flows, and
// re-sorts the groups.
func (n *namer) name(groups []*flowGroup) {
	for _, g := range groups {
		if on, ok := n.names[g.owner]; ok {
			g.named, g.name, g.detail = true, on.name, on.detail
		}
		if g.category == ovs.CookieNode && g.detail == "" {
			g.detail = remoteNodeDetail(g.flows)
		}
	}
	sortGroups(groups)
}

// remoteNodeDetail is "<hostIP> <subnet>" read from a remote node's flows: tun_src of its
// VXLAN ingress flow, nw_dst of its RemotePod flow.
func remoteNodeDetail(flows []ovs.DumpedFlow) string {
	var hostIP, subnet string
	for _, f := range flows {
		for _, m := range f.Match {
			a, ok := m.(ovs.AddrMatch)
			if !ok {
				continue
			}
			switch {
			case a.Field == "tun_src" && f.Table.ID == ovs.TableVXLANIngress.ID:
				hostIP = a.Prefix.Addr().String()
			case a.Field == "nw_dst" && f.Table.ID == ovs.TableRemotePod.ID:
				subnet = a.Prefix.String()
			}
		}
	}
	return strings.TrimSpace(hostIP + " " + subnet)
}

// reportUnnamed writes one note per kind of owner that stayed unnamed, with the reason.
func (n *namer) reportUnnamed(groups []*flowGroup) {
	unnamed := map[ovs.CookieCategory]int{}
	for _, g := range groups {
		if !g.named && g.category != 0 {
			unnamed[g.category]++
		}
	}
	reason := func(errs ...error) string {
		for _, err := range errs {
			if err != nil {
				return ": " + err.Error()
			}
		}
		return ""
	}
	for _, k := range pipeline.Categories {
		count := unnamed[k.Cookie]
		if count == 0 {
			continue
		}
		var why string
		switch k.Cookie {
		case ovs.CookiePod:
			why = reason(n.ovsdbErr)
			if why == "" {
				why = " (no port on the bridge names them: stale flows?)"
			}
		case ovs.CookieNode:
			why = reason(n.apiErr)
			if why == "" {
				why = " (no HostSubnet has their UID: deleted nodes?)"
			}
		case ovs.CookieNamespace:
			why = reason(n.apiErr)
		case ovs.CookiePolicy:
			why = reason(n.ovsdbErr, n.apiErr)
		case ovs.CookieService, ovs.CookieLearned:
			why = reason(n.kubeErr)
			if why == "" {
				why = " (no Service has their cookie: deleted Services?)"
			}
		}
		fmt.Fprintf(n.notes, "note: %s %s shown by cookie only%s\n", plural(count, k.Name+" owner"), isAre(count), why)
	}
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}
