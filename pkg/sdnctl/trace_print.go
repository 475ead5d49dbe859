package sdnctl

import (
	"fmt"
	"strings"

	"github.com/ovs-sdn/ovs-sdn/pkg/egressfirewall"
	"github.com/ovs-sdn/ovs-sdn/pkg/networkpolicy"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// Printing a traced half: its steps through the named tables, the words that
// explain the steps that decide (policy tables, drops), and its verdict.

// print writes the steps with explanations and the half's verdict.
func (t *tracer) print(nodeName string, tr *ofTrace, ex *networkpolicy.Explainer) {
	t.printWith(nodeName, tr, ex, nil)
}

// printWith is print with more words for some steps (a Service's group, DNAT, SNAT).
func (t *tracer) printWith(nodeName string, tr *ofTrace, ex *networkpolicy.Explainer, more func(traceStep) string) {
	pkt := networkpolicy.Packet{Src: t.src.ip, Dst: t.dst.ip, SrcVNID: t.src.vnid, DstVNID: t.dst.vnid, Proto: t.proto, Port: t.port}
	if w := t.wire; w != nil {
		pkt.Src, pkt.Dst, pkt.Port = w.Src, w.Dst, w.TpDst
	}
	var policyWords string
	t.fwWords = ""
	for _, s := range tr.Steps {
		if s.NoMatch {
			fmt.Fprintf(t.w, "  %-22s no match\n", s.Table.Named())
			continue
		}
		match := s.Match
		if match == "" {
			match = "*"
		}
		fmt.Fprintf(t.w, "  %-22s p%-5d %s -> %s\n", s.Table.Named(), s.Priority, match, strings.Join(s.displayActions(), ","))
		if more != nil {
			if words := more(s); words != "" {
				fmt.Fprintf(t.w, "  %-22s        %s\n", "", words)
			}
		}
		if words := t.explainStep(ex, s, pkt); words != "" {
			fmt.Fprintf(t.w, "  %-22s        %s\n", "", words)
			if _, isPolicy := networkpolicy.DirectionOf(s.Table); isPolicy {
				policyWords = words
			}
			if s.Table.ID == ovs.TableEgressFirewall.ID {
				t.fwWords = words
			}
		}
	}
	for _, n := range tr.Notes {
		fmt.Fprintf(t.w, "  note: %s\n", n)
	}
	fmt.Fprintf(t.w, "  => %s\n", t.verdictWords(nodeName, tr, policyWords))
}

// explainStep returns words for the steps that decide: policy tables and drops, and
// any flow ovs-sdn did not install (whatever its table: the agent's words for a table
// describe only the agent's flows).
func (t *tracer) explainStep(ex *networkpolicy.Explainer, s traceStep, pkt networkpolicy.Packet) string {
	if s.FlowOK && !ovs.CookieCategoryOf(s.Cookie).Known() {
		return foreignWords(s)
	}
	if d, ok := networkpolicy.DirectionOf(s.Table); ok && s.FlowOK {
		if x := ex.ExplainFlow(s.Flow, pkt); x.Kind != networkpolicy.KindNotCompiled {
			return "NetworkPolicy " + string(d) + ": " + x.String()
		}
		return staticPolicyWords(s, d)
	}
	if words := t.firewallWords(s); words != "" {
		return words
	}
	if s.FlowOK && s.Flow.IsDrop() {
		return dropWords(s)
	}
	return ""
}

// firewallWords explains the egress firewall's steps (tables 99 and 100).
func (t *tracer) firewallWords(s traceStep) string {
	switch {
	case !s.FlowOK:
		return ""
	case s.Table.ID == ovs.TableEgressFirewall.ID:
		return "EgressNetworkPolicy: " + egressfirewall.Explain(t.fw, t.src.vnid, s.Flow)
	case s.Table.ID == ovs.TableEgressPrelim.ID && ovs.CookieCategoryOf(s.Cookie) == ovs.CookiePipeline && s.Priority > 0:
		return "DNS to the node's own IP: never subject to EgressNetworkPolicy"
	}
	return ""
}

// staticPolicyWords explains the flows of tables 27/80 that pkg/node renders.
func staticPolicyWords(s traceStep, d networkpolicy.Direction) string {
	cat := ovs.CookieCategoryOf(s.Cookie)
	switch {
	case s.Priority == 0:
		return "dropped: no " + string(d) + " flow admits this packet (final drop of the table)"
	case cat == ovs.CookieNamespace:
		return "allowed: source and destination share a VNID (multitenant isolation)"
	case d == networkpolicy.Ingress && s.Priority == 300:
		return "allowed: traffic from the node gateway always reaches pods"
	case d == networkpolicy.Egress && s.Priority == 300:
		return "allowed: traffic to the service network that br0 did not load-balance is not judged here; it goes on to the host"
	case s.Priority == 200 && strings.Contains(s.Match, "+rpl"):
		return "allowed: a reply of an allowed connection"
	case s.Priority == 200 || s.Priority == 500:
		return "allowed by the isolation mode (subnet, or the global VNID 0 in multitenant)"
	case s.Priority == 50:
		return "allowed by the allow-all placeholder: the agent has not installed compiled policies for this namespace"
	}
	return ""
}

// foreignWords explains a flow ovs-sdn did not install.
func foreignWords(s traceStep) string {
	words := fmt.Sprintf("the flow is not ovs-sdn's (cookie %#x): an out-of-band edit of the bridge, which the agent's next full sync removes", s.Cookie)
	if s.Flow.IsDrop() {
		return "dropped: " + words
	}
	return words
}

// dropWords explains the drops of the other tables: a flow ovs-sdn did not
// install, or the table's own drops.
func dropWords(s traceStep) string {
	if !ovs.CookieCategoryOf(s.Cookie).Known() {
		return foreignWords(s)
	}
	why := map[uint8]string{
		ovs.TableClassifier.ID:   "not IP or ARP, or from an unexpected port",
		ovs.TableVXLANIngress.ID: "VXLAN from a host that is no known node",
		ovs.TablePodAntiSpoof.ID: "the source address does not belong to the pod on this port (anti-spoofing)",
		ovs.TableRouting.ID:      "no route for the destination",
		ovs.TableLocalPod.ID:     "no local pod has the destination address",
		ovs.TableRemotePod.ID:    "no node's subnet holds the destination address",
	}[s.Table.ID]
	if why == "" {
		why = "no flow of the table admits this packet"
	}
	return "dropped: " + why
}

func (t *tracer) verdictWords(nodeName string, tr *ofTrace, policyWords string) string {
	v := tr.Verdict
	switch v.Kind {
	case ovs.VerdictTunnel:
		to := v.TunDst.String()
		if hs, ok := t.cl.nodeByIP(v.TunDst); ok {
			to = "node " + hs.Host + " (" + v.TunDst.String() + ")"
		}
		return fmt.Sprintf("sent through the VXLAN tunnel to %s with VNID %d", to, v.TunID)
	case ovs.VerdictOutput:
		switch {
		case v.Port == pipeline.OFPortTun0 && t.fwWords != "":
			return "leaves the cluster network through tun0 (the node's routing and SNAT); " + t.fwWords
		case v.Port == pipeline.OFPortTun0:
			return "delivered to tun0 (the host: services, or traffic leaving the cluster)"
		case t.dst.pod != nil && t.dst.node == nodeName:
			return fmt.Sprintf("delivered to pod %s (ofport %d) on %s", t.dst.name(), v.Port, nodeName)
		}
		return fmt.Sprintf("output to ofport %d", v.Port)
	}
	s := "dropped in " + v.Table.Named() + " on " + nodeName
	if len(tr.Steps) > 0 {
		last := tr.Steps[len(tr.Steps)-1]
		if _, isPolicy := networkpolicy.DirectionOf(last.Table); isPolicy && policyWords != "" {
			s += ": " + policyWords
		} else if last.Table.ID == ovs.TableEgressFirewall.ID && t.fwWords != "" {
			s += ": " + t.fwWords
		} else if last.FlowOK {
			s += ": " + strings.TrimPrefix(dropWords(last), "dropped: ")
		}
	}
	return s
}
