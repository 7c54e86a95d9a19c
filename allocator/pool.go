package allocator

import (
	"math/big"
	"net/netip"
	"slices"
	"sort"
)

// Pool is one IP pool's allocation-relevant configuration. The caller's
// config layer validates it, but the allocator tolerates anything: invalid
// ranges (zero, zoned, reversed, mixed families) are ignored.
type Pool struct {
	// Name identifies the pool in requests, assignments and errors.
	Name string
	// Ranges may overlap each other and other pools' ranges; overlaps
	// within a pool count once, and across pools the global record of
	// held addresses keeps any address from being handed out twice.
	Ranges []Range
	// Reserved addresses are never handed out, not even when requested:
	// they are how an operator fences off gateways and static hosts.
	Reserved []Range
	// AvoidBuggyIPs skips IPv4 addresses ending in .0 or .255, which some
	// old clients and middleboxes mistreat as network or broadcast.
	AvoidBuggyIPs bool
	// AutoAssign false keeps the pool for Services that ask for it: by
	// requesting one of its addresses or by naming pools explicitly.
	AutoAssign bool
	// Priority orders pool choice; lower is preferred, ties by name.
	Priority int
	// AllowCrossNamespaceSharing lets Services of different namespaces
	// share an address of this pool under one sharing key.
	AllowCrossNamespaceSharing bool
	// Draining pools keep the addresses their Services already hold but
	// hand out none: not fresh, not to join a sharing key, not on request.
	// A pool being deleted, or one whose configuration became invalid,
	// drains, so that neither moves a working address.
	Draining bool
}

// poolState is a pool compiled for allocation.
type poolState struct {
	Pool
	v4, v6 famPool
}

// famPool is the part of a pool for one family.
//
// segs are the allocatable segments: merged ranges minus reserved and
// minus the special-purpose blocks no pool hands out (neverHandedOut), each
// trimmed so that its ends are allocatable (not .0/.255 when avoiding buggy
// addresses), and therefore never empty. held contains the addresses held by
// any Service that are allocatable in this pool, as runs that are maximal
// with respect to the pool's allocatable addresses: the allocatable address
// after a run's last is always free. That makes "lowest free" one lookup,
// whatever the pool size or the number of gaps.
type famPool struct {
	ranges, reserved, segs []run
	avoidBuggy             bool
	total                  *big.Int
	used                   int
	held                   runTree
}

func newPoolState(p Pool) *poolState {
	ps := &poolState{Pool: p}
	ps.Ranges = slices.Clone(p.Ranges)
	ps.Reserved = slices.Clone(p.Reserved)
	ps.v4 = newFamPool(IPv4, p)
	ps.v6 = newFamPool(IPv6, p)
	return ps
}

func (p *poolState) fam(f Family) *famPool {
	if f == IPv4 {
		return &p.v4
	}
	return &p.v6
}

func newFamPool(f Family, p Pool) famPool {
	fp := famPool{
		ranges:     mergeRuns(runsOf(f, p.Ranges)),
		reserved:   mergeRuns(runsOf(f, p.Reserved)),
		avoidBuggy: f == IPv4 && p.AvoidBuggyIPs,
		total:      new(big.Int),
		held:       runTree{seed: uint64(f)},
	}
	never := mergeRuns(append(slices.Clone(fp.reserved), specialRuns(f)...))
	for _, s := range subtract(fp.ranges, never) {
		if s, ok := fp.trim(s); ok {
			fp.segs = append(fp.segs, s)
			fp.total.Add(fp.total, size(s.first, s.last))
			if fp.avoidBuggy {
				// Both ends are allocatable, so every /24 boundary
				// crossed inside holds exactly one .255 and one .0.
				crossed := (s.last.lo >> 8) - (s.first.lo >> 8)
				fp.total.Sub(fp.total, new(big.Int).SetUint64(2*crossed))
			}
		}
	}
	return fp
}

func runsOf(f Family, rs []Range) []run {
	var out []run
	for _, r := range rs {
		if r.valid() && r.Family() == f {
			out = append(out, run{u128From(r.First), u128From(r.Last)})
		}
	}
	return out
}

