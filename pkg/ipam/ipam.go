// Package ipam hands out pod addresses from the node's HostSubnet.
//
// Leases live on disk, one file per address in <dataDir>/<network>/, named
// by the IP and holding "<container id>\r\n<ifname>" — the layout of the CNI
// host-local plugin's disk backend, so the directory can be read (and an
// agent downgraded) across versions; files in host-local's older format,
// "<container id>" alone, are found and released too. The last address
// handed out is kept in last_reserved_ip.0 as host-local keeps it, and the
// next allocation starts after it (round robin: an address just released is
// not handed out again until the rest of the subnet was used).
//
// A Store is the only writer of its directory while it is open (the
// agent's CNI server); it reads the directory once at Open and keeps an
// index of every lease in memory, updated by its own writes and refreshed
// by Leases.
//
// Concurrency (why the allocator is not host-local's): picking the address
// is done in memory under the Store's mutex and takes microseconds; the
// lease file is then written outside the mutex, with O_EXCL, while the
// address is marked pending in the index so nobody else picks it. With 50
// pods starting at once on a 2-core node the earlier design — host-local's
// allocator, its file reads and two file writes per ADD under one mutex —
// queued every ADD behind the others' file I/O (86–123 ms mean at 50
// concurrent ADDs, docs/benchmarks.md).
package ipam

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// ErrExhausted is wrapped by Allocate's error when every address of the
// subnet is leased.
var ErrExhausted = errors.New("no free address")

const (
	// lineBreak separates container ID and interface name in a lease file
	// (host-local's disk backend).
	lineBreak = "\r\n"
	// cursorFile holds the last address handed out (host-local's
	// last_reserved_ip.<range index>; ovs-sdn has one range).
	cursorFile = "last_reserved_ip.0"
)

// Lease is one leased address.
type Lease struct {
	IP          netip.Addr
	ContainerID string
	IfName      string
}

// Store is the lease store of one network on one node. All methods are safe
// for concurrent use.
type Store struct {
	dir string

	mu sync.Mutex
	// leased maps every leased address to its lease file's content
	// (owner); addresses being written by an Allocate are in it too, and
	// in pending.
	leased  map[netip.Addr]string
	pending map[netip.Addr]bool
	// byOwner is leased inverted: owner → its addresses.
	byOwner map[string][]netip.Addr
	// last is the last address handed out (the round-robin cursor).
	last netip.Addr

	// The cursor file has one writer at a time; an Allocate that finds
	// the writer busy marks cursorDirty and leaves, the writer writes
	// again before it stops (the file ends with the newest cursor; no
	// ADD waits for another's write).
	cursorMu    sync.Mutex
	cursorBusy  bool
	cursorDirty bool
}

// Open opens (creating it 0755 if needed) the lease directory
// <dataDir>/<network> and reads its leases.
func Open(dataDir, network string) (*Store, error) {
	dir := filepath.Join(dataDir, network)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("ipam: open lease store %s: %w", dir, err)
	}
	s := &Store{dir: dir, pending: map[netip.Addr]bool{}}
	if _, err := s.Leases(); err != nil {
		return nil, fmt.Errorf("ipam: read lease store %s: %w", dir, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, cursorFile)); err == nil {
		// A cursor that does not parse (or lies outside the subnet
		// asked for) only costs the round robin one turn.
		s.last, _ = netip.ParseAddr(strings.TrimSpace(string(b)))
	}
	return s, nil
}

// Dir is the lease directory.
func (s *Store) Dir() string { return s.dir }

// Close releases nothing today (the Store holds no open file); it is kept so
// callers need not change when it does.
func (s *Store) Close() error { return nil }

// owner is the content of a lease file of (id, ifname).
func owner(id, ifname string) string { return strings.TrimSpace(id) + lineBreak + ifname }

