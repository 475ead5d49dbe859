package subnet

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

func mustAllocator(t testing.TB, networks ...ClusterNetwork) *Allocator {
	t.Helper()
	a, err := NewAllocator(networks)
	if err != nil {
		t.Fatalf("NewAllocator(%v): %v", networks, err)
	}
	return a
}

func cn(cidr string, hostBits int) ClusterNetwork {
	return ClusterNetwork{CIDR: netip.MustParsePrefix(cidr), HostBits: hostBits}
}

// allocateN allocates n subnets, failing the test on error.
func allocateN(t *testing.T, a *Allocator, n int) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for range n {
		p, err := a.Allocate()
		if err != nil {
			t.Fatalf("Allocate() after %d: %v", len(out), err)
		}
		out = append(out, p)
	}
	return out
}

func TestAllocateOrder(t *testing.T) {
	tests := []struct {
		name    string
		network ClusterNetwork
		// want maps the position in allocation order to the subnet.
		want map[int]string
	}{
		{"openshift default /14 hostPrefix 23", cn("10.128.0.0/14", 9), map[int]string{
			0: "10.128.0.0/23", 1: "10.129.0.0/23", 2: "10.130.0.0/23", 3: "10.131.0.0/23",
			4: "10.128.2.0/23", 5: "10.129.2.0/23", 6: "10.130.2.0/23", 7: "10.131.2.0/23",
			8: "10.128.4.0/23", 511: "10.131.254.0/23",
		}},
		{"/14 with 10 host bits", cn("10.0.0.0/14", 10), map[int]string{
			0: "10.0.0.0/22", 1: "10.1.0.0/22", 2: "10.2.0.0/22", 3: "10.3.0.0/22",
			4: "10.0.4.0/22", 5: "10.1.4.0/22", 255: "10.3.252.0/22",
		}},
		{"host bits a multiple of 8", cn("10.0.0.0/16", 8), map[int]string{
			0: "10.0.0.0/24", 1: "10.0.1.0/24", 2: "10.0.2.0/24", 255: "10.0.255.0/24",
		}},
		{"/24 with 4 host bits", cn("192.168.7.0/24", 4), map[int]string{
			0: "192.168.7.0/28", 1: "192.168.7.16/28", 2: "192.168.7.32/28", 15: "192.168.7.240/28",
		}},
		{"index bits within one octet, no rotation", cn("10.1.0.0/16", 10), map[int]string{
			0: "10.1.0.0/22", 1: "10.1.4.0/22", 2: "10.1.8.0/22", 63: "10.1.252.0/22",
		}},
		{"/8 with 12 host bits rotates by 4", cn("10.0.0.0/8", 12), map[int]string{
			0: "10.0.0.0/20", 1: "10.1.0.0/20", 255: "10.255.0.0/20",
			256: "10.0.16.0/20", 257: "10.1.16.0/20", 4095: "10.255.240.0/20",
		}},
		{"single subnet", cn("10.9.8.0/24", 8), map[int]string{0: "10.9.8.0/24"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := mustAllocator(t, tt.network)
			got := allocateN(t, a, a.Free())
			for i, want := range tt.want {
				if got[i].String() != want {
					t.Errorf("allocation #%d = %s, want %s", i, got[i], want)
				}
			}
			checkBijection(t, tt.network, got)
			if _, err := a.Allocate(); !errors.Is(err, ErrExhausted) {
				t.Errorf("Allocate() on full range: err = %v, want ErrExhausted", err)
			}
		})
	}
}

// checkBijection verifies that got holds every aligned node subnet of n
// exactly once and agrees with the reference order.
func checkBijection(t *testing.T, n ClusterNetwork, got []netip.Prefix) {
	t.Helper()
	ref := refOrder(n)
	if len(got) != len(ref) {
		t.Fatalf("allocated %d subnets, want %d", len(got), len(ref))
	}
	seen := map[netip.Prefix]bool{}
	for i, p := range got {
		if seen[p] || p.Masked() != p || p.Bits() != 32-n.HostBits || !n.CIDR.Contains(p.Addr()) {
			t.Fatalf("allocation #%d %s is a duplicate or not a node subnet of %s", i, p, n)
		}
		seen[p] = true
		if p != ref[i] {
			t.Fatalf("allocation #%d = %s, reference order says %s", i, p, ref[i])
		}
	}
}

