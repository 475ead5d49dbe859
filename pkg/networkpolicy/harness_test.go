package networkpolicy

import (
	"net/netip"
	"testing"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// The test harness wraps compiled flows in a minimal pipeline: the static
// networkpolicy flows of tables 27 and 80 exactly as pkg/node renders them,
// entry flows that jump straight to 27 (in_port=10) or 80 (in_port=20), an
// "egress passed" marker in table 30 (output:1000), a final flow in every
// table and the version note, so ovs.ValidatePipeline and ovs.TraceFlows
// accept it.
var (
	svcCIDR               = netip.MustParsePrefix("172.30.0.0/16")
	gateway               = netip.MustParseAddr("10.128.0.1")
	harnessPodPort uint32 = 77
	egressPassed   uint32 = 1000
)

const (
	inPortEgress  = 10
	inPortIngress = 20
)

func harness(compiled []ovs.Flow, placeholder bool) []ovs.Flow {
	flows := append([]ovs.Flow(nil), compiled...)
	eg, in := ovs.TablePolicyEgress, ovs.TablePolicyIngress
	toPod := ovs.OutPortField.Output()
	flows = append(flows,
		ovs.NewFlow(ovs.TableClassifier, 100).MatchInPort(inPortEgress).Action(ovs.Goto(eg)),
		ovs.NewFlow(ovs.TableClassifier, 100).MatchInPort(inPortIngress).Action(ovs.Goto(in)),
		ovs.NewFlow(eg, 300).MatchIPv4().MatchNwDst(svcCIDR).Action(ovs.Goto(ovs.TableConntrackCommit)),
		ovs.NewFlow(eg, 200).MatchIPv4().MatchCtState(ovs.CtRpl, 0).Action(ovs.Goto(ovs.TableConntrackCommit)),
		ovs.NewFlow(in, 300).MatchIPv4().MatchNwSrc(ovs.HostPrefix(gateway)).Action(toPod),
		ovs.NewFlow(in, 200).MatchIPv4().MatchCtState(ovs.CtRpl, 0).Action(toPod),
		ovs.NewFlow(ovs.TableVersion, 0).Action(ovs.NoteBytes(2, 0x10)),
	)
	if placeholder {
		flows = append(flows,
			ovs.NewFlow(eg, 50).MatchIPv4().Action(ovs.Goto(ovs.TableConntrackCommit)),
			ovs.NewFlow(in, 50).MatchIPv4().Action(toPod))
	}
	for _, t := range ovs.Tables {
		switch t {
		case ovs.TableVersion:
		case ovs.TableConntrackCommit:
			flows = append(flows, ovs.NewFlow(t, 0).Action(ovs.Output(egressPassed)))
		case ovs.TableIngressCommit: // where every ingress allow goes (pipeline.IngressAllow)
			flows = append(flows, ovs.NewFlow(t, 0).Action(toPod))
		default:
			flows = append(flows, ovs.NewFlow(t, 0).Action(ovs.DropAction()))
		}
	}
	return flows
}

// probe is one connection attempt seen by one direction's table.
type probe struct {
	srcVNID, dstVNID uint32
	src, dst         netip.Addr
	proto            ovs.Proto
	port             uint16
	reply            bool
}

func (p probe) packet(inPort uint32) ovs.Packet {
	pkt := ovs.Packet{InPort: inPort, Proto: p.proto, Src: p.src, Dst: p.dst, TpDst: p.port, CtState: ovs.CtTrk | ovs.CtNew}
	if p.reply {
		pkt.CtState = ovs.CtTrk | ovs.CtEst | ovs.CtRpl
	}
	pkt.Regs[ovs.SrcVNIDField.Reg] = p.srcVNID
	pkt.Regs[ovs.DstVNIDField.Reg] = p.dstVNID
	pkt.Regs[ovs.OutPortField.Reg] = harnessPodPort
	if p.dst.Is4() {
		pkt.Regs[ovs.DstPodIPField.Reg] = ovs.IPv4Value(p.dst) // as LocalPod loads it
	}
	return pkt
}

// egressAllowed traces p through PolicyEgress (source is a local pod).
func egressAllowed(t testing.TB, flows []ovs.Flow, p probe) bool {
	t.Helper()
	tr, err := ovs.TraceFlows(flows, p.packet(inPortEgress))
	if err != nil {
		t.Fatalf("trace %+v: %v", p, err)
	}
	return tr.Verdict.Kind == ovs.VerdictOutput && tr.Verdict.Port == egressPassed
}

// ingressAllowed traces p through PolicyIngress (destination is a local pod).
func ingressAllowed(t testing.TB, flows []ovs.Flow, p probe) bool {
	t.Helper()
	tr, err := ovs.TraceFlows(flows, p.packet(inPortIngress))
	if err != nil {
		t.Fatalf("trace %+v: %v", p, err)
	}
	return tr.Verdict.Kind == ovs.VerdictOutput && tr.Verdict.Port == harnessPodPort
}
