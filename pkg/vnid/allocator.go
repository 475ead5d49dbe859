package vnid

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/ovs-sdn/ovs-sdn/pkg/bitmap"
)

// Errors returned by this package. Callers branch on them with errors.Is;
// returned errors wrap them with the offending value.
var (
	// ErrExhausted reports that every allocatable VNID is in use.
	ErrExhausted = errors.New("no free VNID left")
	// ErrOutOfRange reports a VNID outside the allocator's range.
	ErrOutOfRange = errors.New("VNID out of range")
	// ErrAlreadyAllocated reports marking a VNID that is already marked.
	// It is expected, and ignored, for VNIDs shared by several namespaces.
	ErrAlreadyAllocated = errors.New("VNID already allocated")
	// ErrInvalidRange reports bad bounds given to NewAllocatorRange.
	ErrInvalidRange = errors.New("invalid VNID range")
	// ErrNotFound reports that a namespace has no VNID in a Map.
	ErrNotFound = errors.New("VNID not found")
)

// Allocator hands out VNIDs from [min, max] (MinVNID..MaxVNID unless built
// with NewAllocatorRange). It picks a uniformly random offset and scans
// forward, wrapping once, for the first free ID, as the Kubernetes
// random-scan bitmap allocator used by OpenShift SDN does: IDs of deleted
// namespaces are not reused right away, yet allocation stays cheap.
//
// IDs below MinVNID (GlobalVNID, ReservedVNID, 2..9) are never tracked:
// Mark and Release accept and ignore them.
//
// All methods are safe for concurrent use. State is in memory only; rebuild
// it at start by calling Mark for the netid of every NetNamespace. Build it
// with NewAllocator or NewAllocatorRange; the zero value is not usable.
type Allocator struct {
	mu        sync.Mutex
	min, max  uint32 // immutable
	rnd       *rand.Rand
	used      bitmap.Bitmap // bit i is VNID min+i
	allocated int
}

// NewAllocator returns an empty Allocator over MinVNID..MaxVNID using rnd
// for the random scan start, or a randomly seeded source if rnd is nil. The
// Allocator takes ownership of rnd: it must not be used elsewhere, since
// *rand.Rand is not safe for concurrent use.
func NewAllocator(rnd *rand.Rand) *Allocator {
	return newAllocator(MinVNID, MaxVNID, rnd)
}

// NewAllocatorRange is NewAllocator limited to [min, max], for tests and
// small deployments. It fails with ErrInvalidRange unless
// MinVNID <= min <= max <= MaxVNID.
func NewAllocatorRange(min, max uint32, rnd *rand.Rand) (*Allocator, error) {
	if min < MinVNID || max > MaxVNID || min > max {
		return nil, fmt.Errorf("[%d, %d] not within [%d, %d]: %w", min, max, MinVNID, MaxVNID, ErrInvalidRange)
	}
	return newAllocator(min, max, rnd), nil
}

func newAllocator(min, max uint32, rnd *rand.Rand) *Allocator {
	if rnd == nil {
		rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return &Allocator{min: min, max: max, rnd: rnd, used: bitmap.New(max - min + 1)}
}

// size returns the number of IDs in the range.
func (a *Allocator) size() uint32 { return a.max - a.min + 1 }

// Allocate reserves and returns a free VNID. It returns an error wrapping
// ErrExhausted, and changes nothing, when all are in use. When the range is
// not full it draws exactly one rnd.Uint64N(size) per call (the test oracle
// relies on this).
func (a *Allocator) Allocate() (uint32, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	size := a.size()
	if a.allocated == int(size) {
		return 0, fmt.Errorf("all %d VNIDs in [%d, %d] in use: %w", size, a.min, a.max, ErrExhausted)
	}
	start := uint32(a.rnd.Uint64N(uint64(size)))
	i, ok := a.used.NextClear(start, size)
	if !ok {
		i, _ = a.used.NextClear(0, start) // not full, so a free ID exists
	}
	a.used.Set(i)
	a.allocated++
	return a.min + i, nil
}

// Mark records id as allocated, for rebuilding from existing NetNamespaces.
// IDs below MinVNID are accepted and ignored. It returns an error wrapping
// ErrOutOfRange for other IDs outside [min, max], and one wrapping
// ErrAlreadyAllocated if id is already marked (expected for IDs shared by
// several namespaces); neither changes anything.
func (a *Allocator) Mark(id uint32) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	i, tracked, err := a.index(id)
	if err != nil || !tracked {
		return err
	}
	if a.used.Get(i) {
		return fmt.Errorf("mark VNID %d: %w", id, ErrAlreadyAllocated)
	}
	a.used.Set(i)
	a.allocated++
	return nil
}

// Release frees id. Releasing a free ID, or an ID below MinVNID, is a no-op
// (Release is idempotent). It returns an error wrapping ErrOutOfRange for
// other IDs outside [min, max]. Callers release an ID only once no
// namespace uses it.
func (a *Allocator) Release(id uint32) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	i, tracked, err := a.index(id)
	if err != nil || !tracked {
		return err
	}
	if a.used.Get(i) {
		a.used.Clear(i)
		a.allocated--
	}
	return nil
}

// Has reports whether id is allocated. It is false for IDs outside
// [min, max], including the shared IDs below MinVNID.
func (a *Allocator) Has(id uint32) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	i, tracked, err := a.index(id)
	return err == nil && tracked && a.used.Get(i)
}

// Allocated returns the number of allocated IDs.
func (a *Allocator) Allocated() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.allocated
}

// Free returns the number of free IDs; Allocated()+Free() is constant.
func (a *Allocator) Free() int {
	return int(a.size()) - a.Allocated()
}

// index maps id to its bit. tracked is false, with a nil error, for the
// untracked IDs below MinVNID; other IDs outside [min, max] give an error
// wrapping ErrOutOfRange.
func (a *Allocator) index(id uint32) (i uint32, tracked bool, err error) {
	switch {
	case id < MinVNID:
		return 0, false, nil
	case id < a.min || id > a.max:
		return 0, false, fmt.Errorf("VNID %d not in [%d, %d]: %w", id, a.min, a.max, ErrOutOfRange)
	}
	return id - a.min, true, nil
}
