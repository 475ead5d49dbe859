package ovs_test

import (
	"net/netip"
	"strings"
	"testing"

	. "github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovstest"
)

func TestTables(t *testing.T) {
	seenID, seenName := map[uint8]bool{}, map[string]bool{}
	for i, tb := range Tables {
		if seenID[tb.ID] || seenName[tb.Name] || tb.Name == "" {
			t.Errorf("table %v: duplicate or unnamed", tb)
		}
		seenID[tb.ID], seenName[tb.Name] = true, true
		if i > 0 && Tables[i-1].ID >= tb.ID {
			t.Errorf("Tables not in ID order at %s", tb.Named())
		}
		if got, ok := TableByID(tb.ID); !ok || got != tb {
			t.Errorf("TableByID(%d) = %v, %v", tb.ID, got, ok)
		}
		if got, ok := TableByName(tb.Name); !ok || got != tb {
			t.Errorf("TableByName(%q) = %v, %v", tb.Name, got, ok)
		}
	}
	// The fixed IDs operators rely on (rule version 13).
	want := "0 10 20 21 22 23 24 25 27 28 30 31 40 50 60 70 80 81 82 90 99 100 101 110 111 120 253"
	var ids []string
	for _, tb := range Tables {
		ids = append(ids, tb.String())
	}
	if got := strings.Join(ids, " "); got != want {
		t.Errorf("table IDs = %s, want %s", got, want)
	}
	if _, ok := TableByID(42); ok {
		t.Error("TableByID(42) found a table")
	}
}

func TestFlowString(t *testing.T) {
	pod := netip.MustParseAddr("10.128.0.5")
	tests := []struct {
		name string
		flow Flow
		want string
	}{
		{"anti-spoof", NewFlow(TablePodAntiSpoof, 100).WithCookie(0x2000000000abcdef).MatchInPort(3).MatchIPv4().MatchNwSrc(HostPrefix(pod)).
			Action(SrcVNIDField.Load(5), Goto(TablePolicyEgress)),
			"table=20,priority=100,cookie=0x2000000000abcdef,in_port=3,ip,nw_src=10.128.0.5 actions=load:0x5->NXM_NX_REG0[],goto_table:27"},
		{"vxlan classify", NewFlow(TableClassifier, 200).MatchInPort(1).MatchIPv4().MatchNwSrc(netip.MustParsePrefix("10.128.7.0/14")).
			Action(TunnelKeyField.MoveTo(SrcVNIDField), Goto(TableVXLANIngress)),
			"table=0,priority=200,in_port=1,ip,nw_src=10.128.0.0/14 actions=move:NXM_NX_TUN_ID[0..31]->NXM_NX_REG0[],goto_table:10"},
		{"final drop", NewFlow(TableLocalPod, 0).Action(DropAction()), "table=70,priority=0 actions=drop"},
		{"empty actions", NewFlow(TableLocalPod, 0), "table=70,priority=0 actions=drop"},
		{"ct", NewFlow(TableRouting, 250).MatchIPv4().MatchCtState(CtRpl|CtTrk, CtNew).Action(CTThen(TableLocalPod, true, true)),
			"table=31,priority=250,ip,ct_state=-new+rpl+trk actions=ct(commit,table=70,nat)"},
		{"masked", NewFlow(TablePolicyIngress, 1).MatchProto(ProtoTCP).With(TpDstMasked(8081, 0xfff0), SrcVNIDField.MatchMasked(0x15, 0xf0)).
			Action(Conj(3, 1, 2)),
			"table=80,priority=1,tcp,tp_dst=0x1f90/0xfff0,reg0=0x10/0xf0 actions=conjunction(3,1/2)"},
		{"tunnel", NewFlow(TableRemotePod, 100).Action(SrcVNIDField.MoveTo(TunnelKeyField), SetTunnelDst(netip.MustParseAddr("192.168.1.2")), Output(1)),
			"table=90,priority=100 actions=move:NXM_NX_REG0[]->NXM_NX_TUN_ID[0..31],set_field:192.168.1.2->tun_dst,output:1"},
		{"note", NewFlow(TableVersion, 0).Action(NoteBytes(0, 0x0d, 0, 0)), "table=253,priority=0 actions=note:00.0d.00.00.00.00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.flow.String(); got != tt.want {
				t.Errorf("String()\n got %s\nwant %s", got, tt.want)
			}
			back, err := ParseFlow(tt.flow.String())
			if err != nil || !back.Equal(tt.flow) {
				t.Errorf("ParseFlow(String()) = %v, %v; not equal", back, err)
			}
		})
	}
}

