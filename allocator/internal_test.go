package allocator

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var runCmp = cmp.AllowUnexported(run{}, u128{})

func r64(first, last uint64) run { return run{u128{lo: first}, u128{lo: last}} }

func TestMergeAndSubtract(t *testing.T) {
	top := u128{^uint64(0), ^uint64(0)}
	tests := []struct {
		name               string
		ranges, reserved   []run
		wantMerged, wantOK []run
	}{
		{"disjoint", []run{r64(10, 20), r64(0, 5)}, nil, []run{r64(0, 5), r64(10, 20)}, []run{r64(0, 5), r64(10, 20)}},
		{"adjacent and nested merge", []run{r64(0, 5), r64(6, 9), r64(2, 3)}, nil, []run{r64(0, 9)}, []run{r64(0, 9)}},
		{"hole in the middle", []run{r64(0, 9)}, []run{r64(3, 4)}, []run{r64(0, 9)}, []run{r64(0, 2), r64(5, 9)}},
		{"reserved covers ends", []run{r64(0, 9), r64(20, 29)}, []run{r64(0, 0), r64(9, 20), r64(29, 40)},
			[]run{r64(0, 9), r64(20, 29)}, []run{r64(1, 8), r64(21, 28)}},
		{"reserved spans several ranges", []run{r64(0, 3), r64(5, 8), r64(10, 12)}, []run{r64(2, 11)},
			[]run{r64(0, 3), r64(5, 8), r64(10, 12)}, []run{r64(0, 1), r64(12, 12)}},
		{"everything reserved", []run{r64(0, 3)}, []run{r64(0, 3)}, []run{r64(0, 3)}, nil},
		{"top of the space", []run{{u128{}, top}}, []run{{top, top}}, []run{{u128{}, top}},
			[]run{{u128{}, u128{^uint64(0), ^uint64(0) - 1}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			merged := mergeRuns(slices.Clone(tt.ranges))
			if d := cmp.Diff(tt.wantMerged, merged, runCmp); d != "" {
				t.Errorf("mergeRuns (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tt.wantOK, subtract(merged, mergeRuns(tt.reserved)), runCmp); d != "" {
				t.Errorf("subtract (-want +got):\n%s", d)
			}
		})
	}
}

// TestFamPoolWalk compares allocatable, next and prev with brute force
// over every address around some awkward pools.
func TestFamPoolWalk(t *testing.T) {
	pools := []Pool{
		{Name: "buggy", AvoidBuggyIPs: true, Ranges: rng("10.0.0.250-10.0.2.5", "10.0.3.255/32", "10.0.4.0/31"),
			Reserved: rng("10.0.1.1-10.0.1.254", "10.0.2.1")},
		{Name: "plain", Ranges: rng("10.0.0.250-10.0.2.5", "10.0.3.255/32"), Reserved: rng("10.0.1.1-10.0.1.254")},
		{Name: "empty", AvoidBuggyIPs: true, Ranges: rng("10.0.0.255-10.0.1.0"), Reserved: nil},
	}
	for _, p := range pools {
		t.Run(p.Name, func(t *testing.T) {
			fp := newFamPool(IPv4, p)
			var all []netip.Addr
			for a := addr("10.0.0.240"); a.Compare(addr("10.0.4.10")) <= 0; a = a.Next() {
				if rawAllocatable(p, a) {
					all = append(all, a)
				}
			}
			for a := addr("10.0.0.240"); a.Compare(addr("10.0.4.10")) <= 0; a = a.Next() {
				x := u128From(a)
				if got, want := fp.allocatable(x), rawAllocatable(p, a); got != want {
					t.Errorf("allocatable(%s) = %v, want %v", a, got, want)
				}
				i, _ := slices.BinarySearchFunc(all, a, netip.Addr.Compare)
				n, ok := fp.next(x)
				if wantOK := i < len(all); ok != wantOK || (ok && n.addr(IPv4) != all[i]) {
					t.Errorf("next(%s) = %s %v", a, n.addr(IPv4), ok)
				}
				j, found := slices.BinarySearchFunc(all, a, netip.Addr.Compare)
				if !found {
					j--
				}
				pv, ok := fp.prev(x)
				if wantOK := j >= 0; ok != wantOK || (ok && pv.addr(IPv4) != all[j]) {
					t.Errorf("prev(%s) = %s %v", a, pv.addr(IPv4), ok)
				}
			}
			if got := fp.total.Int64(); got != int64(len(all)) {
				t.Errorf("total = %d, want %d", got, len(all))
			}
		})
	}
}

// TestFamPoolHeld adds and deletes random addresses in awkward pools and
// compares the held runs with brute force after every operation: runs must
// be maximal with respect to the pool's allocatable addresses.
func TestFamPoolHeld(t *testing.T) {
	pools := []Pool{
		{Name: "buggy", AvoidBuggyIPs: true, Ranges: rng("10.0.0.250-10.0.2.5", "10.0.3.255/32", "10.0.4.0/31"),
			Reserved: rng("10.0.1.3-10.0.1.252", "10.0.2.1")},
		{Name: "plain", Ranges: rng("10.0.0.250-10.0.1.5", "10.0.1.7-10.0.1.9", "10.0.3.0/29"), Reserved: rng("10.0.0.252", "10.0.3.4")},
	}
	for _, p := range pools {
		t.Run(p.Name, func(t *testing.T) {
			a := New()
			a.SetPools([]Pool{p})
			fp := a.pools[p.Name].fam(IPv4)
			all, _ := enumerate(p, IPv4)
			r := rand.New(rand.NewPCG(3, 4))
			for i := 0; i < 3000; i++ {
				x := all[r.IntN(len(all))]
				if a.addrs[x] != nil {
					delete(a.addrs, x)
					fp.del(u128From(x))
				} else {
					a.addrs[x] = &holding{}
					fp.add(u128From(x))
				}
				if errs := a.brokenPool(a.pools[p.Name], IPv4); len(errs) > 0 {
					t.Fatalf("op %d on %s: %v", i, x, errs)
				}
				if free, ok := fp.lowestFree(); ok {
					if j := slices.IndexFunc(all, func(x netip.Addr) bool { return a.addrs[x] == nil }); all[j] != free.addr(IPv4) {
						t.Fatalf("op %d: lowestFree = %s, want %s", i, free.addr(IPv4), all[j])
					}
				} else if fp.used != len(all) {
					t.Fatalf("op %d: lowestFree found nothing with %d of %d used", i, fp.used, len(all))
				}
			}
		})
	}
}

// TestRunTree drives the treap with random operations against a sorted
// slice.
func TestRunTree(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var tree runTree
	var model []run // sorted, disjoint single-address runs
	for i := 0; i < 20000; i++ {
		x := u128{lo: r.Uint64N(512)}
		idx, found := slices.BinarySearchFunc(model, x, func(m run, x u128) int { return m.first.cmp(x) })
		if found {
			tree.remove(x)
			model = slices.Delete(model, idx, idx+1)
		} else {
			tree.insert(run{x, x})
			model = slices.Insert(model, idx, run{x, x})
		}
		q := u128{lo: r.Uint64N(520)}
		var wantFloor, wantAbove *run
		for k := range model {
			if model[k].first.cmp(q) <= 0 {
				wantFloor = &model[k]
			} else if wantAbove == nil {
				wantAbove = &model[k]
			}
		}
		if f := tree.floor(q); (f == nil) != (wantFloor == nil) || (f != nil && f.run != *wantFloor) {
			t.Fatalf("step %d: floor(%v) = %v, want %v", i, q, f, wantFloor)
		}
		if a := tree.above(q); (a == nil) != (wantAbove == nil) || (a != nil && a.run != *wantAbove) {
			t.Fatalf("step %d: above(%v) = %v, want %v", i, q, a, wantAbove)
		}
	}
	var got []run
	tree.each(func(r run) bool { got = append(got, r); return true })
	if d := cmp.Diff(model, got, runCmp); d != "" || tree.runs != len(model) {
		t.Fatalf("each (-want +got):\n%s (runs %d, want %d)", d, tree.runs, len(model))
	}
	for _, e := range treapShape(tree.root, nil, nil) {
		t.Error(e)
	}
	if depth := treeDepth(tree.root); depth > 40 {
		t.Errorf("treap depth %d for %d runs; it is not balancing", depth, len(model))
	}
}

func treeDepth(n *tnode) int {
	if n == nil {
		return 0
	}
	return 1 + max(treeDepth(n.left), treeDepth(n.right))
}

func TestLookupAndPoolsContaining(t *testing.T) {
	a := New()
	a.SetPools([]Pool{pool("b", "198.51.100.0/24"), pool("a", "198.51.100.128/25"), pool("c", "2001:db8::/64")})
	res, err := a.Assign(req("default/x", "b"))
	if err != nil {
		t.Fatal(err)
	}
	res[0].Pool = "mutated"
	if d := cmp.Diff([]Assignment{got("b", "198.51.100.0")}, a.Lookup("default/x"), addrCmp); d != "" {
		t.Errorf("Lookup after mutating Assign's result (-want +got):\n%s", d)
	}
	tests := []struct {
		a    netip.Addr
		want []string
	}{
		{addr("198.51.100.200"), []string{"a", "b"}},
		{addr("198.51.100.1"), []string{"b"}},
		{addr("203.0.113.1"), nil},
		{addr("2001:db8::1"), []string{"c"}},
		{addr("::ffff:198.51.100.1"), nil},
		{netip.Addr{}, nil},
		{addr("fe80::1%eth0"), nil},
	}
	for _, tt := range tests {
		if d := cmp.Diff(tt.want, a.PoolsContaining(tt.a)); d != "" {
			t.Errorf("PoolsContaining(%v) (-want +got):\n%s", tt.a, d)
		}
	}
}
