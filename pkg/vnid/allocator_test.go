package vnid

import (
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

func seeded(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x5eed)) }

func mustRange(t testing.TB, min, max uint32, rnd *rand.Rand) *Allocator {
	t.Helper()
	a, err := NewAllocatorRange(min, max, rnd)
	if err != nil {
		t.Fatalf("NewAllocatorRange(%d, %d): %v", min, max, err)
	}
	return a
}

func TestAllocateFullRange(t *testing.T) {
	a := NewAllocator(nil)
	if a.Free() != int(MaxVNID-MinVNID+1) || a.Allocated() != 0 {
		t.Fatalf("new allocator: Free()=%d Allocated()=%d", a.Free(), a.Allocated())
	}
	seen := map[uint32]bool{}
	for range 1000 {
		id, err := a.Allocate()
		if err != nil {
			t.Fatalf("Allocate(): %v", err)
		}
		if !Allocatable(id) || seen[id] || !a.Has(id) {
			t.Fatalf("Allocate() = %d: not allocatable, duplicate, or not Has", id)
		}
		seen[id] = true
	}
	if a.Allocated() != 1000 {
		t.Errorf("Allocated() = %d, want 1000", a.Allocated())
	}
}

func TestRandomScanDistribution(t *testing.T) {
	draw := func(seed uint64) []uint32 {
		a := mustRange(t, MinVNID, MinVNID+9999, seeded(seed))
		var ids []uint32
		for range 200 {
			id, err := a.Allocate()
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		return ids
	}
	a, b, again := draw(1), draw(2), draw(1)
	same, sameSeed := 0, 0
	var low int // allocations in the lower half of the range
	for i := range a {
		if a[i] == b[i] {
			same++
		}
		if a[i] == again[i] {
			sameSeed++
		}
		if a[i] < MinVNID+5000 {
			low++
		}
	}
	if same > 10 {
		t.Errorf("seeds 1 and 2 agree on %d of %d allocations; want different sequences", same, len(a))
	}
	if sameSeed != len(a) {
		t.Errorf("seed 1 twice agrees on %d of %d allocations; want deterministic", sameSeed, len(a))
	}
	if low < 60 || low > 140 { // Binomial(200, 1/2): far outside ±5σ
		t.Errorf("%d of %d allocations in the lower half; want about half", low, len(a))
	}
	// Not sequential: a scan from a fixed start would give consecutive IDs.
	if consecutive := countConsecutive(a); consecutive > 20 {
		t.Errorf("%d consecutive pairs in a random-scan sequence", consecutive)
	}
}

func countConsecutive(ids []uint32) int {
	n := 0
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1]+1 {
			n++
		}
	}
	return n
}

func TestExhaustion(t *testing.T) {
	a := mustRange(t, 100, 115, seeded(7))
	seen := map[uint32]bool{}
	for range 16 {
		id, err := a.Allocate()
		if err != nil || id < 100 || id > 115 || seen[id] {
			t.Fatalf("Allocate() = %d, %v; want a new ID in [100, 115]", id, err)
		}
		seen[id] = true
	}
	for range 2 {
		if id, err := a.Allocate(); !errors.Is(err, ErrExhausted) || id != 0 {
			t.Fatalf("Allocate() on full range = %d, %v; want 0, ErrExhausted", id, err)
		}
	}
	if err := a.Release(107); err != nil {
		t.Fatal(err)
	}
	if id, err := a.Allocate(); err != nil || id != 107 {
		t.Errorf("Allocate() with only 107 free = %d, %v", id, err)
	}
}

func TestMarkRebuild(t *testing.T) {
	a := mustRange(t, MinVNID, MinVNID+3, seeded(3))
	for _, id := range []uint32{GlobalVNID, ReservedVNID, 9, 0, 11, 13} {
		if err := a.Mark(id); err != nil {
			t.Fatalf("Mark(%d): %v", id, err)
		}
	}
	if err := a.Mark(11); !errors.Is(err, ErrAlreadyAllocated) || !strings.Contains(err.Error(), "11") {
		t.Errorf("Mark(11) twice = %v, want ErrAlreadyAllocated naming 11", err)
	}
	if a.Allocated() != 2 || a.Has(GlobalVNID) || a.Has(ReservedVNID) || !a.Has(13) {
		t.Errorf("after rebuild: Allocated()=%d, Has(0)=%v Has(1)=%v Has(13)=%v; want 2, false, false, true",
			a.Allocated(), a.Has(0), a.Has(1), a.Has(13))
	}
	got := map[uint32]bool{}
	for range 2 {
		id, err := a.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		got[id] = true
	}
	if !got[10] || !got[12] {
		t.Errorf("allocations after rebuild = %v, want 10 and 12", got)
	}
}