func TestFlowBuilderDoesNotAlias(t *testing.T) {
	base := NewFlow(TableLocalPod, 100).MatchIPv4()
	a := base.MatchNwDst(netip.MustParsePrefix("10.0.0.1/32"))
	b := base.MatchNwDst(netip.MustParsePrefix("10.0.0.2/32"))
	if a.String() == b.String() || len(base.Match) != 1 {
		t.Fatalf("builder aliased: %s / %s / %s", a, b, base)
	}
}

func TestStringNamedAndMatchString(t *testing.T) {
	f := NewFlow(TablePodAntiSpoof, 100).WithCookie(7).MatchInPort(3).Action(Goto(TablePolicyEgress))
	if got, want := f.StringNamed(), "table=PodAntiSpoof(20),priority=100,cookie=0x7,in_port=3 actions=goto_table:27"; got != want {
		t.Errorf("StringNamed = %s, want %s", got, want)
	}
	if got, want := f.MatchString(), "table=20,priority=100,in_port=3"; got != want {
		t.Errorf("MatchString = %s, want %s", got, want)
	}
	if got, want := (Table{ID: 42}).Named(), "Unknown(42)"; got != want {
		t.Errorf("Named = %s, want %s", got, want)
	}
}

// TestRoundTripSample: every flow of the sample pipeline survives String →
// ParseFlow and StringNamed → ParseFlow.
func TestRoundTripSample(t *testing.T) {
	for _, f := range samplePipeline() {
		for _, s := range []string{f.String(), f.StringNamed()} {
			back, err := ParseFlow(s)
			if err != nil {
				t.Errorf("ParseFlow(%q): %v", s, err)
				continue
			}
			if !back.Equal(f) {
				t.Errorf("round trip of %q\n got %s\nwant %s", s, back.Canonical(), f.Canonical())
			}
		}
	}
}

// realDump is verbatim ovs-ofctl 3.1 output for flows added in another
// spelling; each must parse equal to the flow we would render.
const realDump = `OFPST_FLOW reply (OF1.3) (xid=0x2):
 cookie=0x0, duration=0.008s, table=0, n_packets=0, n_bytes=0, priority=1000,ct_state=-trk,ip actions=ct(table=0)
 cookie=0x0, duration=0.008s, table=0, n_packets=0, n_bytes=0, priority=200,arp,in_port=1,arp_spa=10.128.0.0/14,arp_tpa=10.128.0.0/23 actions=move:NXM_NX_TUN_ID[0..31]->NXM_NX_REG0[],goto_table:10
 cookie=0x1234, duration=1.5s, table=10, n_packets=12, n_bytes=3400, priority=100,tun_src=192.168.1.2 actions=goto_table:30
 cookie=0x0, duration=0.008s, table=31, n_packets=0, n_bytes=0, priority=250,ct_state=+rpl,ip,nw_dst=10.128.0.0/23 actions=ct(table=70,nat)
 cookie=0x0, duration=0.007s, table=80, n_packets=0, n_bytes=0, priority=150,ip,reg0=0x7,reg1=0x5,nw_dst=10.128.0.5 actions=conjunction(12,1/2)
 cookie=0x0, duration=0.007s, table=80, n_packets=0, n_bytes=0, priority=140,tcp,tp_dst=0x3e0/0xfff0 actions=output:NXM_NX_REG2[]
 cookie=0x0, duration=0.007s, table=101, n_packets=0, n_bytes=0, priority=100,ip,reg0=0x6,nw_proto=47 actions=drop
 cookie=0x0, duration=0.007s, table=253, n_packets=0, n_bytes=0, priority=0 actions=note:00.0d.00.00.00.00
 cookie=0x0, duration=0.036s, table=40, n_packets=0, n_bytes=0, ct_state=+new-est+rpl+trk,ip actions=ct(commit,table=31,nat)
`

