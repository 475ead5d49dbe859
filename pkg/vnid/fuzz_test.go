package vnid

import (
	"encoding/binary"
	"testing"
)

// FuzzAllocator runs the operation sequence encoded in data against
// Allocator and refAllocator. The first byte sizes the range (1..128 IDs,
// placed at MinVNID or at the top of the VNID space), the next eight seed
// both rand sources, and each following pair of bytes is an operation and
// an ID selector. It checks agreement with the reference, no duplicate live
// allocation, allocations inside the range, and Allocated()+Free() constant.
func FuzzAllocator(f *testing.F) {
	f.Add([]byte{3, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9})
	f.Add([]byte{0x80, 0, 0, 0, 0, 0, 0, 0, 0, 2, 7, 2, 8, 0, 0, 0, 0, 3, 7, 1, 7})
	f.Add([]byte{255, 9, 9, 9, 9, 9, 9, 9, 9, 0, 0, 2, 0, 2, 1, 2, 2, 2, 3, 2, 4, 2, 5, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 9 {
			return
		}
		size := uint32(data[0]&0x7f) + 1
		min := MinVNID
		if data[0]&0x80 != 0 {
			min = MaxVNID - size + 1
		}
		h, err := newHarness(min, min+size-1, binary.LittleEndian.Uint64(data[1:9]))
		if err != nil {
			t.Fatal(err)
		}
		ops := data[9:]
		for i := 0; i+1 < len(ops); i += 2 {
			if err := h.step(opKind(ops[i]), int(ops[i+1])); err != nil {
				t.Fatalf("op %d: %v", i/2, err)
			}
		}
	})
}