// mergeRuns sorts runs and merges overlapping or adjacent ones.
func mergeRuns(rs []run) []run {
	sort.Slice(rs, func(i, j int) bool { return rs[i].first.less(rs[j].first) })
	var out []run
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			next, ok := last.last.inc()
			if !ok || r.first.cmp(next) <= 0 {
				if last.last.less(r.last) {
					last.last = r.last
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// subtract returns the parts of the sorted, disjoint runs a not covered by
// the sorted, disjoint runs b.
func subtract(a, b []run) []run {
	var out []run
	j := 0
	for _, r := range a {
		for j < len(b) && b[j].last.less(r.first) {
			j++
		}
		cur, open := r.first, true
		for k := j; open && k < len(b) && b[k].first.cmp(r.last) <= 0; k++ {
			if cur.less(b[k].first) {
				end, _ := b[k].first.dec()
				out = append(out, run{cur, end})
			}
			next, ok := b[k].last.inc()
			if !ok || r.last.less(next) {
				open = false
			}
			cur = next
		}
		if open {
			out = append(out, run{cur, r.last})
		}
	}
	return out
}

func isBuggy(x u128) bool {
	b := x.lo & 0xff
	return b == 0 || b == 0xff
}

// trim shrinks s so both ends are allocatable; ok is false if nothing is.
func (fp *famPool) trim(s run) (run, bool) {
	if !fp.avoidBuggy {
		return s, true
	}
	for isBuggy(s.first) && s.first.less(s.last) {
		s.first, _ = s.first.inc()
	}
	for isBuggy(s.last) && s.first.less(s.last) {
		s.last, _ = s.last.dec()
	}
	return s, !isBuggy(s.first)
}

// seg returns the index of the first segment ending at or after x.
func (fp *famPool) seg(x u128) int {
	return sort.Search(len(fp.segs), func(i int) bool { return x.cmp(fp.segs[i].last) <= 0 })
}

// allocatable reports whether x may be handed out by this pool.
func (fp *famPool) allocatable(x u128) bool {
	i := fp.seg(x)
	return i < len(fp.segs) && fp.segs[i].first.cmp(x) <= 0 && (!fp.avoidBuggy || !isBuggy(x))
}

// next returns the lowest allocatable address >= x.
func (fp *famPool) next(x u128) (u128, bool) {
	i := fp.seg(x)
	if i == len(fp.segs) {
		return u128{}, false
	}
	if s := fp.segs[i]; x.less(s.first) {
		return s.first, true
	}
	// x is inside a segment whose last address is allocatable, so at most
	// two buggy addresses (.255 then .0) separate x from the answer.
	for fp.avoidBuggy && isBuggy(x) {
		x, _ = x.inc()
	}
	return x, true
}

// prev returns the highest allocatable address <= x.
func (fp *famPool) prev(x u128) (u128, bool) {
	i := sort.Search(len(fp.segs), func(i int) bool { return x.less(fp.segs[i].first) }) - 1
	if i < 0 {
		return u128{}, false
	}
	if s := fp.segs[i]; s.last.less(x) {
		return s.last, true
	}
	for fp.avoidBuggy && isBuggy(x) {
		x, _ = x.dec()
	}
	return x, true
}

// inRanges reports whether x is in the pool's ranges, reserved or not.
func (fp *famPool) inRanges(x u128) bool { return contains(fp.ranges, x) }

func (fp *famPool) isReserved(x u128) bool { return contains(fp.reserved, x) }

func contains(rs []run, x u128) bool {
	i := sort.Search(len(rs), func(i int) bool { return x.cmp(rs[i].last) <= 0 })
	return i < len(rs) && rs[i].first.cmp(x) <= 0
}

// lowestFree returns the lowest allocatable address no Service holds.
func (fp *famPool) lowestFree() (u128, bool) {
	if len(fp.segs) == 0 {
		return u128{}, false
	}
	x := fp.segs[0].first
	if r := fp.held.floor(x); r != nil && x.cmp(r.last) <= 0 {
		after, ok := r.last.inc()
		if !ok {
			return u128{}, false
		}
		return fp.next(after)
	}
	return x, true
}

// add records x (allocatable, not yet held) as held.
func (fp *famPool) add(x u128) {
	fp.used++
	var prev, next *tnode
	if p := fp.held.floor(x); p != nil {
		after, _ := p.last.inc() // p.last < x, so no overflow
		if n, ok := fp.next(after); ok && n == x {
			prev = p
		}
	}
	if n := fp.held.above(x); n != nil {
		after, _ := x.inc() // x < n.first, so no overflow
		if a, ok := fp.next(after); ok && a == n.first {
			next = n
		}
	}
	switch {
	case prev != nil && next != nil:
		prev.last = next.last
		fp.held.remove(next.first)
	case prev != nil:
		prev.last = x
	case next != nil:
		next.first = x // no run starts between prev and next, so order holds
	default:
		fp.held.insert(run{x, x})
	}
}

// del forgets x, which must be held.
func (fp *famPool) del(x u128) {
	r := fp.held.floor(x)
	if r == nil || r.last.less(x) {
		return // not held; cannot happen while the invariants hold
	}
	fp.used--
	before, _ := x.dec()
	after, _ := x.inc()
	switch {
	case r.first == x && r.last == x:
		fp.held.remove(x)
	case r.first == x:
		r.first, _ = fp.next(after)
	case r.last == x:
		r.last, _ = fp.prev(before)
	default:
		tail := run{last: r.last}
		tail.first, _ = fp.next(after)
		r.last, _ = fp.prev(before)
		fp.held.insert(tail)
	}
}

// poolsOf returns the names of pools whose ranges contain a, sorted.
func poolsOf(pools []*poolState, a netip.Addr) []string {
	var out []string
	x, f := u128From(a), familyOf(a)
	for _, p := range pools {
		if p.fam(f).inRanges(x) {
			out = append(out, p.Name)
		}
	}
	return out
}

// overlaps reports whether two pools share any address in their ranges.
func overlaps(a, b *poolState) bool {
	return intersect(a.v4.ranges, b.v4.ranges) || intersect(a.v6.ranges, b.v6.ranges)
}

func intersect(a, b []run) bool {
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i].last.less(b[j].first):
			i++
		case b[j].last.less(a[i].first):
			j++
		default:
			return true
		}
	}
	return false
}
