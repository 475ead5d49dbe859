package ipam

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/plugins/ipam/host-local/backend/allocator"
	"github.com/containernetworking/plugins/plugins/ipam/host-local/backend/disk"
)

var (
	subnet = netip.MustParsePrefix("10.128.2.0/29") // .1 gateway, .2-.6 pods
	gw     = netip.MustParseAddr("10.128.2.1")
)

func TestAllocateReleaseReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, "net")
	if err != nil {
		t.Fatal(err)
	}
	a, existed, err := s.Allocate("c1", "eth0", subnet, gw)
	if err != nil || existed || a != netip.MustParsePrefix("10.128.2.2/29") {
		t.Fatalf("first allocation %s existed=%v err=%v, want 10.128.2.2/29", a, existed, err)
	}
	again, existed, err := s.Allocate("c1", "eth0", subnet, gw)
	if err != nil || !existed || again != a {
		t.Fatalf("repeat allocation %s existed=%v err=%v, want %s", again, existed, err, a)
	}
	_ = s.Close()
	// A restarted agent sees the lease and does not hand the address out.
	s, err = Open(dir, "net")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ip, ok := s.Lookup("c1", "eth0"); !ok || ip != a.Addr() {
		t.Fatalf("lookup after reopen: %s %v", ip, ok)
	}
	var got []netip.Addr
	for i := 2; i <= 5; i++ {
		p, _, err := s.Allocate(fmt.Sprintf("c%d", i), "eth0", subnet, gw)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p.Addr())
	}
	for _, ip := range got {
		if ip == a.Addr() || ip == gw {
			t.Errorf("handed out %s again", ip)
		}
	}
	if _, _, err := s.Allocate("c6", "eth0", subnet, gw); !errors.Is(err, ErrExhausted) {
		t.Fatalf("allocation in a full subnet: %v, want ErrExhausted", err)
	}
	if err := s.Release("c1", "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := s.Release("c1", "eth0"); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if p, _, err := s.Allocate("c6", "eth0", subnet, gw); err != nil || p != a {
		t.Fatalf("after release: %s %v, want %s", p, err, a)
	}
	ls, err := s.Leases()
	if err != nil || len(ls) != 5 {
		t.Fatalf("leases %v %v", ls, err)
	}
	if ls[0].IP != a.Addr() || ls[0].ContainerID != "c6" || ls[0].IfName != "eth0" {
		t.Errorf("first lease %+v", ls[0])
	}
}

func TestConcurrentAllocate(t *testing.T) {
	s, err := Open(t.TempDir(), "net")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	big := netip.MustParsePrefix("10.128.0.0/24")
	const n = 100
	ips := make([]netip.Addr, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, _, err := s.Allocate(fmt.Sprintf("c%d", i), "eth0", big, netip.MustParseAddr("10.128.0.1"))
			if err != nil {
				t.Error(err)
			}
			ips[i] = p.Addr()
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]bool{}
	for _, ip := range ips {
		if seen[ip] {
			t.Fatalf("%s handed out twice", ip)
		}
		seen[ip] = true
	}
}

func TestAllocateRejectsBadSubnet(t *testing.T) {
	s, err := Open(t.TempDir(), "net")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := s.Allocate("c", "eth0", subnet, netip.MustParseAddr("10.0.0.1")); err == nil {
		t.Error("gateway outside the subnet accepted")
	}
}

// TestIndexMatchesDirectory: after a random sequence of allocations and
// releases, Lookup (the index) agrees with the lease files, also for a
// Store reopened on the directory; leases in the old single-line format
// are found and released.
func TestIndexMatchesDirectory(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, "net")
	if err != nil {
		t.Fatal(err)
	}
	subnet := netip.MustParsePrefix("10.128.2.0/24")
	rng := rand.New(rand.NewPCG(1, 2))
	live := map[string]bool{}
	for i := range 300 {
		id := fmt.Sprintf("c%d", rng.IntN(40))
		if live[id] && rng.IntN(2) == 0 {
			if err := s.Release(id, "eth0"); err != nil {
				t.Fatal(err)
			}
			delete(live, id)
			continue
		}
		if _, _, err := s.Allocate(id, "eth0", subnet, gw); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		live[id] = true
	}
	// An old-format lease, as an earlier plugin wrote it.
	if err := os.WriteFile(filepath.Join(s.Dir(), "10.128.2.250"), []byte("legacy"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, reopened := range []bool{false, true} {
		s, err = Open(dir, "net")
		if err != nil {
			t.Fatal(err)
		}
		leases, err := s.Leases()
		if err != nil {
			t.Fatal(err)
		}
		onDisk := map[string]netip.Addr{}
		for _, l := range leases {
			onDisk[l.ContainerID] = l.IP
		}
		for i := range 40 {
			id := fmt.Sprintf("c%d", i)
			ip, ok := s.Lookup(id, "eth0")
			if ok != live[id] || ip != onDisk[id] {
				t.Errorf("reopened=%v: Lookup(%s) = %s, %v; lease file says %s (live %v)", reopened, id, ip, ok, onDisk[id], live[id])
			}
		}
		if len(onDisk) != len(live)+1 {
			t.Errorf("reopened=%v: %d lease files, want %d", reopened, len(onDisk), len(live)+1)
		}
		if ip, ok := s.Lookup("legacy", "eth0"); !ok || ip.String() != "10.128.2.250" {
			t.Errorf("old-format lease not found: %s %v", ip, ok)
		}
		s.Close()
	}
	s, _ = Open(dir, "net")
	defer s.Close()
	if err := s.Release("legacy", "eth0"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "10.128.2.250")); !os.IsNotExist(err) {
		t.Errorf("old-format lease not released: %v", err)
	}
}