// Allocate returns the address leased to (id, ifname) in subnet, leasing a
// free one if there is none. gateway (and the subnet's network and
// broadcast addresses) are never handed out. Idempotent: a second call
// returns the same address with existed=true. When the subnet is full the
// error wraps ErrExhausted. Calls for one (id, ifname) must not run
// concurrently with each other or with its Release (the CNI server
// serializes per container); calls for different owners may.
func (s *Store) Allocate(id, ifname string, subnet netip.Prefix, gateway netip.Addr) (addr netip.Prefix, existed bool, err error) {
	if !subnet.Addr().Is4() || !gateway.Is4() || !subnet.Contains(gateway) || subnet.Bits() > 30 {
		return netip.Prefix{}, false, fmt.Errorf("ipam: invalid subnet %s / gateway %s", subnet, gateway)
	}
	subnet = subnet.Masked()
	own := owner(id, ifname)
	for {
		s.mu.Lock()
		if ip, ok := s.lookupLocked(id, ifname, subnet); ok {
			s.mu.Unlock()
			return netip.PrefixFrom(ip, subnet.Bits()), true, nil
		}
		ip, ok := s.pickLocked(subnet, gateway)
		if !ok {
			s.mu.Unlock()
			return netip.Prefix{}, false, fmt.Errorf("ipam: subnet %s: %w (leases in %s)", subnet, ErrExhausted, s.dir)
		}
		s.addLocked(ip, own)
		s.pending[ip] = true
		s.last = ip
		s.mu.Unlock()

		werr := leaseWriter(filepath.Join(s.dir, ip.String()), own)

		s.mu.Lock()
		delete(s.pending, ip)
		if werr != nil {
			s.removeLocked(ip)
		}
		if errors.Is(werr, fs.ErrExist) {
			// A lease file this Store did not write (the directory
			// had another writer): learn it and pick again — each
			// round leases one more address, so this ends.
			if b, err := os.ReadFile(filepath.Join(s.dir, ip.String())); err == nil {
				s.addLocked(ip, strings.TrimSpace(string(b)))
			} else {
				s.addLocked(ip, "")
			}
			s.mu.Unlock()
			continue
		}
		s.mu.Unlock()
		if werr != nil {
			return netip.Prefix{}, false, fmt.Errorf("ipam: lease %s in %s: %w", ip, s.dir, werr)
		}
		s.saveCursor()
		return netip.PrefixFrom(ip, subnet.Bits()), false, nil
	}
}

// pickLocked returns the first free address after the cursor, wrapping
// around the usable addresses of subnet (neither its network nor broadcast
// address, nor gateway).
func (s *Store) pickLocked(subnet netip.Prefix, gateway netip.Addr) (netip.Addr, bool) {
	first := subnet.Addr().Next()
	lastUsable := lastAddr(subnet).Prev()
	start := first
	if s.last.IsValid() && subnet.Contains(s.last) && s.last.Compare(lastUsable) < 0 && s.last.Compare(first) >= 0 {
		start = s.last.Next()
	}
	ip := start
	for {
		if _, taken := s.leased[ip]; !taken && ip != gateway {
			return ip, true
		}
		if ip = ip.Next(); ip.Compare(lastUsable) > 0 {
			ip = first
		}
		if ip == start {
			return netip.Addr{}, false
		}
	}
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// leaseWriter is writeLease; tests replace it to hold a write open.
var leaseWriter = writeLease

// writeLease creates the lease file name with content; it fails with
// fs.ErrExist if the file exists. A file it could not fill is removed.
func writeLease(name, content string) error {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(name)
	}
	return err
}