func TestOutOfRange(t *testing.T) {
	a := mustRange(t, 100, 200, seeded(1))
	for _, id := range []uint32{MinVNID, 99, 201, MaxVNID + 1, 1<<32 - 1} {
		if err := a.Mark(id); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("Mark(%d) = %v, want ErrOutOfRange", id, err)
		}
		if err := a.Release(id); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("Release(%d) = %v, want ErrOutOfRange", id, err)
		}
		if a.Has(id) {
			t.Errorf("Has(%d) = true", id)
		}
	}
	full := NewAllocator(seeded(1))
	if err := full.Mark(MaxVNID + 1); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("Mark(MaxVNID+1) = %v, want ErrOutOfRange", err)
	}
	if err := full.Mark(MaxVNID); err != nil {
		t.Errorf("Mark(MaxVNID) = %v", err)
	}
}

func TestReleaseIdempotent(t *testing.T) {
	a := mustRange(t, MinVNID, MinVNID+9, seeded(5))
	id, err := a.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := a.Release(id); err != nil {
			t.Fatalf("Release(%d): %v", id, err)
		}
	}
	for _, shared := range []uint32{GlobalVNID, ReservedVNID, 5} {
		if err := a.Release(shared); err != nil {
			t.Errorf("Release(%d) = %v, want nil (ignored)", shared, err)
		}
	}
	if a.Has(id) || a.Allocated() != 0 {
		t.Errorf("after release: Has=%v Allocated()=%d", a.Has(id), a.Allocated())
	}
}

func TestNewAllocatorRangeInvalid(t *testing.T) {
	for _, r := range [][2]uint32{{0, 100}, {9, 100}, {100, 99}, {10, MaxVNID + 1}} {
		if a, err := NewAllocatorRange(r[0], r[1], nil); a != nil || !errors.Is(err, ErrInvalidRange) {
			t.Errorf("NewAllocatorRange(%d, %d) = %v, %v; want ErrInvalidRange", r[0], r[1], a, err)
		}
	}
	if _, err := NewAllocatorRange(MaxVNID, MaxVNID, nil); err != nil {
		t.Errorf("NewAllocatorRange(MaxVNID, MaxVNID) = %v", err)
	}
}

func TestConcurrentAllocate(t *testing.T) {
	a := mustRange(t, MinVNID, MinVNID+299, nil)
	const workers, perWorker = 8, 50 // 400 attempts for 300 IDs
	results := make([][]uint32, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				id, err := a.Allocate()
				if err != nil {
					if !errors.Is(err, ErrExhausted) {
						t.Errorf("Allocate(): %v", err)
					}
					continue
				}
				results[w] = append(results[w], id)
				a.Has(id)
				a.Mark(id) // already allocated; exercises the lock
			}
		}()
	}
	wg.Wait()
	seen := map[uint32]bool{}
	for _, ids := range results {
		for _, id := range ids {
			if seen[id] {
				t.Fatalf("VNID %d allocated twice", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != 300 || a.Free() != 0 {
		t.Errorf("allocated %d distinct IDs, Free()=%d; want 300, 0", len(seen), a.Free())
	}
}

func TestAgainstReference(t *testing.T) {
	ranges := [][2]uint32{{MinVNID, MinVNID}, {MinVNID, MinVNID + 15}, {1000, 1199}, {MaxVNID - 63, MaxVNID}}
	for _, r := range ranges {
		for seed := range uint64(5) {
			h, err := newHarness(r[0], r[1], seed)
			if err != nil {
				t.Fatal(err)
			}
			rnd := seeded(seed + 100)
			for step := range 3000 {
				op := opKind(rnd.IntN(int(numOps) + 2))
				if op >= numOps {
					op = opAllocate // bias towards filling the range
				}
				if err := h.step(op, rnd.IntN(1<<20)); err != nil {
					t.Fatalf("range %v seed %d step %d: %v", r, seed, step, err)
				}
			}
		}
	}
}

func TestValidDescribe(t *testing.T) {
	tests := []struct {
		id          uint32
		valid       bool
		allocatable bool
		describe    string
	}{
		{GlobalVNID, true, false, "global"},
		{ReservedVNID, true, false, "reserved (control plane)"},
		{5, true, false, "reserved"},
		{MinVNID, true, true, "allocatable"},
		{MaxVNID, true, true, "allocatable"},
		{MaxVNID + 1, false, false, "invalid (above 16777215)"},
	}
	for _, tt := range tests {
		if Valid(tt.id) != tt.valid || Allocatable(tt.id) != tt.allocatable || Describe(tt.id) != tt.describe {
			t.Errorf("id %d: Valid=%v Allocatable=%v Describe=%q; want %v %v %q", tt.id,
				Valid(tt.id), Allocatable(tt.id), Describe(tt.id), tt.valid, tt.allocatable, tt.describe)
		}
	}
}
