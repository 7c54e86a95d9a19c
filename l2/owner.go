package l2

import (
	"hash/fnv"
	"net/netip"
)

// Owner returns the node, among nodes, that must answer ARP or NDP for addr,
// or "" when nodes is empty.
//
// It uses rendezvous (highest-random-weight) hashing: every node gets a score
// hash(node, addr) and the highest score wins. The result depends only on the
// set of names, not on their order or duplicates, so every speaker with the
// same view of the membership picks the same owner without talking to the
// others. When a node leaves, only the addresses it owned move (each to the
// node with the next-highest score); when a node joins, it takes over only
// the addresses for which it now has the highest score, about 1/n of them.
//
// The hash must never change between releases: speakers of two versions
// running side by side during a rolling upgrade would pick different owners
// and answer at once.
func Owner(addr netip.Addr, nodes []string) string {
	var (
		best      string
		bestScore uint64
		found     bool
	)
	a := addr.Unmap().As16()
	for _, n := range nodes {
		s := score(n, a)
		// Ties are astronomically rare but must still be broken the same
		// way everywhere: the smaller name wins.
		if !found || s > bestScore || (s == bestScore && n < best) {
			best, bestScore, found = n, s, true
		}
	}
	return best
}

// score is FNV-1a 64 of node, a separator and the 16-byte address, passed
// through the splitmix64 finalizer. FNV-1a alone mixes its last input bytes
// poorly, so addresses that differ only in their last octet would get
// correlated scores and an uneven spread; the finalizer fixes that.
func score(node string, addr [16]byte) uint64 {
	h := fnv.New64a()
	h.Write([]byte(node))
	h.Write([]byte{0}) // separator: "ab"+"c" != "a"+"bc"
	h.Write(addr[:])
	return mix64(h.Sum64())
}

// mix64 is the splitmix64 finalizer (Steele, Lea, Flood 2014).
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
