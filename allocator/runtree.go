package allocator

// run is an inclusive interval of addresses.
type run struct{ first, last u128 }

// runTree is an ordered set of disjoint runs keyed by their first address:
// a treap, chosen because split and merge keep it short. Priorities come
// from a per-tree generator with a fixed seed, so the shape (and everything
// else) is deterministic; the shape never affects results anyway.
//
// Callers may change a node's first or last in place as long as the order of
// runs is preserved, which is how runs grow and shrink without re-insertion.
type runTree struct {
	root *tnode
	seed uint64
	runs int
}

type tnode struct {
	run
	prio        uint64
	left, right *tnode
}

// nextPrio is splitmix64: cheap, and good enough to balance the treap.
func (t *runTree) nextPrio() uint64 {
	t.seed += 0x9e3779b97f4a7c15
	z := t.seed
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// floor returns the run with the greatest first <= x, or nil.
func (t *runTree) floor(x u128) *tnode {
	var best *tnode
	for n := t.root; n != nil; {
		if n.first.cmp(x) <= 0 {
			best, n = n, n.right
		} else {
			n = n.left
		}
	}
	return best
}

// above returns the run with the least first > x, or nil.
func (t *runTree) above(x u128) *tnode {
	var best *tnode
	for n := t.root; n != nil; {
		if x.less(n.first) {
			best, n = n, n.left
		} else {
			n = n.right
		}
	}
	return best
}

// insert adds r, which must not overlap any run in the tree.
func (t *runTree) insert(r run) {
	l, g := split(t.root, r.first)
	t.root = merge(merge(l, &tnode{run: r, prio: t.nextPrio()}), g)
	t.runs++
}

// remove deletes the run starting at first, if any.
func (t *runTree) remove(first u128) {
	var removed bool
	t.root, removed = removeNode(t.root, first)
	if removed {
		t.runs--
	}
}

// each calls fn for every run in order until fn returns false.
func (t *runTree) each(fn func(run) bool) {
	var stack []*tnode
	n := t.root
	for n != nil || len(stack) > 0 {
		for ; n != nil; n = n.left {
			stack = append(stack, n)
		}
		n = stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if !fn(n.run) {
			return
		}
		n = n.right
	}
}

// split divides n into runs with first < k and runs with first >= k.
func split(n *tnode, k u128) (lt, ge *tnode) {
	if n == nil {
		return nil, nil
	}
	if n.first.less(k) {
		n.right, ge = split(n.right, k)
		return n, ge
	}
	lt, n.left = split(n.left, k)
	return lt, n
}

// merge joins two treaps where every key of l is below every key of g.
func merge(l, g *tnode) *tnode {
	switch {
	case l == nil:
		return g
	case g == nil:
		return l
	case l.prio > g.prio:
		l.right = merge(l.right, g)
		return l
	}
	g.left = merge(l, g.left)
	return g
}

func removeNode(n *tnode, k u128) (*tnode, bool) {
	if n == nil {
		return nil, false
	}
	var removed bool
	switch c := k.cmp(n.first); {
	case c < 0:
		n.left, removed = removeNode(n.left, k)
	case c > 0:
		n.right, removed = removeNode(n.right, k)
	default:
		return merge(n.left, n.right), true
	}
	return n, removed
}
