package sdnctl

import (
	"fmt"
	"net/netip"
	"strings"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/egressip"
)

// egressWords explains how traffic from src leaves the cluster towards an
// address outside it (SPEC §4.7): with the node's own address (no egress
// IP requested), with an egress IP through the node holding it (balanced
// per connection over several; only the local one when src's node holds
// one), or not at all (requested, none active, with the reasons). It
// evaluates the API objects as the agents do (egressip.Evaluate), so it
// says what the flows should do, and is pure.
func egressWords(src endpoint, subnets []networkv1.HostSubnet, netnss []*networkv1.NetNamespace) []string {
	if src.pod == nil {
		return nil
	}
	hss := make([]*networkv1.HostSubnet, len(subnets))
	for i := range subnets {
		hss[i] = &subnets[i]
	}
	nodes, nss := egressip.FromAPI(hss, netnss)
	st := egressip.Evaluate(nodes, nss)
	eg := st.Egress[src.vnid]
	if eg == nil {
		return []string{fmt.Sprintf("egress: VNID %d requests no egress IP: the packet leaves through tun0 of node %s with the node's address as source (SNAT)",
			src.vnid, src.node)}
	}
	if len(eg.Active) == 0 {
		out := []string{fmt.Sprintf("egress IP: VNID %d (%s) requests %s but none is active: traffic leaving the cluster is dropped in table 101 (never sent with the node's address)",
			src.vnid, strings.Join(eg.Namespaces, ", "), addrList(eg.Requested))}
		for _, p := range st.Problems {
			if overlaps(p.IPs, eg.Requested) {
				out = append(out, "  "+p.Message())
			}
		}
		return out
	}
	for _, a := range eg.Active {
		if a.Node == src.node {
			return []string{fmt.Sprintf("egress IP: source %s, SNATed in br0 on node %s itself and sent to tun0 (the pod's node holds one of VNID %d's egress IPs)",
				a.IP, a.Node, src.vnid)}
		}
	}
	via := make([]string, len(eg.Active))
	for i, a := range eg.Active {
		via[i] = fmt.Sprintf("source %s via node %s (%s)", a.IP, a.Node, a.HostIP)
	}
	how := "tunnelled with VNID %d to the egress node, which SNATs it: %s"
	if len(via) > 1 {
		how = "tunnelled with VNID %d to one egress node per connection (select group), which SNATs it: %s"
	}
	return []string{"egress IP: " + fmt.Sprintf(how, src.vnid, strings.Join(via, " or "))}
}

func addrList(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ", ")
}

func overlaps(a, b []netip.Addr) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}
