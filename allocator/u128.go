package allocator

import (
	"encoding/binary"
	"math/big"
	"math/bits"
	"net/netip"
)

// u128 is an address as an unsigned 128-bit number. IPv4 addresses live in
// lo; the two families are never mixed in one structure, so there is no
// ambiguity. Plain integers make "next address" and "is adjacent" cheap,
// which netip.Addr.Next does not for 2^128-sized counts.
type u128 struct{ hi, lo uint64 }

func u128From(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
}

// addr converts back; f says how to read the number.
func (u u128) addr(f Family) netip.Addr {
	if f == IPv4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(u.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], u.hi)
	binary.BigEndian.PutUint64(b[8:], u.lo)
	return netip.AddrFrom16(b)
}

func (u u128) cmp(v u128) int {
	switch {
	case u.hi < v.hi:
		return -1
	case u.hi > v.hi:
		return 1
	case u.lo < v.lo:
		return -1
	case u.lo > v.lo:
		return 1
	}
	return 0
}

func (u u128) less(v u128) bool { return u.cmp(v) < 0 }

// inc returns u+1; ok is false when u is the largest 128-bit number.
func (u u128) inc() (v u128, ok bool) {
	lo, c := bits.Add64(u.lo, 1, 0)
	hi, c := bits.Add64(u.hi, 0, c)
	return u128{hi, lo}, c == 0
}

// dec returns u-1; ok is false when u is zero.
func (u u128) dec() (v u128, ok bool) {
	lo, b := bits.Sub64(u.lo, 1, 0)
	hi, b := bits.Sub64(u.hi, 0, b)
	return u128{hi, lo}, b == 0
}

// sub returns u-v, wrapping; callers guarantee v <= u.
func (u u128) sub(v u128) u128 {
	lo, b := bits.Sub64(u.lo, v.lo, 0)
	hi, _ := bits.Sub64(u.hi, v.hi, b)
	return u128{hi, lo}
}

func (u u128) or(v u128) u128  { return u128{u.hi | v.hi, u.lo | v.lo} }
func (u u128) xor(v u128) u128 { return u128{u.hi ^ v.hi, u.lo ^ v.lo} }

func (u u128) onesCount() int { return bits.OnesCount64(u.hi) + bits.OnesCount64(u.lo) }

// lowMask returns a number with the k lowest bits set, 0 <= k <= 128.
func lowMask(k int) u128 {
	switch {
	case k <= 0:
		return u128{}
	case k <= 64:
		return u128{lo: ^uint64(0) >> (64 - k)}
	default:
		return u128{hi: ^uint64(0) >> (128 - k), lo: ^uint64(0)}
	}
}

// big converts to a math/big integer, used off the hot path (Stats) where
// counts may reach 2^128 and no longer fit in a u128.
func (u u128) big() *big.Int {
	b := new(big.Int).SetUint64(u.hi)
	b.Lsh(b, 64)
	return b.Or(b, new(big.Int).SetUint64(u.lo))
}

// size returns the number of addresses in [first, last] as a big integer.
func size(first, last u128) *big.Int {
	n := last.sub(first).big()
	return n.Add(n, big.NewInt(1))
}
