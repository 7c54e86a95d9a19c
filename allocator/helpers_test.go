package allocator

import (
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, addr(s))
	}
	return out
}

func rng(ss ...string) []Range {
	var out []Range
	for _, s := range ss {
		r, err := ParseRange(s)
		if err != nil {
			panic(err)
		}
		out = append(out, r)
	}
	return out
}

// rawAllocatable is the definition of an allocatable address, written
// independently of the compiled segments so tests can cross-check them.
func rawAllocatable(p Pool, a netip.Addr) bool {
	in := slices.ContainsFunc(p.Ranges, func(r Range) bool { return r.Contains(a) })
	res := slices.ContainsFunc(p.Reserved, func(r Range) bool { return r.Contains(a) })
	buggy := false
	if a.Is4() {
		b := a.As4()[3]
		buggy = p.AvoidBuggyIPs && (b == 0 || b == 255)
	}
	_, special := SpecialPurpose(a)
	return in && !res && !buggy && !special
}

// enumerate returns the pool's allocatable addresses of family f in order,
// or false if the pool is too large to enumerate.
func enumerate(p Pool, f Family) ([]netip.Addr, bool) {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, r := range p.Ranges {
		if !r.valid() || r.Family() != f {
			continue
		}
		if n := u128From(r.Last).sub(u128From(r.First)); n.hi != 0 || n.lo > 4096 {
			return nil, false
		}
		for a := r.First; a.IsValid() && a.Compare(r.Last) <= 0; a = a.Next() {
			if !seen[a] && rawAllocatable(p, a) {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, true
}

// brokenInvariants checks the allocator's internal records against each
// other and against brute force, and returns a description of every
// violation (empty when all hold). It is the oracle for the fuzz target.
func brokenInvariants(a *Allocator) []string {
	invalid := a.Invalid()
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, sprintf(format, args...)) }
	wantInvalid := map[string]bool{}
	for name, svc := range a.services {
		fams := map[Family]bool{}
		for _, as := range svc.assigned {
			f := familyOf(as.Addr)
			if fams[f] {
				fail("%s holds two %v addresses: %v", name, f, svc.assigned)
			}
			fams[f] = true
			h := a.addrs[as.Addr]
			if h == nil || !slices.Contains(h.holders, svc) {
				fail("%s: %s not recorded as held by it", name, as.Addr)
			}
			if _, ok := a.poolHolders[as.Pool][name]; !ok {
				fail("%s missing from poolHolders[%s]", name, as.Pool)
			}
			p, ok := a.pools[as.Pool]
			if !ok || !rawAllocatable(p.Pool, as.Addr) {
				wantInvalid[name] = true
			}
		}
	}
	errs = append(errs, a.brokenHoldings(wantInvalid)...)
	errs = append(errs, a.brokenIndexes()...)
	for _, p := range a.byName {
		errs = append(errs, a.brokenPool(p, IPv4)...)
		errs = append(errs, a.brokenPool(p, IPv6)...)
	}
	if d := cmp.Diff(sortedKeys(wantInvalid), invalid); d != "" {
		fail("Invalid() (-want +got):\n%s", d)
	}
	return errs
}

// brokenHoldings checks that holders of one address may share it; a
// cross-namespace pair in a pool that stopped allowing it must be reported
// by Invalid, so it is added to wantInvalid.
func (a *Allocator) brokenHoldings(wantInvalid map[string]bool) []string {
	var errs []string
	for addr, h := range a.addrs {
		if len(h.holders) == 0 {
			errs = append(errs, sprintf("%s has no holders but is recorded", addr))
		}
		if !sort.SliceIsSorted(h.holders, func(i, j int) bool { return h.holders[i].name < h.holders[j].name }) {
			errs = append(errs, sprintf("%s: holders not sorted", addr))
		}
		for i, x := range h.holders {
			if !hasAddr(x.assigned, addr) {
				errs = append(errs, sprintf("%s lists %s as holder, but it does not hold it", addr, x.name))
			}
			for _, y := range h.holders[i+1:] {
				_, clash := portClash(x.ports, y.ports)
				switch {
				case x.sharingKey == "" || x.sharingKey != y.sharingKey, clash,
					(x.backendKey != "" || y.backendKey != "") && x.backendKey != y.backendKey:
					errs = append(errs, sprintf("%s held incompatibly by %s and %s", addr, x.name, y.name))
				case x.namespace != y.namespace && (!a.allowsCross(x, addr) || !a.allowsCross(y, addr)):
					wantInvalid[x.name], wantInvalid[y.name] = true, true
				}
			}
		}
	}
	return errs
}

func (a *Allocator) brokenIndexes() []string {
	var errs []string
	wantKey := map[string]map[netip.Addr]struct{}{}
	wantPool := map[string]map[string]struct{}{}
	for addr, h := range a.addrs {
		for _, s := range h.holders {
			if s.sharingKey != "" {
				if wantKey[s.sharingKey] == nil {
					wantKey[s.sharingKey] = map[netip.Addr]struct{}{}
				}
				wantKey[s.sharingKey][addr] = struct{}{}
			}
		}
	}
	for name, svc := range a.services {
		for _, as := range svc.assigned {
			if wantPool[as.Pool] == nil {
				wantPool[as.Pool] = map[string]struct{}{}
			}
			wantPool[as.Pool][name] = struct{}{}
		}
	}
	if d := cmp.Diff(wantKey, a.byKey, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); d != "" {
		errs = append(errs, sprintf("byKey (-want +got):\n%s", d))
	}
	if d := cmp.Diff(wantPool, a.poolHolders); d != "" {
		errs = append(errs, sprintf("poolHolders (-want +got):\n%s", d))
	}
	return errs
}

// brokenPool compares a pool's held runs and counts with brute force.
func (a *Allocator) brokenPool(p *poolState, f Family) []string {
	var errs []string
	fp := p.fam(f)
	var got []run
	fp.held.each(func(r run) bool { got = append(got, r); return true })
	if len(got) != fp.held.runs {
		errs = append(errs, sprintf("pool %s %v: runs=%d but tree has %d", p.Name, f, fp.held.runs, len(got)))
	}
	errs = append(errs, treapShape(fp.held.root, nil, nil)...)
	all, ok := enumerate(p.Pool, f)
	if !ok {
		return errs
	}
	var want []run
	used := 0
	for i, x := range all {
		if a.addrs[x] == nil {
			continue
		}
		used++
		if i > 0 && a.addrs[all[i-1]] != nil {
			want[len(want)-1].last = u128From(x)
		} else {
			want = append(want, run{u128From(x), u128From(x)})
		}
	}
	if d := cmp.Diff(want, got, cmp.AllowUnexported(run{}, u128{})); d != "" {
		errs = append(errs, sprintf("pool %s %v held runs (-want +got):\n%s", p.Name, f, d))
	}
	st := p.fam(f).stats()
	total := big.NewInt(int64(len(all)))
	free := big.NewInt(int64(len(all) - used))
	if st.Total.Cmp(total) != 0 || st.Used.Cmp(big.NewInt(int64(used))) != 0 || st.Free.Cmp(free) != 0 {
		errs = append(errs, sprintf("pool %s %v stats %v/%v/%v, brute force %d/%d/%v",
			p.Name, f, st.Total, st.Used, st.Free, len(all), used, free))
	}
	return errs
}

// treapShape checks the binary-search-tree order and the heap order.
func treapShape(n *tnode, lo, hi *u128) []string {
	if n == nil {
		return nil
	}
	var errs []string
	if (lo != nil && !lo.less(n.first)) || (hi != nil && !n.last.less(*hi)) || n.last.less(n.first) {
		errs = append(errs, sprintf("treap order broken at %v", n.run))
	}
	for _, c := range []*tnode{n.left, n.right} {
		if c != nil && c.prio > n.prio {
			errs = append(errs, sprintf("treap heap broken at %v", n.run))
		}
	}
	errs = append(errs, treapShape(n.left, lo, &n.first)...)
	return append(errs, treapShape(n.right, &n.last, hi)...)
}

func checkInvariants(t *testing.T, a *Allocator) {
	t.Helper()
	for _, e := range brokenInvariants(a) {
		t.Error(e)
	}
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