// TestLeasesRefreshIndex: a lease another Store wrote after this one was
// opened (an agent that crashed mid-ADD) is released once Leases listed it.
func TestLeasesRefreshIndex(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, "net")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other, err := Open(dir, "net")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := other.Allocate("orphan", "eth0", subnet, gw); err != nil {
		t.Fatal(err)
	}
	_ = other.Close()
	leases, err := s.Leases()
	if err != nil || len(leases) != 1 || leases[0].ContainerID != "orphan" {
		t.Fatalf("leases %v, %v; want the orphan's", leases, err)
	}
	if err := s.Release("orphan", "eth0"); err != nil {
		t.Fatal(err)
	}
	if leases, _ := s.Leases(); len(leases) != 0 {
		t.Errorf("after release: %v, want none", leases)
	}
}

// TestRoundRobin: a released address is handed out again only after the
// rest of the subnet was used, also across a reopen (the cursor file).
func TestRoundRobin(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, "net")
	if err != nil {
		t.Fatal(err)
	}
	alloc := func(s *Store, id string) netip.Addr {
		t.Helper()
		p, _, err := s.Allocate(id, "eth0", subnet, gw)
		if err != nil {
			t.Fatal(err)
		}
		return p.Addr()
	}
	if got := alloc(s, "c1"); got.String() != "10.128.2.2" {
		t.Fatalf("first address %s, want 10.128.2.2", got)
	}
	if err := s.Release("c1", "eth0"); err != nil {
		t.Fatal(err)
	}
	if got := alloc(s, "c2"); got.String() != "10.128.2.3" {
		t.Fatalf("after releasing .2: %s, want 10.128.2.3 (round robin)", got)
	}
	_ = s.Close()
	s, err = Open(dir, "net")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, id := range []string{"c3", "c4", "c5", "c6"} {
		got = append(got, alloc(s, id).String())
	}
	if want := "[10.128.2.4 10.128.2.5 10.128.2.6 10.128.2.2]"; fmt.Sprint(got) != want {
		t.Errorf("after reopen: %v, want %s (continue after the cursor, wrap, skip the gateway)", got, want)
	}
}

// TestSlowLeaseWriteDoesNotBlock: while one Allocate's lease file write
// hangs, other owners allocate (different addresses) and Lookup answers —
// the write is outside the Store's mutex — and the hanging owner's address
// is not handed to anyone else.
func TestSlowLeaseWriteDoesNotBlock(t *testing.T) {
	s, err := Open(t.TempDir(), "net")
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan string), make(chan struct{})
	var once sync.Once
	leaseWriter = func(name, content string) error {
		if strings.HasPrefix(content, "slow") {
			once.Do(func() { // the first write only: a retry must not hang the test
				entered <- filepath.Base(name)
				<-release
			})
		}
		return writeLease(name, content)
	}
	defer func() { leaseWriter = writeLease }()
	done := make(chan netip.Prefix)
	go func() {
		p, _, err := s.Allocate("slow", "eth0", subnet, gw)
		if err != nil {
			t.Error(err)
		}
		done <- p
	}()
	slowIP := <-entered
	if ip, ok := s.Lookup("slow", "eth0"); !ok || ip.String() != slowIP {
		t.Errorf("Lookup of the owner being written: %s %v, want %s", ip, ok, slowIP)
	}
	for i := range 4 {
		p, _, err := s.Allocate(fmt.Sprintf("c%d", i), "eth0", subnet, gw)
		if err != nil {
			t.Fatalf("allocation %d while another lease is being written: %v", i, err)
		}
		if p.Addr().String() == slowIP {
			t.Fatalf("%s handed out while its lease was being written", slowIP)
		}
	}
	if _, _, err := s.Allocate("c9", "eth0", subnet, gw); !errors.Is(err, ErrExhausted) {
		t.Errorf("sixth address in a 5-address subnet: %v, want ErrExhausted", err)
	}
	close(release)
	if p := <-done; p.Addr().String() != slowIP {
		t.Errorf("slow allocation returned %s, want %s", p, slowIP)
	}
	leases, err := s.Leases()
	if err != nil || len(leases) != 5 {
		t.Fatalf("leases %v %v, want 5", leases, err)
	}
}