func TestParseRealDump(t *testing.T) {
	cidr, local := netip.MustParsePrefix("10.128.0.0/14"), netip.MustParsePrefix("10.128.0.0/23")
	want := []Flow{
		NewFlow(TableClassifier, 1000).MatchIPv4().MatchCtState(0, CtTrk).Action(CTThen(TableClassifier, false, false)),
		// added as arp,nw_src=…,nw_dst=… ; OVS prints arp_spa/arp_tpa.
		NewFlow(TableClassifier, 200).MatchInPort(1).MatchARP().MatchNwSrc(cidr).MatchNwDst(local).
			Action(TunnelKeyField.MoveTo(SrcVNIDField), Goto(TableVXLANIngress)),
		NewFlow(TableVXLANIngress, 100).WithCookie(0x1234).MatchTunSrc(netip.MustParseAddr("192.168.1.2")).Action(Goto(TableConntrackCommit)),
		NewFlow(TableRouting, 250).MatchIPv4().MatchNwDst(local).MatchCtState(CtRpl, 0).Action(CTThen(TableLocalPod, false, true)),
		NewFlow(TablePolicyIngress, 150).MatchIPv4().MatchNwDst(netip.MustParsePrefix("10.128.0.5/32")).MatchReg(DstVNIDField, 5).MatchReg(SrcVNIDField, 7).Action(Conj(12, 1, 2)),
		NewFlow(TablePolicyIngress, 140).MatchProto(ProtoTCP).With(TpDstMasked(1000, 0xfff0)).Action(OutPortField.Output()),
		// added as ip,ip_proto=47
		NewFlow(TableEgressRouting, 100).MatchIPv4().MatchReg(SrcVNIDField, 6).With(NwProto(47)).Action(DropAction()),
		NewFlow(TableVersion, 0).Action(NoteBytes(0x00, 0x0d)),
		NewFlow(TableARPLocal, DefaultPriority).MatchIPv4().MatchCtState(CtTrk|CtNew|CtRpl, CtEst).Action(CTThen(TableRouting, true, true)),
	}
	got, err := ParseDump(realDump)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("parsed %d flows, want %d", len(got), len(want))
	}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Errorf("flow %d\n got %s\nwant %s", i, got[i].Canonical(), want[i].Canonical())
		}
	}
	if s := got[2].Stats; s.Packets != 12 || s.Bytes != 3400 || s.Duration.Seconds() != 1.5 {
		t.Errorf("stats = %+v", s)
	}
}

