package sdnctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ovs-sdn/ovs-sdn/pkg/networkpolicy"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// policyFlows selects the flows of one NetworkPolicy from a dump of the policy flows,
// through the compiler's explanation of the cluster as the API shows it.
type policyFlows struct {
	namespace, name, node string
	explainer             *networkpolicy.Explainer
	// localPods is how many pods of the namespace the API places on the node.
	localPods int
}

// loadPolicy reads the policy and what the compiler needs from the API, for the node
// --node names (default $NODE_NAME, else the hostname); it fails clearly without the API
// and with the server's NotFound for an unknown policy.
func (o *flowsOptions) loadPolicy(ctx context.Context, c *cli, ns, name string) (*policyFlows, error) {
	if c.injected == nil {
		if _, err := c.RESTConfig(); err != nil {
			if clientcmd.IsEmptyConfig(err) {
				return nil, errors.New("--policy needs the API server to compile the namespace's NetworkPolicies: no kubeconfig (pass --kubeconfig)")
			}
			return nil, fmt.Errorf("--policy needs the API server to compile the namespace's NetworkPolicies: %w", err)
		}
	}
	clients, err := c.Clients()
	if err != nil {
		return nil, err
	}
	if clients.Kube == nil || clients.Network == nil {
		return nil, errors.New("--policy needs the Kubernetes and network.openshift.io APIs")
	}
	if _, err := clients.Kube.NetworkingV1().NetworkPolicies(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
		return nil, err
	}
	v, err := loadAPIView(ctx, c, "--policy")
	if err != nil {
		return nil, err
	}
	nodeName := o.node
	if nodeName == "" {
		nodeName = os.Getenv("NODE_NAME")
	}
	if nodeName == "" {
		nodeName, _ = os.Hostname()
	}
	hs, ok := v.subnet(nodeName)
	if !ok {
		return nil, fmt.Errorf("--policy compiles the policies for one node, and no HostSubnet names node %q: pass --node NAME, the node whose bridge --ofctl-target reaches", nodeName)
	}
	nodeName = hs.Host
	o.node = nodeName
	// The node's pod ports, as its agent reads them; without OVSDB the
	// pods' status addresses stand in.
	local, err := o.localIPs(ctx, c)
	if err != nil {
		fmt.Fprintf(c.opts.ErrOut, "note: compiling with the pods' status addresses: %v\n", err)
	}
	p := &policyFlows{namespace: ns, name: name, node: nodeName, explainer: v.explainer(nodeName, local)}
	for _, pod := range v.pods {
		if pod.Namespace == ns && pod.Spec.NodeName == nodeName {
			p.localPods++
		}
	}
	return p, nil
}

// selectFlows keeps the flows of the policy and labels each (by Key) with the rules it
// renders or the pods it isolates. It notes on notes the namespace's allow flows that no
// current rule explains (stale flows, or the wrong node).
func (p *policyFlows) selectFlows(flows []ovs.DumpedFlow, notes io.Writer) ([]ovs.DumpedFlow, map[string]string) {
	nsOwner := pipeline.PolicyNamespaceOwner(p.namespace).Cookie()
	shared := pipeline.PolicyMatchOwner("").Cookie()
	labels := map[string]string{}
	var out []ovs.DumpedFlow
	nsFlows, unexplained := 0, 0
	for _, f := range flows {
		owner := f.Cookie & ovs.OwnerMask
		if owner != nsOwner && owner != shared {
			continue
		}
		if owner == nsOwner {
			nsFlows++
		}
		all := p.explainer.FlowRules(f.Flow)
		var refs []string
		for _, r := range all {
			if r.Namespace == p.namespace && r.Policy == p.name {
				refs = append(refs, fmt.Sprintf("%s[%d]", r.Direction, r.Index))
			}
		}
		if len(refs) > 0 {
			out = append(out, f)
			labels[f.Key()] = strings.Join(refs, ", ")
			continue
		}
		if owner != nsOwner {
			continue
		}
		if len(all) == 0 && isCompiledAllow(f.Flow) {
			unexplained++
			continue
		}
		d, ok := networkpolicy.DirectionOf(f.Table)
		if !ok || f.Priority != networkpolicy.PriorityNamespace || !f.IsDrop() {
			continue
		}
		if pods, ok := p.explainer.Selected(p.namespace, p.name, d); ok && len(pods) > 0 {
			out = append(out, f)
			labels[f.Key()] = "isolates " + listPods(pods)
		}
	}
	if nsFlows > 0 && p.localPods == 0 {
		fmt.Fprintf(notes, "note: the bridge has policy flows of namespace %s, but the API has none of its pods on node %s: is --node right?\n", p.namespace, p.node)
	} else if unexplained > 0 {
		fmt.Fprintf(notes, "note: %s of namespace %s %s explained by no current NetworkPolicy rule (stale flows, or --node is wrong)\n",
			plural(unexplained, "allow flow"), p.namespace, isAre(unexplained))
	}
	return out, labels
}

// isCompiledAllow reports whether f is a flow the compiler renders for a rule: a plain
// allow, a conj_id flow or a clause with conjunction actions.
func isCompiledAllow(f ovs.Flow) bool {
	if f.Priority == networkpolicy.PriorityPlainAllow {
		return true
	}
	for _, m := range f.Match {
		if _, ok := m.(ovs.ConjID); ok {
			return true
		}
	}
	return slices.ContainsFunc(f.Actions, func(a ovs.Action) bool { _, ok := a.(ovs.Conjunction); return ok })
}

// listPods is "a, b, c" or, for more than maxListedPods, the first ones and a count.
func listPods(pods []string) string {
	const maxListedPods = 5
	if len(pods) <= maxListedPods {
		return strings.Join(pods, ", ")
	}
	return fmt.Sprintf("%s, … (%d pods)", strings.Join(pods[:maxListedPods], ", "), len(pods))
}

// localIPs reads the node's pod ports from --ovsdb; nil without it.
func (o *flowsOptions) localIPs(ctx context.Context, c *cli) (map[string]netip.Addr, error) {
	if o.ovsdb == "" {
		return nil, errors.New("no --ovsdb")
	}
	bridge := bridgeOf(o.ofctlTarget)
	if bridge == "" {
		return nil, fmt.Errorf("cannot tell the bridge name of --ofctl-target %s", o.ofctlTarget)
	}
	return localIPs(ctx, c.ovsBackend(), o.ovsdb, bridge)
}
