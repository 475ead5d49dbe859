package ipam

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
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
