package config

import (
	"fmt"
	"net/netip"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
)

// Config is the validated view of all BerthIPPools at one moment.
type Config struct {
	pools   map[string]*Pool
	names   []string // sorted
	cluster Cluster
}

// Pool is one BerthIPPool as the controller uses it.
type Pool struct {
	// Alloc is what the allocator needs to know about the pool.
	Alloc allocator.Pool
	// IPMode goes into the ingress entries of Services served by the pool.
	IPMode v1alpha1.IPMode
	// Terminating pools keep serving the addresses already handed out but
	// give out no new ones.
	Terminating bool
	// Problems lists what is wrong with the spec; a pool with problems
	// drains (its holders keep their addresses, nobody gets a new one) and
	// its Ready condition says why.
	Problems []string
	// ClusterUse describes what the cluster uses inside the pool's
	// ranges (its Service or pod ranges, node addresses). Those addresses
	// are reserved: never handed out, and taken off a Service that held
	// one before the cluster took it.
	ClusterUse []string

	restricted bool
	namespaces sets.Set[string]
	nsSelector labels.Selector
	svcSelect  labels.Selector
}

// For validates a snapshot of BerthIPPools. A pool with an invalid spec does not
// make the whole configuration fail: it is kept, marked with its Problems,
// and left out of allocation, so that one bad edit cannot take addresses
// away from the Services of other pools.
func For(pools []*v1alpha1.BerthIPPool) *Config { return ForCluster(pools, Cluster{}) }

// ForCluster is For with the ranges the cluster uses, which no pool hands
// out.
func ForCluster(pools []*v1alpha1.BerthIPPool, cluster Cluster) *Config {
	c := &Config{pools: make(map[string]*Pool, len(pools)), cluster: cluster}
	for _, ip := range pools {
		p := convert(ip)
		used, what := cluster.overlapping(p)
		p.Alloc.Reserved = append(p.Alloc.Reserved, used...)
		p.ClusterUse = what
		c.pools[ip.Name] = p
		c.names = append(c.names, ip.Name)
	}
	slices.Sort(c.names)
	return c
}

func convert(ip *v1alpha1.BerthIPPool) *Pool {
	spec := &ip.Spec
	p := &Pool{
		Alloc: allocator.Pool{
			Name:                       ip.Name,
			AvoidBuggyIPs:              spec.AvoidBuggyIPs,
			AutoAssign:                 spec.AutoAssign == nil || *spec.AutoAssign,
			AllowCrossNamespaceSharing: spec.AllowCrossNamespaceSharing,
		},
		IPMode:      spec.IPMode,
		Terminating: ip.DeletionTimestamp != nil,
	}
	if p.IPMode == "" {
		p.IPMode = v1alpha1.IPModeVIP
	}
	if p.IPMode != v1alpha1.IPModeVIP && p.IPMode != v1alpha1.IPModeProxy {
		p.Problems = append(p.Problems, fmt.Sprintf("ipMode %q is neither VIP nor Proxy", p.IPMode))
	}
	p.Alloc.Ranges = parseRanges(spec.Addresses, "addresses", &p.Problems)
	p.Alloc.Reserved = parseRanges(spec.Reserved, "reserved", &p.Problems)
	if len(spec.Addresses) == 0 {
		p.Problems = append(p.Problems, "addresses is empty")
	}
	p.Problems = append(p.Problems, specialPurpose(spec.Addresses, spec.AllowCatchAll)...)
	for i, r := range p.Alloc.Reserved {
		if !coveredBy(r, p.Alloc.Ranges) {
			p.Problems = append(p.Problems, fmt.Sprintf("reserved entry %q is not inside the pool's addresses", spec.Reserved[i]))
		}
	}
	if sa := spec.ServiceAllocation; sa != nil {
		p.restricted = true
		p.Alloc.Priority = int(sa.Priority)
		p.namespaces = sets.New(sa.Namespaces...)
		p.nsSelector = selector(sa.NamespaceSelector, "namespaceSelector", &p.Problems)
		p.svcSelect = selector(sa.ServiceSelector, "serviceSelector", &p.Problems)
	}
	return p
}

