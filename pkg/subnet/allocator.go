package subnet

import (
	"fmt"
	"net/netip"
	"sync"
)

// Allocator hands out node subnets from an ordered list of cluster networks.
// See the package comment for the allocation order.
//
// All methods are safe for concurrent use. State is in memory only; rebuild
// it at start with MarkAllocated.
type Allocator struct {
	mu     sync.Mutex
	ranges []*subnetRange // in the order of the cluster networks; immutable slice
	total  int            // number of subnets over all ranges; immutable
}

// NewAllocator returns an Allocator with nothing allocated over networks,
// which are tried in the order given. It fails, with an error wrapping
// ErrInvalidNetwork that names the offending entry by index and value, if
// ValidateNetworks rejects networks.
func NewAllocator(networks []ClusterNetwork) (*Allocator, error) {
	if err := ValidateNetworks(networks); err != nil {
		return nil, err
	}
	a := &Allocator{}
	for _, n := range networks {
		r := newRange(n)
		a.ranges = append(a.ranges, r)
		a.total += int(r.size())
	}
	return a, nil
}

// Allocate reserves and returns a free node subnet: the next free one, in
// allocation order, of the first range that is not full. It returns an error
// wrapping ErrExhausted, and changes nothing, when every range is full.
func (a *Allocator) Allocate() (netip.Prefix, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.ranges {
		if p, ok := r.allocate(); ok {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("all %d subnets of %d cluster networks allocated: %w",
		a.total, len(a.ranges), ErrExhausted)
}

// MarkAllocated records p, the subnet of an existing HostSubnet, as
// allocated. It does not move the next-fit position. It returns an error
// wrapping ErrNotInRange if p is not one of the node subnets of any range
// (outside them, wrong size or misaligned), and one wrapping
// ErrAlreadyAllocated if p is already allocated; neither changes anything.
func (a *Allocator) MarkAllocated(p netip.Prefix) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, i, err := a.find(p)
	if err != nil {
		return fmt.Errorf("mark subnet: %w", err)
	}
	if r.used.Get(i) {
		return fmt.Errorf("mark subnet %s: %w", p, ErrAlreadyAllocated)
	}
	r.mark(i)
	return nil
}

// Release returns p to its range. Releasing a subnet that is not allocated
// is a no-op (Release is idempotent). It returns an error wrapping
// ErrNotInRange if p is not one of the node subnets of any range.
func (a *Allocator) Release(p netip.Prefix) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, i, err := a.find(p)
	if err != nil {
		return fmt.Errorf("release subnet: %w", err)
	}
	r.release(i)
	return nil
}

// IsAllocated reports whether p is a node subnet of some range and is
// allocated. It is false for any prefix that is not a node subnet.
func (a *Allocator) IsAllocated(p netip.Prefix) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, i, err := a.find(p)
	return err == nil && r.used.Get(i)
}

// Allocated returns the number of allocated subnets over all ranges.
func (a *Allocator) Allocated() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, r := range a.ranges {
		n += r.allocated
	}
	return n
}

// Free returns the number of free subnets over all ranges. Allocated()+Free()
// is constant for an Allocator.
func (a *Allocator) Free() int {
	return a.total - a.Allocated()
}

// find returns the range and index of node subnet p, or an error wrapping
// ErrNotInRange. Callers hold a.mu. Ranges do not overlap, so at most one
// range matches.
func (a *Allocator) find(p netip.Prefix) (*subnetRange, uint32, error) {
	for _, r := range a.ranges {
		if i, ok := r.indexOf(p); ok {
			return r, i, nil
		}
	}
	return nil, 0, fmt.Errorf("%s: %w", p, ErrNotInRange)
}
