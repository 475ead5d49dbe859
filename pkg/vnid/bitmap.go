package vnid

import "math/bits"

// bitmap is a fixed-size set of small integers: one bit per VNID, so the
// full range costs 2 MiB. Not concurrency-safe; the Allocator's mutex
// guards it.
type bitmap []uint64

func newBitmap(n uint32) bitmap { return make(bitmap, (uint64(n)+63)/64) }

func (b bitmap) get(i uint32) bool { return b[i/64]&(1<<(i%64)) != 0 }
func (b bitmap) set(i uint32)      { b[i/64] |= 1 << (i % 64) }
func (b bitmap) clear(i uint32)    { b[i/64] &^= 1 << (i % 64) }

// nextClear returns the smallest clear bit i with from <= i < end, skipping
// whole words that are full.
func (b bitmap) nextClear(from, end uint32) (uint32, bool) {
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