// specialPurpose checks what the API server's rules check, and what they
// cannot: an entry inside a special-purpose block is never valid, and one
// spanning such a block (0.0.0.0/0, or a range whose ends lie outside
// it, which CEL cannot see) needs allowCatchAll. Pools admitted before
// the rules existed are caught here too.
func specialPurpose(entries []v1alpha1.AddressRange, allowCatchAll bool) []string {
	var out []string
	for _, e := range entries {
		r, err := allocator.ParseRange(string(e))
		if err != nil {
			continue // reported by parseRanges
		}
		for _, b := range allocator.SpecialPurposeBlocks() {
			first, last := b.Masked().Addr(), lastAddr(b)
			if first.BitLen() != r.First.BitLen() || r.Last.Less(first) || last.Less(r.First) {
				continue
			}
			if first.Compare(r.First) <= 0 && r.Last.Compare(last) <= 0 {
				out = append(out, fmt.Sprintf("addresses entry %q lies inside the special-purpose block %s, whose addresses are never handed out", e, b))
				break
			}
			if !allowCatchAll {
				out = append(out, fmt.Sprintf("addresses entry %q spans the special-purpose block %s; narrow it, or set allowCatchAll: true (its special-purpose addresses are still never handed out)", e, b))
				break
			}
		}
	}
	return out
}

func parseRanges(entries []v1alpha1.AddressRange, field string, problems *[]string) []allocator.Range {
	out := make([]allocator.Range, 0, len(entries))
	for _, e := range entries {
		r, err := allocator.ParseRange(string(e))
		if err != nil {
			*problems = append(*problems, fmt.Sprintf("%s: %v", field, err))
			continue
		}
		out = append(out, r)
	}
	return out
}

// coveredBy reports whether every address of r lies in the union of rs.
func coveredBy(r allocator.Range, rs []allocator.Range) bool {
	next := r.First
	for {
		advanced := false
		for _, c := range rs {
			if c.First.BitLen() != next.BitLen() || c.First.Compare(next) > 0 || c.Last.Compare(next) < 0 {
				continue
			}
			if c.Last.Compare(r.Last) >= 0 {
				return true
			}
			next = c.Last.Next()
			advanced = true
		}
		if !advanced {
			return false
		}
	}
}

func selector(ls *metav1.LabelSelector, field string, problems *[]string) labels.Selector {
	if ls == nil {
		return nil
	}
	s, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		*problems = append(*problems, fmt.Sprintf("serviceAllocation.%s: %v", field, err))
		return labels.Nothing()
	}
	return s
}

// Pool returns the named pool.
func (c *Config) Pool(name string) (*Pool, bool) {
	p, ok := c.pools[name]
	return p, ok
}

// Cluster returns the ranges the cluster uses.
func (c *Config) Cluster() Cluster { return c.cluster }

// Names returns the names of all pools in order.
func (c *Config) Names() []string { return c.names }

// AllocatorPools returns the pools to hand to the allocator. Terminating
// pools and pools with problems are included but draining: their holders
// keep their addresses, and nobody gets a new one from them. An edit that
// breaks a pool therefore stops new allocations without taking a working
// address away.
func (c *Config) AllocatorPools() []allocator.Pool {
	out := make([]allocator.Pool, 0, len(c.names))
	for _, n := range c.names {
		p := c.pools[n]
		a := p.Alloc
		a.Draining = p.Terminating || len(p.Problems) > 0
		out = append(out, a)
	}
	return out
}

// Allows reports whether the pool serves a Service in namespace ns with the
// given labels, when the namespace carries nsLabels. When it does not, the
// reason says which rule excluded the Service, without listing what the
// pool admits: the reason is shown to the Service's owner, who must not
// learn other tenants' namespaces or labels from it.
func (p *Pool) Allows(ns string, svcLabels, nsLabels labels.Set) (bool, string) {
	if !p.restricted {
		return true, ""
	}
	if p.namespaces.Len() > 0 && !p.namespaces.Has(ns) {
		return false, fmt.Sprintf("pool %q does not serve namespace %q", p.Alloc.Name, ns)
	}
	if p.nsSelector != nil && !p.nsSelector.Matches(nsLabels) {
		return false, fmt.Sprintf("pool %q does not serve namespace %q (its labels do not match the pool's namespaceSelector)", p.Alloc.Name, ns)
	}
	if p.svcSelect != nil && !p.svcSelect.Matches(svcLabels) {
		return false, fmt.Sprintf("pool %q does not serve this Service (its labels do not match the pool's serviceSelector)", p.Alloc.Name)
	}
	return true, ""
}

// PoolFor returns the name of the first pool, in name order, whose
// addresses contain addr, and false if none does.
func (c *Config) PoolFor(addr netip.Addr) (string, bool) {
	for _, n := range c.names {
		if c.pools[n].contains(addr) {
			return n, true
		}
	}
	return "", false
}

// Covers reports whether every address of prefix lies inside one of the
// pool's ranges.
func (p *Pool) Covers(prefix netip.Prefix) bool {
	first := prefix.Masked().Addr()
	last := lastAddr(prefix)
	for _, r := range p.Alloc.Ranges {
		if r.First.BitLen() == first.BitLen() && r.First.Compare(first) <= 0 && r.Last.Compare(last) >= 0 {
			return true
		}
	}
	return false
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