func TestExhaustion(t *testing.T) {
	a := mustAllocator(t, cn("10.1.0.0/28", 2))
	if a.Free() != 4 || a.Allocated() != 0 {
		t.Fatalf("new allocator: Free()=%d Allocated()=%d, want 4, 0", a.Free(), a.Allocated())
	}
	got := allocateN(t, a, 4)
	want := []string{"10.1.0.0/30", "10.1.0.4/30", "10.1.0.8/30", "10.1.0.12/30"}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("allocation #%d = %s, want %s", i, got[i], want[i])
		}
	}
	for range 2 {
		p, err := a.Allocate()
		if !errors.Is(err, ErrExhausted) || p.IsValid() {
			t.Fatalf("Allocate() on full range = %s, %v; want zero prefix, ErrExhausted", p, err)
		}
	}
	if a.Free() != 0 || a.Allocated() != 4 {
		t.Errorf("full allocator: Free()=%d Allocated()=%d, want 0, 4", a.Free(), a.Allocated())
	}
}

func TestReleaseNextFit(t *testing.T) {
	a := mustAllocator(t, cn("10.1.0.0/28", 2))
	allocateN(t, a, 3) // .0 .4 .8
	first := netip.MustParsePrefix("10.1.0.0/30")
	for range 2 { // Release is idempotent.
		if err := a.Release(first); err != nil {
			t.Fatalf("Release(%s): %v", first, err)
		}
	}
	if a.IsAllocated(first) || a.Allocated() != 2 {
		t.Fatalf("after release: IsAllocated=%v Allocated()=%d, want false, 2", a.IsAllocated(first), a.Allocated())
	}
	// Next-fit: the released subnet comes back only after wrap-around.
	for _, want := range []string{"10.1.0.12/30", "10.1.0.0/30"} {
		if p, err := a.Allocate(); err != nil || p.String() != want {
			t.Fatalf("Allocate() = %s, %v; want %s", p, err, want)
		}
	}
	second := netip.MustParsePrefix("10.1.0.4/30")
	if err := a.Release(second); err != nil {
		t.Fatal(err)
	}
	if p, err := a.Allocate(); err != nil || p != second {
		t.Fatalf("Allocate() after wrap = %s, %v; want %s", p, err, second)
	}
}

func TestMarkAllocatedRebuild(t *testing.T) {
	a := mustAllocator(t, cn("10.1.0.0/28", 2))
	for _, s := range []string{"10.1.0.4/30", "10.1.0.8/30"} {
		if err := a.MarkAllocated(netip.MustParsePrefix(s)); err != nil {
			t.Fatalf("MarkAllocated(%s): %v", s, err)
		}
	}
	err := a.MarkAllocated(netip.MustParsePrefix("10.1.0.4/30"))
	if !errors.Is(err, ErrAlreadyAllocated) {
		t.Errorf("MarkAllocated twice: err = %v, want ErrAlreadyAllocated", err)
	}
	if a.Allocated() != 2 || !a.IsAllocated(netip.MustParsePrefix("10.1.0.8/30")) {
		t.Errorf("after marks: Allocated()=%d, want 2 with 10.1.0.8/30 allocated", a.Allocated())
	}
	got := allocateN(t, a, 2)
	if got[0].String() != "10.1.0.0/30" || got[1].String() != "10.1.0.12/30" {
		t.Errorf("allocations after rebuild = %v, want [10.1.0.0/30 10.1.0.12/30]", got)
	}
	if _, err := a.Allocate(); !errors.Is(err, ErrExhausted) {
		t.Errorf("Allocate() = %v, want ErrExhausted", err)
	}
}

