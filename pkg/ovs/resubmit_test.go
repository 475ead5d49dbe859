package ovs_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	. "github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// TestBackResubmit: MulticastToLocal may resubmit to PolicyIngress (and only
// there), and nothing PolicyIngress leads to may reach MulticastToLocal again.
func TestBackResubmit(t *testing.T) {
	ok := NewFlow(TableMulticastToLocal, 100).MatchReg(SrcVNIDField, 7).
		Action(OutPortField.Load(3), ResubmitTo(TablePolicyIngress), OutPortField.Load(4), ResubmitTo(TablePolicyIngress))
	if err := ValidateFlow(ok); err != nil {
		t.Errorf("ValidateFlow(%s): %v", ok, err)
	}
	for _, bad := range []Flow{
		NewFlow(TableMulticastToLocal, 100).Action(ResubmitTo(TableLocalPod)),
		NewFlow(TableMulticastToRemote, 100).Action(ResubmitTo(TablePolicyIngress)),
		NewFlow(TableMulticastToLocal, 100).MatchIPv4().Action(CTThen(TablePolicyIngress, false, false)),
		NewFlow(TableMulticastToLocal, 100).Action(Goto(TablePolicyIngress)),
	} {
		if err := ValidateFlow(bad); err == nil || !strings.Contains(err.Error(), "backward") {
			t.Errorf("ValidateFlow(%s) = %v, want a backward-jump error", bad, err)
		}
	}
	full := append(samplePipeline(), ok)
	if err := ValidatePipeline(full); err != nil {
		t.Fatalf("sample pipeline with a multicast resubmit: %v", err)
	}
	onward := append(slices.Clone(full), NewFlow(TablePolicyIngress, 7).MatchIPv4().Action(Goto(TableIngressCommit)))
	if err := ValidatePipeline(onward); err != nil {
		t.Errorf("PolicyIngress going on to IngressCommit (which does not lead back): %v", err)
	}
	for _, cont := range []Action{Goto(TableMulticastFromLocal), ResubmitTo(TableMulticastToLocal), CTThen(TableMulticastToRemote, false, false)} {
		looping := append(slices.Clone(full), NewFlow(TablePolicyIngress, 7).MatchIPv4().Action(cont))
		if err := ValidatePipeline(looping); err == nil || !strings.Contains(err.Error(), "loop") {
			t.Errorf("PolicyIngress flow with %s: ValidatePipeline = %v, want a loop error", cont, err)
		}
	}
}

// TestTraceSkipsOutputToInPort: an output to the packet's own in_port is
// skipped, as OVS does; outputs to other ports in the same flow are not.
func TestTraceSkipsOutputToInPort(t *testing.T) {
	flows := []Flow{
		NewFlow(TableClassifier, 5).MatchIPv4().Action(OutPortField.Load(3), Output(3), Output(4), OutPortField.Output(), Output(5)),
	}
	tr, err := TraceFlows(flows, Packet{InPort: 3, Proto: ProtoUDP})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range tr.Outputs {
		got = append(got, o.String())
	}
	if want := []string{"Output(4)", "Output(5)"}; !slices.Equal(got, want) {
		t.Errorf("outputs %v, want %v", got, want)
	}
}

func TestIPv4Value(t *testing.T) {
	if got := IPv4Value(netip.MustParseAddr("10.128.0.2")); got != 0x0a800002 {
		t.Errorf("IPv4Value(10.128.0.2) = %#x", got)
	}
	if got := DstPodIPField.Match(IPv4Value(netip.MustParseAddr("10.128.0.2"))).String(); got != "reg3=0xa800002" {
		t.Errorf("match = %s", got)
	}
}
