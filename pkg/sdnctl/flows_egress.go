package sdnctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ovs-sdn/ovs-sdn/pkg/egressfirewall"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// egressFlows is `sdnctl flows --egress-firewall NS`: the table-100 flows of the
// namespace's VNID (owner EgressFirewallOwner), each labelled with the rule the agents'
// decision renders at its priority.
type egressFlows struct {
	namespace string
	vnid      uint32
	decision  egressfirewall.Decision
	decided   bool // the VNID has a decision (a policy)
	decisions map[uint32]egressfirewall.Decision
}

// egressQuery validates --egress-firewall; the cookie filter waits for the VNID.
func (o *flowsOptions) egressQuery(cmdPath string, q flowsQuery) (flowsQuery, error) {
	switch {
	case strings.Contains(o.egressFW, "/"):
		return q, usageErrorf(cmdPath, "--egress-firewall takes a NAMESPACE, got %q", o.egressFW)
	case o.pod != "" || o.policy != "":
		return q, usageErrorf(cmdPath, "--egress-firewall cannot be combined with --pod or --policy")
	case o.owner != "" && !strings.EqualFold(o.owner, "egress"):
		return q, usageErrorf(cmdPath, "--egress-firewall selects egress flows; it cannot be combined with --owner %s", o.owner)
	}
	q.egressNS = o.egressFW
	q.description = append(q.description, "egress firewall of namespace "+o.egressFW)
	return q, nil
}

// loadEgressFirewall reads the namespace's VNID and every EgressNetworkPolicy and
// NetNamespace, and decides as the agents do.
func (o *flowsOptions) loadEgressFirewall(ctx context.Context, c *cli, ns string) (*egressFlows, error) {
	if c.injected == nil {
		if _, err := c.RESTConfig(); err != nil {
			if clientcmd.IsEmptyConfig(err) {
				return nil, errors.New("--egress-firewall needs the API server for the namespace's VNID and EgressNetworkPolicies: no kubeconfig (pass --kubeconfig)")
			}
			return nil, fmt.Errorf("--egress-firewall needs the API server: %w", err)
		}
	}
	clients, err := c.Clients()
	if err != nil {
		return nil, err
	}
	if clients.Network == nil {
		return nil, errors.New("--egress-firewall needs the network.openshift.io API")
	}
	nns, err := clients.Network.NetworkV1().NetNamespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	enps, err := listEgressPolicies(ctx, clients)
	if err != nil {
		return nil, err
	}
	v := &apiView{egressPolicies: enps}
	e := &egressFlows{namespace: ns}
	found := false
	for i := range nns.Items {
		nn := &nns.Items[i]
		v.netNamespaces = append(v.netNamespaces, nn)
		if nn.NetName == ns || nn.NetName == "" && nn.Name == ns {
			e.vnid, found = nn.NetID, true
		}
	}
	if !found {
		return nil, fmt.Errorf("namespace %s has no NetNamespace (VNID): no egress firewall flows can exist for it", ns)
	}
	e.decisions = v.egressDecisions()
	e.decision, e.decided = e.decisions[e.vnid]
	return e, nil
}

// ownerName names the VNID's owner block.
func (e *egressFlows) ownerName() string {
	return "firewall of vnid " + strconv.FormatUint(uint64(e.vnid), 10)
}

// label labels each flow with its rule and notes on notes what the VNID's decision is
// when it is not the plain enforcement of one policy.
func (e *egressFlows) label(flows []ovs.DumpedFlow, notes io.Writer) map[string]string {
	switch {
	case !e.decided:
		fmt.Fprintf(notes, "note: no EgressNetworkPolicy applies to VNID %d (namespace %s)\n", e.vnid, e.namespace)
	case e.decision.Kind != egressfirewall.KindEnforced:
		fmt.Fprintf(notes, "note: VNID %d: %s\n", e.vnid, e.decision.Message)
	default:
		p, _ := e.decision.Policy()
		fmt.Fprintf(notes, "note: VNID %d enforces EgressNetworkPolicy %s (%d rules; rule i of n at priority n-i)\n", e.vnid, p.Key(), len(p.Rules))
	}
	labels := map[string]string{}
	for _, f := range flows {
		if _, r, ok := egressfirewall.RuleOf(e.decisions, f.Flow); ok {
			labels[f.Key()] = r.String()
		} else if e.decision.Kind == egressfirewall.KindDropAll && f.Priority == egressfirewall.PriorityDropAll {
			labels[f.Key()] = "drop all: " + e.decision.Reason
		} else {
			labels[f.Key()] = "no current rule (stale)"
		}
	}
	return labels
}
