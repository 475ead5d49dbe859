package vnid

import (
	"errors"
	"fmt"
	"math/rand/v2"
)

// refAllocator is a slow, obviously correct model of Allocator used as a
// test oracle: a map of used IDs scanned one by one. Given a rand source
// with the same seed it makes the same random draws as Allocator.
type refAllocator struct {
	min, max uint32
	rnd      *rand.Rand
	used     map[uint32]bool
}

func newRefAllocator(min, max uint32, rnd *rand.Rand) *refAllocator {
	return &refAllocator{min: min, max: max, rnd: rnd, used: map[uint32]bool{}}
}

func (r *refAllocator) allocate() (uint32, error) {
	size := uint64(r.max - r.min + 1)
	if uint64(len(r.used)) == size {
		return 0, ErrExhausted
	}
	start := r.rnd.Uint64N(size)
	for k := range size {
		id := r.min + uint32((start+k)%size)
		if !r.used[id] {
			r.used[id] = true
			return id, nil
		}
	}
	panic("unreachable: not full but no free ID")
}

// check classifies id: ignore for shared IDs, or ErrOutOfRange.
func (r *refAllocator) check(id uint32) (ignore bool, err error) {
	if id < MinVNID {
		return true, nil
	}
	if id < r.min || id > r.max {
		return true, ErrOutOfRange
	}
	return false, nil
}

func (r *refAllocator) mark(id uint32) error {
	if ignore, err := r.check(id); ignore {
		return err
	}
	if r.used[id] {
		return ErrAlreadyAllocated
	}
	r.used[id] = true
	return nil
}

func (r *refAllocator) release(id uint32) error {
	if ignore, err := r.check(id); ignore {
		return err
	}
	delete(r.used, id)
	return nil
}

func (r *refAllocator) has(id uint32) bool { return r.used[id] }

// opKind is one operation of a random operation sequence.
type opKind uint8

const (
	opAllocate opKind = iota
	opRelease
	opMark
	opHas
	numOps
)

// harness drives an Allocator and a refAllocator with equally seeded rand
// sources and checks after each operation that they agree and that the
// invariants hold.
type harness struct {
	a        *Allocator
	ref      *refAllocator
	min, max uint32
	live     map[uint32]bool
}

func newHarness(min, max uint32, seed uint64) (*harness, error) {
	a, err := NewAllocatorRange(min, max, rand.New(rand.NewPCG(seed, 1)))
	if err != nil {
		return nil, err
	}
	ref := newRefAllocator(min, max, rand.New(rand.NewPCG(seed, 1)))
	return &harness{a: a, ref: ref, min: min, max: max, live: map[uint32]bool{}}, nil
}

// candidate maps arg to an ID: mostly inside the range, sometimes the
// shared IDs or just outside the range.
func (h *harness) candidate(arg int) uint32 {
	special := []uint32{GlobalVNID, ReservedVNID, MinVNID - 1, h.min - 1, h.max + 1, MaxVNID + 1, 1<<32 - 1}
	n := int(h.max-h.min+1) + len(special)
	if i := arg % n; i < len(special) {
		return special[i]
	} else {
		return h.min + uint32(i-len(special))
	}
}

func (h *harness) step(op opKind, arg int) error {
	id := h.candidate(arg)
	var err error
	switch op % numOps {
	case opAllocate:
		err = h.checkAllocate()
	case opRelease:
		err = agree("Release", id, h.a.Release(id), h.ref.release(id))
		delete(h.live, id)
	case opMark:
		err = agree("Mark", id, h.a.Mark(id), h.ref.mark(id))
		if h.a.Has(id) {
			h.live[id] = true
		}
	case opHas:
		if got, want := h.a.Has(id), h.ref.has(id); got != want {
			err = fmt.Errorf("Has(%d) = %v, reference %v", id, got, want)
		}
	}
	if err != nil {
		return err
	}
	return h.checkCounts()
}

func (h *harness) checkAllocate() error {
	got, err := h.a.Allocate()
	want, wantErr := h.ref.allocate()
	if !agreeErr(err, wantErr) || got != want {
		return fmt.Errorf("Allocate() = %d, %v; reference %d, %v", got, err, want, wantErr)
	}
	if err != nil {
		return nil
	}
	if h.live[got] || got < h.min || got > h.max {
		return fmt.Errorf("Allocate() = %d: live already or outside [%d, %d]", got, h.min, h.max)
	}
	h.live[got] = true
	return nil
}

func (h *harness) checkCounts() error {
	allocated, free := h.a.Allocated(), h.a.Free()
	switch {
	case allocated+free != int(h.max-h.min+1):
		return fmt.Errorf("Allocated()+Free() = %d+%d, want %d", allocated, free, h.max-h.min+1)
	case allocated != len(h.ref.used) || allocated != len(h.live):
		return fmt.Errorf("Allocated() = %d, reference %d, live %d", allocated, len(h.ref.used), len(h.live))
	}
	return nil
}

func agree(op string, id uint32, got, want error) error {
	if !agreeErr(got, want) {
		return fmt.Errorf("%s(%d) = %v, reference %v", op, id, got, want)
	}
	return nil
}

// agreeErr reports whether got matches want, a sentinel or nil.
func agreeErr(got, want error) bool {
	if want == nil {
		return got == nil
	}
	return errors.Is(got, want)
}