func TestNotInRange(t *testing.T) {
	a := mustAllocator(t, cn("10.128.0.0/14", 9))
	for _, s := range []string{
		"10.132.0.0/23",         // outside
		"10.128.1.0/23",         // misaligned, not masked
		"10.128.0.0/24",         // too small
		"10.128.0.0/22",         // too big
		"10.128.0.0/14",         // the whole network
		"::ffff:10.128.0.0/119", // IPv4-mapped IPv6
		"fd00::/64",
	} {
		p := netip.MustParsePrefix(s)
		if err := a.MarkAllocated(p); !errors.Is(err, ErrNotInRange) || !strings.Contains(err.Error(), s) {
			t.Errorf("MarkAllocated(%s) = %v, want ErrNotInRange naming it", s, err)
		}
		if err := a.Release(p); !errors.Is(err, ErrNotInRange) {
			t.Errorf("Release(%s) = %v, want ErrNotInRange", s, err)
		}
		if a.IsAllocated(p) {
			t.Errorf("IsAllocated(%s) = true", s)
		}
	}
	if err := a.Release(netip.Prefix{}); !errors.Is(err, ErrNotInRange) {
		t.Errorf("Release(zero prefix) = %v, want ErrNotInRange", err)
	}
	if a.Allocated() != 0 {
		t.Errorf("Allocated() = %d after rejected operations, want 0", a.Allocated())
	}
}

func TestSubnetCap(t *testing.T) {
	a := mustAllocator(t, cn("0.0.0.0/4", 2)) // 26 index bits, capped at 24
	if a.Free() != 1<<24 {
		t.Fatalf("Free() = %d, want %d", a.Free(), 1<<24)
	}
	last := netip.MustParsePrefix("3.255.255.252/30")
	if err := a.MarkAllocated(last); err != nil {
		t.Errorf("MarkAllocated(%s) = %v, want nil", last, err)
	}
	beyond := netip.MustParsePrefix("4.0.0.0/30")
	if err := a.MarkAllocated(beyond); !errors.Is(err, ErrNotInRange) {
		t.Errorf("MarkAllocated(%s) beyond the cap = %v, want ErrNotInRange", beyond, err)
	}
	got := allocateN(t, a, 2)
	if got[0].String() != "0.0.0.0/30" || got[1].String() != "0.0.1.0/30" {
		t.Errorf("first allocations = %v, want [0.0.0.0/30 0.0.1.0/30]", got)
	}
}

func TestValidation(t *testing.T) {
	good := cn("10.128.0.0/14", 9)
	tests := []struct {
		name     string
		bad      ClusterNetwork
		mentions string
	}{
		{"zero prefix", ClusterNetwork{HostBits: 9}, "not a valid prefix"},
		{"ipv6", cn("fd00::/48", 16), "fd00::/48"},
		{"ipv4-mapped", cn("::ffff:10.0.0.0/104", 8), "::ffff:10.0.0.0/104"},
		{"unmasked", cn("10.200.0.1/16", 8), "10.200.0.1/16"},
		{"host bits too small", cn("10.200.0.0/16", 1), "hostBits 1"},
		{"host bits too large", cn("0.0.0.0/0", 31), "hostBits 31"},
		{"host bits exceed prefix", cn("10.200.0.0/24", 9), "hostBits 9"},
		{"overlaps entry 0", cn("10.130.0.0/16", 8), "overlaps clusterNetworks[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := NewAllocator([]ClusterNetwork{good, tt.bad})
			if a != nil || !errors.Is(err, ErrInvalidNetwork) {
				t.Fatalf("NewAllocator = %v, %v; want nil, ErrInvalidNetwork", a, err)
			}
			for _, s := range []string{"clusterNetworks[1]", tt.mentions} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
	if _, err := NewAllocator(nil); !errors.Is(err, ErrInvalidNetwork) {
		t.Errorf("NewAllocator(nil) = %v, want ErrInvalidNetwork", err)
	}
	if _, err := NewAllocator([]ClusterNetwork{good, cn("10.132.0.0/14", 9), cn("10.0.0.0/30", 2)}); err != nil {
		t.Errorf("NewAllocator(valid) = %v", err)
	}
}

func TestMultipleRanges(t *testing.T) {
	a := mustAllocator(t, cn("10.1.0.0/28", 2), cn("10.2.0.0/29", 2))
	if a.Free() != 6 {
		t.Fatalf("Free() = %d, want 6", a.Free())
	}
	got := allocateN(t, a, 6)
	want := []string{"10.1.0.0/30", "10.1.0.4/30", "10.1.0.8/30", "10.1.0.12/30", "10.2.0.0/30", "10.2.0.4/30"}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("allocation #%d = %s, want %s", i, got[i], want[i])
		}
	}
	if _, err := a.Allocate(); !errors.Is(err, ErrExhausted) {
		t.Fatalf("Allocate() = %v, want ErrExhausted", err)
	}
	// A subnet freed in the first range is used before the second range.
	if err := a.Release(netip.MustParsePrefix("10.2.0.0/30")); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(netip.MustParsePrefix("10.1.0.8/30")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"10.1.0.8/30", "10.2.0.0/30"} {
		if p, err := a.Allocate(); err != nil || p.String() != want {
			t.Errorf("Allocate() = %s, %v; want %s", p, err, want)
		}
	}
}

