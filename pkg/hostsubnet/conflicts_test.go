package hostsubnet

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
)

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func hs(name string, age int, subnet, hostIP string) *networkv1.HostSubnet {
	return &networkv1.HostSubnet{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(age) * time.Second))},
		Host:       name, HostIP: hostIP, Subnet: subnet,
	}
}

func TestResolveCases(t *testing.T) {
	cases := []struct {
		name string
		in   []*networkv1.HostSubnet
		want map[string]string // loser -> "Reason Winner"
	}{
		{"no conflict", []*networkv1.HostSubnet{
			hs("a", 0, "10.128.0.0/23", "192.0.2.1"), hs("b", 1, "10.128.2.0/23", "192.0.2.2")}, nil},
		{"same subnet: younger loses", []*networkv1.HostSubnet{
			hs("young", 5, "10.128.0.0/23", "192.0.2.2"), hs("old", 1, "10.128.0.0/23", "192.0.2.1")},
			map[string]string{"young": "SubnetOverlap old"}},
		{"same timestamp: name decides", []*networkv1.HostSubnet{
			hs("b", 1, "10.128.0.0/23", "192.0.2.2"), hs("a", 1, "10.128.0.0/23", "192.0.2.1")},
			map[string]string{"b": "SubnetOverlap a"}},
		{"younger supernet loses to older small subnet", []*networkv1.HostSubnet{
			hs("small", 1, "10.128.2.0/23", "192.0.2.1"), hs("big", 2, "10.128.0.0/22", "192.0.2.2")},
			map[string]string{"big": "SubnetOverlap small"}},
		{"duplicate hostIP", []*networkv1.HostSubnet{
			hs("a", 1, "10.128.0.0/23", "192.0.2.1"), hs("b", 2, "10.128.2.0/23", "192.0.2.1")},
			map[string]string{"b": "DuplicateHostIP a"}},
		{"subnet reported before hostIP", []*networkv1.HostSubnet{
			hs("a", 1, "10.128.0.0/23", "192.0.2.1"), hs("b", 2, "10.128.0.0/23", "192.0.2.1")},
			map[string]string{"b": "SubnetOverlap a"}},
		{"a loser does not block younger objects", []*networkv1.HostSubnet{
			hs("a", 1, "10.128.0.0/24", "192.0.2.1"), hs("b", 2, "10.128.0.0/22", "192.0.2.2"), hs("c", 3, "10.128.2.0/23", "192.0.2.3")},
			map[string]string{"b": "SubnetOverlap a"}},
		{"winner is the oldest kept overlap", []*networkv1.HostSubnet{
			hs("x", 3, "10.128.0.0/24", "192.0.2.1"), hs("y", 1, "10.128.1.0/24", "192.0.2.2"), hs("big", 5, "10.128.0.0/23", "192.0.2.3")},
			map[string]string{"big": "SubnetOverlap y"}},
		{"invalid objects take no part", []*networkv1.HostSubnet{
			hs("pending", 0, "", "192.0.2.1"), hs("badip", 0, "10.128.0.0/23", "nope"), hs("node", 1, "10.128.0.0/23", "192.0.2.1")}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string]string{}
			for name, c := range Resolve(tc.in, nil) {
				if c.Name != name {
					t.Errorf("conflict keyed %q has Name %q", name, c.Name)
				}
				got[name] = string(c.Reason) + " " + c.Winner
			}
			if len(tc.want) == 0 && len(got) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Resolve = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestResolveEligible(t *testing.T) {
	cluster := netip.MustParsePrefix("10.128.0.0/14")
	eligible := func(p netip.Prefix) bool { return cluster.Contains(p.Addr()) && p.Bits() == 23 }
	in := []*networkv1.HostSubnet{
		hs("f5", 0, "10.200.0.0/23", "192.0.2.1"), // outside the cluster network: agents ignore it
		hs("node", 1, "10.128.0.0/23", "192.0.2.1"),
	}
	if got := Resolve(in, eligible); len(got) != 0 {
		t.Errorf("an ineligible HostSubnet made another lose: %v", got)
	}
	if got := Resolve(in, nil); got["node"].Winner != "f5" {
		t.Errorf("without a predicate f5 should win the hostIP: %v", got)
	}
}

func TestConflictMessageNamesBothObjects(t *testing.T) {
	got := Resolve([]*networkv1.HostSubnet{hs("old", 1, "10.128.0.0/23", "192.0.2.1"), hs("new", 2, "10.128.0.0/22", "192.0.2.9")}, nil)
	msg := got["new"].Message()
	for _, want := range []string{"10.128.0.0/22", "10.128.0.0/23", "older HostSubnet old", "ignores this HostSubnet"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}

// slowResolve is the reference: the definition written naively, O(n²).
func slowResolve(hss []*networkv1.HostSubnet) map[string]Conflict {
	cands := candidates(hss, nil)
	// Selection sort by the total order, independent of slices.SortFunc.
	for i := range cands {
		for j := i + 1; j < len(cands); j++ {
			if Older(cands[j].hs, cands[i].hs) {
				cands[i], cands[j] = cands[j], cands[i]
			}
		}
	}
	out := map[string]Conflict{}
	var kept []candidate
	for _, c := range cands {
		var conflict *Conflict
		for _, k := range kept {
			if k.subnet.Overlaps(c.subnet) {
				conflict = &Conflict{Name: c.hs.Name, Winner: k.hs.Name, Reason: SubnetOverlap, Subnet: c.subnet, WinnerSubnet: k.subnet}
				break
			}
		}
		if conflict == nil {
			for _, k := range kept {
				if k.hostIP == c.hostIP {
					conflict = &Conflict{Name: c.hs.Name, Winner: k.hs.Name, Reason: DuplicateHostIP, HostIP: c.hostIP}
					break
				}
			}
		}
		if conflict != nil {
			out[c.hs.Name] = *conflict
			continue
		}
		kept = append(kept, c)
	}
	return out
}

// randomHostSubnets draws n HostSubnets from a small space so that subnet
// overlaps, hostIP duplicates and timestamp ties are frequent.
func randomHostSubnets(r *rand.Rand, n int) []*networkv1.HostSubnet {
	out := make([]*networkv1.HostSubnet, n)
	for i := range out {
		bits := 20 + r.IntN(6)
		addr := netip.AddrFrom4([4]byte{10, 128, byte(r.IntN(16)), 0})
		subnet := netip.PrefixFrom(addr, bits).Masked().String()
		if r.IntN(10) == 0 {
			subnet = ""
		}
		hostIP := fmt.Sprintf("192.0.2.%d", r.IntN(n+1))
		out[i] = hs(fmt.Sprintf("hs-%02d", i), r.IntN(4), subnet, hostIP)
	}
	return out
}

// TestResolveProperties checks Resolve against slowResolve, that the result
// does not depend on input order, and the invariants: kept objects are
// pairwise conflict-free, every winner is kept and older than its loser.
func TestResolveProperties(t *testing.T) {
	for seed := range 500 {
		r := rand.New(rand.NewPCG(uint64(seed), 7))
		in := randomHostSubnets(r, 1+r.IntN(24))
		got := Resolve(in, nil)
		if want := slowResolve(in); !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d: Resolve = %v\nslow reference = %v", seed, got, want)
		}
		shuffled := append([]*networkv1.HostSubnet(nil), in...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if again := Resolve(shuffled, nil); !reflect.DeepEqual(got, again) {
			t.Fatalf("seed %d: result depends on input order:\n%v\n%v", seed, got, again)
		}
		checkInvariants(t, seed, in, got)
	}
}

func checkInvariants(t *testing.T, seed int, in []*networkv1.HostSubnet, losers map[string]Conflict) {
	t.Helper()
	byName := map[string]*networkv1.HostSubnet{}
	var kept []candidate
	for _, c := range candidates(in, nil) {
		byName[c.hs.Name] = c.hs
		if _, lost := losers[c.hs.Name]; !lost {
			kept = append(kept, c)
		}
	}
	for i, a := range kept {
		for _, b := range kept[i+1:] {
			if a.subnet.Overlaps(b.subnet) || a.hostIP == b.hostIP {
				t.Fatalf("seed %d: kept %s and %s conflict", seed, a.hs.Name, b.hs.Name)
			}
		}
	}
	for name, c := range losers {
		if _, lost := losers[c.Winner]; lost {
			t.Fatalf("seed %d: %s lost to %s, itself a loser", seed, name, c.Winner)
		}
		if !Older(byName[c.Winner], byName[name]) {
			t.Fatalf("seed %d: %s lost to the younger %s", seed, name, c.Winner)
		}
	}
}

// FuzzResolve decodes HostSubnets from bytes (4 per object: subnet octet,
// prefix length, hostIP, age) and checks Resolve against the reference and
// against the reversed input.
func FuzzResolve(f *testing.F) {
	f.Add([]byte{0, 23, 1, 0, 0, 23, 2, 1})
	f.Add([]byte{0, 22, 1, 1, 2, 23, 2, 0, 2, 24, 1, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		var in []*networkv1.HostSubnet
		for i := 0; i+3 < len(data) && len(in) < 64; i += 4 {
			subnet := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 128, data[i] % 16, 0}), 18+int(data[i+1])%10).Masked()
			in = append(in, hs(fmt.Sprintf("hs-%d", i/4), int(data[i+3]%4), subnet.String(), fmt.Sprintf("192.0.2.%d", data[i+2]%8)))
		}
		got := Resolve(in, nil)
		if want := slowResolve(in); !reflect.DeepEqual(got, want) {
			t.Fatalf("Resolve = %v\nslow reference = %v", got, want)
		}
		reversed := make([]*networkv1.HostSubnet, len(in))
		for i, h := range in {
			reversed[len(in)-1-i] = h
		}
		if again := Resolve(reversed, nil); !reflect.DeepEqual(got, again) {
			t.Fatalf("result depends on input order:\n%v\n%v", got, again)
		}
	})
}

func BenchmarkResolve5000(b *testing.B) {
	in := make([]*networkv1.HostSubnet, 5000)
	for i := range in {
		in[i] = hs(fmt.Sprintf("node-%04d", i), i%7, fmt.Sprintf("10.%d.%d.0/24", i/256, i%256), fmt.Sprintf("192.168.%d.%d", i/250, i%250))
	}
	b.ResetTimer()
	for range b.N {
		Resolve(in, nil)
	}
}
