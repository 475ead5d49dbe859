package bitmap

import (
	"math/rand/v2"
	"testing"
)

// TestAgainstMap drives a Bitmap and a map with the same random operations.
func TestAgainstMap(t *testing.T) {
	const n = 300
	b, ref := New(n), map[uint32]bool{}
	rnd := rand.New(rand.NewPCG(1, 2))
	for step := 0; step < 20000; step++ {
		i := rnd.Uint32N(n)
		switch rnd.IntN(3) {
		case 0:
			b.Set(i)
			ref[i] = true
		case 1:
			b.Clear(i)
			delete(ref, i)
		default:
			from := rnd.Uint32N(n)
			end := from + rnd.Uint32N(n-from+1)
			got, ok := b.NextClear(from, end)
			want, wantOK := uint32(0), false
			for j := from; j < end; j++ {
				if !ref[j] {
					want, wantOK = j, true
					break
				}
			}
			if ok != wantOK || (ok && got != want) {
				t.Fatalf("step %d: NextClear(%d, %d) = %d, %v; want %d, %v", step, from, end, got, ok, want, wantOK)
			}
		}
		if b.Get(i) != ref[i] {
			t.Fatalf("step %d: Get(%d) = %v, want %v", step, i, b.Get(i), ref[i])
		}
	}
}