func TestConcurrentAllocate(t *testing.T) {
	a := mustAllocator(t, cn("10.0.0.0/20", 4), cn("10.1.0.0/24", 4)) // 256 + 16 subnets
	const workers, perWorker = 8, 40
	results := make([][]netip.Prefix, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				p, err := a.Allocate()
				if err != nil {
					if !errors.Is(err, ErrExhausted) {
						t.Errorf("Allocate(): %v", err)
					}
					continue
				}
				results[w] = append(results[w], p)
				a.IsAllocated(p)
				a.Free()
			}
		}()
	}
	wg.Wait()
	seen := map[netip.Prefix]bool{}
	for _, ps := range results {
		for _, p := range ps {
			if seen[p] {
				t.Fatalf("%s allocated twice", p)
			}
			seen[p] = true
		}
	}
	if len(seen) != 272 || a.Free() != 0 {
		t.Errorf("allocated %d distinct subnets, Free()=%d; want 272, 0", len(seen), a.Free())
	}
}

func TestConcurrentAllocateRelease(t *testing.T) {
	a := mustAllocator(t, cn("10.1.0.0/26", 2)) // 16 subnets, heavy contention
	var wg sync.WaitGroup
	var mu sync.Mutex
	live := map[netip.Prefix]bool{}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				p, err := a.Allocate()
				if err != nil {
					continue
				}
				mu.Lock()
				if live[p] {
					t.Errorf("%s handed out while live", p)
				}
				live[p] = true
				mu.Unlock()
				mu.Lock()
				delete(live, p)
				mu.Unlock()
				if err := a.Release(p); err != nil {
					t.Errorf("Release(%s): %v", p, err)
				}
			}
		}()
	}
	wg.Wait()
	if a.Allocated() != 0 {
		t.Errorf("Allocated() = %d after releasing everything, want 0", a.Allocated())
	}
}

var oracleConfigs = [][]ClusterNetwork{
	{cn("10.1.0.0/28", 2)},
	{cn("10.128.0.0/20", 9)},
	{cn("10.0.0.0/18", 10)},
	{cn("10.0.0.0/22", 4), cn("10.4.0.0/27", 3), cn("192.168.0.0/24", 8)},
	{cn("172.16.0.0/19", 11), cn("172.17.0.0/26", 2)},
}

func TestAgainstReference(t *testing.T) {
	for ci, networks := range oracleConfigs {
		for seed := range uint64(5) {
			rnd := rand.New(rand.NewPCG(seed, uint64(ci)))
			h, err := newHarness(networks)
			if err != nil {
				t.Fatal(err)
			}
			for step := range 3000 {
				// Bias towards Allocate so ranges fill up and wrap.
				op := opKind(rnd.IntN(int(numOps) + 2))
				if op >= numOps {
					op = opAllocate
				}
				if err := h.step(op, rnd.IntN(1<<20)); err != nil {
					t.Fatalf("config %d seed %d step %d: %v", ci, seed, step, err)
				}
			}
		}
	}
}
