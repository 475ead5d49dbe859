package ovs

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// U128 is a 128-bit unsigned value (ct_label). The zero value is 0.
type U128 struct{ Hi, Lo uint64 }

// onesU128 returns the low n bits set (0 <= n <= 128).
func onesU128(n int) U128 {
	switch {
	case n <= 0:
		return U128{}
	case n < 64:
		return U128{Lo: 1<<uint(n) - 1}
	case n < 128:
		return U128{Hi: 1<<uint(n-64) - 1, Lo: ^uint64(0)}
	}
	return U128{Hi: ^uint64(0), Lo: ^uint64(0)}
}

func (u U128) shl(n int) U128 {
	switch {
	case n <= 0:
		return u
	case n >= 128:
		return U128{}
	case n >= 64:
		return U128{Hi: u.Lo << uint(n-64)}
	}
	return U128{Hi: u.Hi<<uint(n) | u.Lo>>uint(64-n), Lo: u.Lo << uint(n)}
}

func (u U128) shr(n int) U128 {
	switch {
	case n <= 0:
		return u
	case n >= 128:
		return U128{}
	case n >= 64:
		return U128{Lo: u.Hi >> uint(n-64)}
	}
	return U128{Hi: u.Hi >> uint(n), Lo: u.Lo>>uint(n) | u.Hi<<uint(64-n)}
}

func (u U128) and(v U128) U128    { return U128{Hi: u.Hi & v.Hi, Lo: u.Lo & v.Lo} }
func (u U128) or(v U128) U128     { return U128{Hi: u.Hi | v.Hi, Lo: u.Lo | v.Lo} }
func (u U128) andNot(v U128) U128 { return U128{Hi: u.Hi &^ v.Hi, Lo: u.Lo &^ v.Lo} }

// IsZero reports whether u is 0.
func (u U128) IsZero() bool { return u.Hi == 0 && u.Lo == 0 }

// isOnes reports whether every bit is set.
func (u U128) isOnes() bool { return u.Hi == ^uint64(0) && u.Lo == ^uint64(0) }

// trailingZeros returns the index of the lowest set bit (128 for zero).
func (u U128) trailingZeros() int {
	if u.Lo != 0 {
		return bits.TrailingZeros64(u.Lo)
	}
	return 64 + bits.TrailingZeros64(u.Hi)
}

// String renders u as OVS prints ct_label values: "0" or "0x<hex>".
func (u U128) String() string {
	if u.Hi == 0 {
		return hexOrZero(u.Lo)
	}
	return fmt.Sprintf("0x%x%016x", u.Hi, u.Lo)
}

// parseU128 parses a hexadecimal "0x…" or decimal value of up to 128 bits.
func parseU128(s string) (U128, error) {
	h, ok := strings.CutPrefix(strings.ToLower(s), "0x")
	if !ok {
		v, err := strconv.ParseUint(s, 10, 64)
		return U128{Lo: v}, err
	}
	if h == "" || len(h) > 32 {
		return U128{}, fmt.Errorf("bad 128-bit value %q", s)
	}
	var u U128
	if len(h) > 16 {
		hi, err := strconv.ParseUint(h[:len(h)-16], 16, 64)
		if err != nil {
			return U128{}, fmt.Errorf("bad 128-bit value %q", s)
		}
		u.Hi, h = hi, h[len(h)-16:]
	}
	lo, err := strconv.ParseUint(h, 16, 64)
	if err != nil {
		return U128{}, fmt.Errorf("bad 128-bit value %q", s)
	}
	u.Lo = lo
	return u, nil
}