// TestForeignLeaseFile: a lease file written behind the Store's back at the
// address it would pick next is skipped (never overwritten) and learned.
func TestForeignLeaseFile(t *testing.T) {
	s, err := Open(t.TempDir(), "net")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir(), "10.128.2.2"), []byte("foreign\r\neth0"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, _, err := s.Allocate("c1", "eth0", subnet, gw)
	if err != nil || p.Addr().String() != "10.128.2.3" {
		t.Fatalf("allocation next to a foreign lease: %s %v, want 10.128.2.3", p, err)
	}
	if b, _ := os.ReadFile(filepath.Join(s.Dir(), "10.128.2.2")); string(b) != "foreign\r\neth0" {
		t.Errorf("foreign lease overwritten: %q", b)
	}
	if ip, ok := s.Lookup("foreign", "eth0"); !ok || ip.String() != "10.128.2.2" {
		t.Errorf("foreign lease not learned: %s %v", ip, ok)
	}
}

// TestHostLocalReadsLeases: the CNI host-local allocator, on the directory
// this Store wrote, finds the Store's lease by owner and allocates around
// it; and the Store finds host-local's lease (the format is shared).
func TestHostLocalReadsLeases(t *testing.T) {
	dataDir := t.TempDir()
	s, err := Open(dataDir, "net")
	if err != nil {
		t.Fatal(err)
	}
	mine, _, err := s.Allocate("mine", "eth0", subnet, gw)
	if err != nil {
		t.Fatal(err)
	}
	d, err := disk.New("net", dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got := d.GetByID("mine", "eth0"); len(got) != 1 || got[0].String() != mine.Addr().String() {
		t.Errorf("host-local GetByID(mine) = %v, want %s", got, mine.Addr())
	}
	rs := allocator.RangeSet{allocator.Range{
		Subnet:  types.IPNet(net.IPNet{IP: subnet.Addr().AsSlice(), Mask: net.CIDRMask(subnet.Bits(), 32)}),
		Gateway: gw.AsSlice(),
	}}
	if err := rs.Canonicalize(); err != nil {
		t.Fatal(err)
	}
	cfg, err := allocator.NewIPAllocator(&rs, d, 0).Get("theirs", "eth0", nil)
	if err != nil {
		t.Fatal(err)
	}
	theirs := cfg.Address.IP.String()
	if theirs == mine.Addr().String() || theirs == gw.String() {
		t.Fatalf("host-local handed out %s (ours %s, gateway %s)", theirs, mine.Addr(), gw)
	}
	if _, err := s.Leases(); err != nil {
		t.Fatal(err)
	}
	if ip, ok := s.Lookup("theirs", "eth0"); !ok || ip.String() != theirs {
		t.Errorf("Store does not see host-local's lease: %s %v, want %s", ip, ok, theirs)
	}
	next, _, err := s.Allocate("next", "eth0", subnet, gw)
	if err != nil || next.Addr().String() == theirs || next == mine {
		t.Errorf("next allocation %s %v, must differ from %s and %s", next, err, theirs, mine)
	}
}

// TestConcurrentAllocateRelease: owners allocate and release concurrently
// with listings; no address is ever held by two owners and the index
// equals the lease files at the end.
func TestConcurrentAllocateRelease(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, "net")
	if err != nil {
		t.Fatal(err)
	}
	big := netip.MustParsePrefix("10.128.0.0/26")
	var mu sync.Mutex
	holder := map[netip.Addr]string{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			for i := range 200 {
				id := fmt.Sprintf("w%d-c%d", w, rng.IntN(6))
				switch rng.IntN(3) {
				case 0:
					// Forget the holder before the Store frees
					// the address (another worker may get it
					// right after).
					if ip, had := s.Lookup(id, "eth0"); had {
						mu.Lock()
						delete(holder, ip)
						mu.Unlock()
					}
					if err := s.Release(id, "eth0"); err != nil {
						t.Error(err)
					}
				case 1:
					if _, err := s.Leases(); err != nil {
						t.Error(err)
					}
				default:
					p, _, err := s.Allocate(id, "eth0", big, netip.MustParseAddr("10.128.0.1"))
					if err != nil {
						t.Errorf("step %d: %v", i, err)
						return
					}
					mu.Lock()
					if h, ok := holder[p.Addr()]; ok && h != id {
						t.Errorf("%s held by %s and %s", p.Addr(), h, id)
					}
					holder[p.Addr()] = id
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	leases, err := s.Leases()
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != len(holder) {
		t.Errorf("%d lease files, %d addresses held", len(leases), len(holder))
	}
	for _, l := range leases {
		if holder[l.IP] != l.ContainerID {
			t.Errorf("lease file %s says %s, held by %q", l.IP, l.ContainerID, holder[l.IP])
		}
	}
}
