// Package ipam hands out pod addresses from the node's HostSubnet. It is a
// thin, concurrency-safe layer over the CNI host-local allocator
// (containernetworking/plugins host-local backend/allocator and
// backend/disk): one lease file per address in <dataDir>/<network>/, named
// by the IP and holding "<container id>\r\n<ifname>". Leases live on disk,
// so a restarted agent neither hands out an address twice nor forgets one.
//
// The disk backend's lock is an flock on the lease directory; it keeps two
// processes apart but not two goroutines of one process (flock locks belong
// to the open file description, which the goroutines share). Store adds the
// in-process mutex.
//
// The disk backend finds the leases of a container by reading every lease
// file, twice per allocation and once per release: with 50 pods starting at
// once that made IPAM the slowest step of a CNI ADD (O(leases) file reads
// per call, serialized). Store therefore keeps an index of the leases by
// container, read from the directory once at Open and kept up to date by
// its own writes; the files stay the record. The directory must have no
// other writer while a Store has it open (the agent's CNI server is the
// only one).
package ipam

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/plugins/ipam/host-local/backend/allocator"
	"github.com/containernetworking/plugins/plugins/ipam/host-local/backend/disk"
)

// ErrExhausted is wrapped by Allocate's error when every address of the
// subnet is leased.
var ErrExhausted = errors.New("no free address")

// Lease is one leased address.
type Lease struct {
	IP          netip.Addr
	ContainerID string
	IfName      string
}

// Store is the lease store of one network on one node. All methods are safe
// for concurrent use; they serialize on one mutex (each call is a few file
// operations).
type Store struct {
	mu   sync.Mutex
	dir  string
	disk *indexed
}

// Open opens (creating it 0755 if needed) the lease directory
// <dataDir>/<network>.
func Open(dataDir, network string) (*Store, error) {
	d, err := disk.New(network, dataDir)
	if err != nil {
		return nil, fmt.Errorf("ipam: open lease store %s: %w", filepath.Join(dataDir, network), err)
	}
	dir := filepath.Join(dataDir, network)
	idx, err := newIndexed(d, dir)
	if err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("ipam: read lease store %s: %w", dir, err)
	}
	return &Store{dir: dir, disk: idx}, nil
}

// Dir is the lease directory.
func (s *Store) Dir() string { return s.dir }

// Close releases the directory handle.
func (s *Store) Close() error { return s.disk.Close() }

// Allocate returns the address leased to (id, ifname) in subnet, leasing a
// free one if there is none. gateway (and the subnet's network and
// broadcast addresses) are never handed out. Idempotent: a second call
// returns the same address with existed=true. When the subnet is full the
// error wraps ErrExhausted.
func (s *Store) Allocate(id, ifname string, subnet netip.Prefix, gateway netip.Addr) (addr netip.Prefix, existed bool, err error) {
	if !subnet.Addr().Is4() || !gateway.Is4() || !subnet.Contains(gateway) {
		return netip.Prefix{}, false, fmt.Errorf("ipam: invalid subnet %s / gateway %s", subnet, gateway)
	}
	subnet = subnet.Masked()
	s.mu.Lock()
	defer s.mu.Unlock()
	if ip, ok := s.lookupLocked(id, ifname, subnet); ok {
		return netip.PrefixFrom(ip, subnet.Bits()), true, nil
	}
	rs := allocator.RangeSet{allocator.Range{
		Subnet:  types.IPNet(net.IPNet{IP: subnet.Addr().AsSlice(), Mask: net.CIDRMask(subnet.Bits(), 32)}),
		Gateway: gateway.AsSlice(),
	}}
	if err := rs.Canonicalize(); err != nil {
		return netip.Prefix{}, false, fmt.Errorf("ipam: subnet %s: %w", subnet, err)
	}
	cfg, err := allocator.NewIPAllocator(&rs, s.disk, 0).Get(id, ifname, nil)
	if err != nil {
		if strings.Contains(err.Error(), "no IP addresses available") {
			return netip.Prefix{}, false, fmt.Errorf("ipam: subnet %s: %w (leases in %s)", subnet, ErrExhausted, s.dir)
		}
		return netip.Prefix{}, false, fmt.Errorf("ipam: allocate in %s: %w", subnet, err)
	}
	ip, ok := netip.AddrFromSlice(cfg.Address.IP.To4())
	if !ok {
		return netip.Prefix{}, false, fmt.Errorf("ipam: allocator returned %v", cfg.Address.IP)
	}
	return netip.PrefixFrom(ip, subnet.Bits()), false, nil
}

// Lookup returns the address leased to (id, ifname), if any.
func (s *Store) Lookup(id, ifname string) (netip.Addr, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookupLocked(id, ifname, netip.Prefix{})
}

// lookupLocked returns the first IPv4 lease of (id, ifname), restricted to
// within when it is valid.
func (s *Store) lookupLocked(id, ifname string, within netip.Prefix) (netip.Addr, bool) {
	for _, ip := range s.disk.GetByID(id, ifname) {
		a, ok := netip.AddrFromSlice(ip.To4())
		if ok && (!within.IsValid() || within.Contains(a)) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// Release frees every address leased to (id, ifname). Idempotent: releasing
// nothing is not an error.
func (s *Store) Release(id, ifname string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.disk.ReleaseByID(id, ifname); err != nil {
		return fmt.Errorf("ipam: release %s/%s: %w", id, ifname, err)
	}
	return nil
}

// Leases lists every lease, sorted by address. Files that are not leases
// (the lock, last_reserved_ip.*) are skipped.
func (s *Store) Leases() ([]Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("ipam: list leases: %w", err)
	}
	var out []Lease
	// The scan also refreshes the index, so leases written by someone else
	// (another process, an agent that crashed mid-ADD before this Store was
	// opened) can be released by what follows a listing, e.g. CNI GC.
	byID := map[string][]netip.Addr{}
	for _, e := range entries {
		ip, err := netip.ParseAddr(e.Name())
		if err != nil || e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if err != nil {
			continue // released meanwhile
		}
		content := strings.TrimSpace(string(b))
		byID[content] = append(byID[content], ip)
		id, ifname, _ := strings.Cut(content, disk.LineBreak)
		out = append(out, Lease{IP: ip, ContainerID: strings.TrimSpace(id), IfName: strings.TrimSpace(ifname)})
	}
	s.disk.byID = byID
	slices.SortFunc(out, func(a, b Lease) int { return a.IP.Compare(b.IP) })
	return out, nil
}
