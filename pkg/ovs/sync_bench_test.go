package ovs

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// benchFlows returns n pod-like flows (5 per pod, as the agent renders).
func benchFlows(pods int) []Flow {
	var flows []Flow
	for i := range pods {
		ip := netip.AddrFrom4([4]byte{10, 128, byte(i >> 8), byte(i)})
		port := uint32(i + 3)
		c := CookieFor(CookiePod, fmt.Sprint("pod/ns/", i))
		mac := MAC{0x0a, 0x58, 10, 128, byte(i >> 8), byte(i)}
		flows = append(flows,
			NewFlow(TablePodAntiSpoof, 100).WithCookie(c).MatchInPort(port).MatchARP().MatchArpSpa(HostPrefix(ip)).
				With(ArpSha(mac, FullMAC)).Action(SrcVNIDField.Load(uint32(i)), Goto(TableConntrackCommit)),
			NewFlow(TablePodAntiSpoof, 100).WithCookie(c).MatchInPort(port).MatchIPv4().MatchNwSrc(HostPrefix(ip)).
				Action(SrcVNIDField.Load(uint32(i)), Goto(TablePolicyEgress)),
			NewFlow(TableServiceReturn, 100).WithCookie(c).MatchIPv4().MatchNwSrc(HostPrefix(ip)).
				Action(SrcVNIDField.Load(uint32(i)), Goto(TablePolicyEgress)),
			NewFlow(TableARPLocal, 100).WithCookie(c).MatchARP().MatchArpTpa(HostPrefix(ip)).Action(Output(port)),
			NewFlow(TableLocalPod, 100).WithCookie(c).MatchIPv4().MatchNwDst(HostPrefix(ip)).
				Action(DstVNIDField.Load(uint32(i)), OutPortField.Load(port), Goto(TablePolicyIngress)),
		)
	}
	return flows
}

// dumpOf renders flows the way dump-flows prints them (close enough for
// parsing cost: OVS orders match fields differently).
func dumpOf(flows []Flow) string {
	var b strings.Builder
	b.WriteString("OFPST_FLOW reply (OF1.3) (xid=0x2):\n")
	for _, f := range flows {
		head, acts, _ := strings.Cut(f.String(), " actions=")
		rest := strings.TrimPrefix(head, "table="+f.Table.String()+",")
		fmt.Fprintf(&b, " cookie=%#x, duration=12.5s, table=%d, n_packets=0, n_bytes=0, idle_age=12, %s actions=%s\n",
			f.Cookie, f.Table.ID, strings.Replace(rest, fmt.Sprintf(",cookie=%#x", f.Cookie), "", 1), acts)
	}
	return b.String()
}

// BenchmarkReplacePlan is the Go side of a full sync of a 10,000-pod node's
// pod flows: parse the dump, diff, render the bundle.
func BenchmarkReplacePlan(b *testing.B) {
	flows := benchFlows(10000)
	for _, tc := range []struct {
		name string
		dump string
	}{{"empty", ""}, {"unchanged", dumpOf(flows)}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				cur := syncState{flows: parseSyncDump(tc.dump)}
				changes, err := planReplace(cur, nil, true, flows)
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for _, c := range changes {
					n += len(c.String())
				}
				if tc.dump != "" && len(changes) != 0 {
					b.Fatalf("%d changes for an unchanged bridge", len(changes))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(flows)), "ns/flow")
		})
	}
}
