// Package bitmap is a fixed-size set of small integers, the storage of the
// subnet and VNID allocators (the full 24-bit VNID range costs 2 MiB).
package bitmap

import "math/bits"

// Bitmap holds the integers 0..n-1 given to New. It is not concurrency-safe;
// its owner's mutex guards it. Indexes ≥ n panic like a slice index.
type Bitmap []uint64

// New returns an empty Bitmap for n integers.
func New(n uint32) Bitmap { return make(Bitmap, (uint64(n)+63)/64) }

// Get reports whether i is in the set.
func (b Bitmap) Get(i uint32) bool { return b[i/64]&(1<<(i%64)) != 0 }

// Set adds i.
func (b Bitmap) Set(i uint32) { b[i/64] |= 1 << (i % 64) }

// Clear removes i.
func (b Bitmap) Clear(i uint32) { b[i/64] &^= 1 << (i % 64) }

// NextClear returns the smallest i not in the set with from <= i < end,
// skipping whole words that are full; ok is false if there is none.
func (b Bitmap) NextClear(from, end uint32) (i uint32, ok bool) {
	for i := from; i < end; {
		w := i / 64
		if free := ^b[w] >> (i % 64); free != 0 {
			j := i + uint32(bits.TrailingZeros64(free))
			return j, j < end
		}
		i = (w + 1) * 64
	}
	return 0, false
}