func TestNormalization(t *testing.T) {
	pairs := [][2]string{
		{"table=70,priority=5,ip,nw_proto=6,tcp_dst=80 actions=drop", "table=70,priority=5,tcp,tp_dst=80 actions=drop"},
		{"table=70,priority=5,ip,nw_dst=10.0.0.9/24 actions=drop", "table=70,priority=5,nw_dst=10.0.0.0/24,ip actions=drop"},
		{"table=70,priority=5,reg1=5 actions=drop", "table=70,priority=5,reg1=0x5 actions=drop"},
		{"table=70,priority=5,dl_dst=0A:58:00:00:00:01 actions=drop", "table=70,priority=5,eth_dst=0a:58:00:00:00:01 actions=drop"},
		{"table=70,priority=5,udp,udp_dst=53 actions=drop", "table=70,priority=5,udp,tp_dst=53 actions=drop"},
		{"table=70,priority=5,ip actions=ct(nat,table=80)", "table=70,priority=5,ip actions=ct(table=80,nat)"},
		{"table=70,ip actions=drop", "table=70,priority=32768,ip actions=drop"},
		{"table=LocalPod,priority=5,ip actions=drop", "table=70,priority=5,ip actions=drop"},
	}
	for _, p := range pairs {
		a, err1 := ParseFlow(p[0])
		b, err2 := ParseFlow(p[1])
		if err1 != nil || err2 != nil {
			t.Errorf("parse %q / %q: %v %v", p[0], p[1], err1, err2)
			continue
		}
		if !a.Equal(b) {
			t.Errorf("%q and %q not equal:\n%s\n%s", p[0], p[1], a.Canonical(), b.Canonical())
		}
	}
	differ := [][2]string{
		{"table=70,priority=5,ip actions=drop", "table=70,priority=6,ip actions=drop"},
		{"table=70,priority=5,cookie=0x1,ip actions=drop", "table=70,priority=5,ip actions=drop"},
		{"table=70,priority=5,ip actions=output:1,output:2", "table=70,priority=5,ip actions=output:2,output:1"},
		{"table=70,priority=5,tcp,tp_dst=80 actions=drop", "table=70,priority=5,udp,tp_dst=80 actions=drop"},
	}
	for _, p := range differ {
		a, _ := ParseFlow(p[0])
		b, _ := ParseFlow(p[1])
		if a.Equal(b) {
			t.Errorf("%q and %q compare equal", p[0], p[1])
		}
	}
}

func TestParseErrors(t *testing.T) {
	bad := []string{
		"table=70,priority=5,ip",                                           // no actions
		"table=70,priority=5,ipv6 actions=drop",                            // unsupported keyword
		"table=70,priority=5,ip,vlan_tci=1 actions=drop",                   // unsupported field
		"table=70,priority=5,ip actions=learn(table=1,fin_idle_timeout=3)", // unsupported learn argument
		"table=70,priority=5,ip actions=dec_ttl",                           // unsupported action
		"table=70,priority=5,ip actions=resubmit(3,80)",                    // port resubmit
		"table=70,priority=5,ip,nw_src=10.0.0.300 actions=drop",
		"table=Routing(70),priority=5 actions=drop", // name/ID mismatch
		"table=70,priority=5,ct_state=*trk actions=drop",
		"table=70,priority=70000 actions=drop",
		"table=70 actions=load:0x1->NXM_NX_XXREG0[]",
		"table=70 actions=load:0x1->NXM_NX_REG4[16..32]",
	}
	for _, s := range bad {
		if f, err := ParseFlow(s); err == nil {
			t.Errorf("ParseFlow(%q) = %s, want error", s, f)
		}
	}
}

func TestGoldenSample(t *testing.T) {
	ovstest.AssertGolden(t, "sample", samplePipeline())
}

func TestLineDiff(t *testing.T) {
	if d := ovstest.LineDiff("a\nb\nb\n", "b\na\nb\n"); d != "" {
		t.Errorf("same multiset: diff %q", d)
	}
	if d, want := ovstest.LineDiff("a\nb\n", "a\nc\n"), "- b\n+ c\n"; d != want {
		t.Errorf("diff = %q, want %q", d, want)
	}
}

func BenchmarkRender(b *testing.B) {
	const n = 100000
	b.ReportAllocs()
	for b.Loop() {
		total := 0
		for i := range n {
			ip := netip.AddrFrom4([4]byte{10, 128, byte(i >> 8), byte(i)})
			f := NewFlow(TablePodAntiSpoof, 100).WithCookie(CookieFor(CookiePod, "pod")).MatchInPort(uint32(i)).MatchIPv4().
				MatchNwSrc(HostPrefix(ip)).Action(SrcVNIDField.Load(uint32(i)), Goto(TablePolicyEgress))
			total += len(f.String())
		}
		if total == 0 {
			b.Fatal("nothing rendered")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/flow")
}