// saveCursor writes the newest cursor to cursorFile, coalescing concurrent
// callers (see Store). Best effort: a failed write only costs the round
// robin its place after a restart.
func (s *Store) saveCursor() {
	s.cursorMu.Lock()
	if s.cursorBusy {
		s.cursorDirty = true
		s.cursorMu.Unlock()
		return
	}
	s.cursorBusy = true
	for {
		s.cursorDirty = false
		s.cursorMu.Unlock()
		s.mu.Lock()
		last := s.last
		s.mu.Unlock()
		_ = os.WriteFile(filepath.Join(s.dir, cursorFile), []byte(last.String()), 0o600)
		s.cursorMu.Lock()
		if !s.cursorDirty {
			s.cursorBusy = false
			s.cursorMu.Unlock()
			return
		}
	}
}

// addLocked records ip as leased by own.
func (s *Store) addLocked(ip netip.Addr, own string) {
	s.leased[ip] = own
	s.byOwner[own] = append(s.byOwner[own], ip)
}

// removeLocked forgets the lease of ip.
func (s *Store) removeLocked(ip netip.Addr) {
	own, ok := s.leased[ip]
	if !ok {
		return
	}
	delete(s.leased, ip)
	s.byOwner[own] = slices.DeleteFunc(s.byOwner[own], func(a netip.Addr) bool { return a == ip })
	if len(s.byOwner[own]) == 0 {
		delete(s.byOwner, own)
	}
}

// Lookup returns the address leased to (id, ifname), if any.
func (s *Store) Lookup(id, ifname string) (netip.Addr, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookupLocked(id, ifname, netip.Prefix{})
}

// lookupLocked returns the first lease of (id, ifname) — or, as host-local
// does, of the container ID alone (the older format) — restricted to
// within when it is valid. Pending leases count.
func (s *Store) lookupLocked(id, ifname string, within netip.Prefix) (netip.Addr, bool) {
	for _, k := range []string{owner(id, ifname), strings.TrimSpace(id)} {
		for _, a := range s.byOwner[k] {
			if !within.IsValid() || within.Contains(a) {
				return a, true
			}
		}
	}
	return netip.Addr{}, false
}

// Release frees every address leased to (id, ifname) — or, if it has none,
// to the container ID alone (the older format). Idempotent: releasing
// nothing is not an error; a lease file already gone is not either.
func (s *Store) Release(id, ifname string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := owner(id, ifname)
	if len(s.byOwner[k]) == 0 {
		k = strings.TrimSpace(id)
	}
	var errs []error
	for _, a := range slices.Clone(s.byOwner[k]) {
		if s.pending[a] {
			continue // another call of this owner is writing it (a caller bug); its Allocate decides
		}
		err := os.Remove(filepath.Join(s.dir, a.String()))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		s.removeLocked(a)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ipam: release %s/%s: %w", id, ifname, err)
	}
	return nil
}

// Leases lists every lease on disk, sorted by address, and makes the index
// the directory's content (plus the leases being written): leases written
// by someone else — another process, an agent that crashed mid-ADD before
// this Store was opened — can be released by what follows a listing, e.g.
// CNI GC. Files that are not leases (the cursor, host-local's lock) are
// skipped.
func (s *Store) Leases() ([]Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("ipam: list leases: %w", err)
	}
	leased := map[netip.Addr]string{}
	var out []Lease
	for _, e := range entries {
		ip, err := netip.ParseAddr(e.Name())
		if err != nil || e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if err != nil {
			continue // released meanwhile
		}
		own := strings.TrimSpace(string(b))
		leased[ip] = own
		id, ifname, _ := strings.Cut(own, lineBreak)
		out = append(out, Lease{IP: ip, ContainerID: strings.TrimSpace(id), IfName: strings.TrimSpace(ifname)})
	}
	for ip := range s.pending {
		leased[ip] = s.leased[ip]
	}
	s.leased = map[netip.Addr]string{}
	s.byOwner = map[string][]netip.Addr{}
	for _, ip := range slices.SortedFunc(maps.Keys(leased), netip.Addr.Compare) {
		s.addLocked(ip, leased[ip])
	}
	slices.SortFunc(out, func(a, b Lease) int { return a.IP.Compare(b.IP) })
	return out, nil
}
