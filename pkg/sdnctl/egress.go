package sdnctl

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/egressfirewall"
)

// The egress firewall as the API shows it: sdnctl decides each VNID's
// egress firewall with the agents' own conversion and decisions
// (pkg/egressfirewall) and explains table-100 flows from them; the
// addresses of dnsName rules are the ones on the node's flows, never
// resolved again here.

// listEgressPolicies lists every EgressNetworkPolicy.
func listEgressPolicies(ctx context.Context, clients *Clients) ([]*networkv1.EgressNetworkPolicy, error) {
	list, err := clients.Network.NetworkV1().EgressNetworkPolicies("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]*networkv1.EgressNetworkPolicy, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

// egressDecisions decides every VNID's egress firewall, as the agents do.
func (v *apiView) egressDecisions() map[uint32]egressfirewall.Decision {
	return egressfirewall.Evaluate(egressfirewall.BuildInput(v.egressPolicies, v.netNamespaces))
}
