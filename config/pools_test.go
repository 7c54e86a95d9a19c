package config_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/config"
)

// cmpAddr compares netip.Addr by value; cmp cannot look inside it.
var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

type poolOpt func(*v1alpha1.BerthIPPool)

// berthippool returns a BerthIPPool as the API server would store it, apart from
// defaults, which the tests set explicitly where they matter.
func ippool(name string, addrs []string, opts ...poolOpt) *v1alpha1.BerthIPPool {
	p := &v1alpha1.BerthIPPool{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, a := range addrs {
		p.Spec.Addresses = append(p.Spec.Addresses, v1alpha1.AddressRange(a))
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func reserved(rs ...string) poolOpt {
	return func(p *v1alpha1.BerthIPPool) {
		for _, r := range rs {
			p.Spec.Reserved = append(p.Spec.Reserved, v1alpha1.AddressRange(r))
		}
	}
}

func autoAssign(b bool) poolOpt { return func(p *v1alpha1.BerthIPPool) { p.Spec.AutoAssign = new(b) } }

func ipMode(m v1alpha1.IPMode) poolOpt { return func(p *v1alpha1.BerthIPPool) { p.Spec.IPMode = m } }

func avoidBuggy(p *v1alpha1.BerthIPPool) { p.Spec.AvoidBuggyIPs = true }

func crossNamespace(p *v1alpha1.BerthIPPool) { p.Spec.AllowCrossNamespaceSharing = true }

func terminating(p *v1alpha1.BerthIPPool) {
	p.DeletionTimestamp = &metav1.Time{}
	p.Finalizers = []string{v1alpha1.PoolFinalizer}
}

func allocation(sa v1alpha1.ServiceAllocation) poolOpt {
	return func(p *v1alpha1.BerthIPPool) { p.Spec.ServiceAllocation = &sa }
}

func matchLabels(kv ...string) *metav1.LabelSelector {
	ls := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		ls.MatchLabels[kv[i]] = kv[i+1]
	}
	return ls
}

func rng(first, last string) allocator.Range {
	return allocator.Range{First: netip.MustParseAddr(first), Last: netip.MustParseAddr(last)}
}

func one(a string) allocator.Range { return rng(a, a) }

func TestFor(t *testing.T) {
	tests := []struct {
		name string
		pool *v1alpha1.BerthIPPool
		want config.Pool
		// problems are substrings of the expected Problems, in order; a
		// pool with problems must be left out of AllocatorPools.
		problems []string
	}{
		{
			name: "IPv4 CIDR with defaults",
			pool: ippool("p", []string{"198.51.100.0/24"}),
			want: config.Pool{
				Alloc:  allocator.Pool{Name: "p", Ranges: []allocator.Range{rng("198.51.100.0", "198.51.100.255")}, AutoAssign: true},
				IPMode: v1alpha1.IPModeVIP,
			},
		},
		{
			name: "IPv6 CIDR",
			pool: ippool("p", []string{"2001:db8:100::/64"}),
			want: config.Pool{
				Alloc:  allocator.Pool{Name: "p", Ranges: []allocator.Range{rng("2001:db8:100::", "2001:db8:100::ffff:ffff:ffff:ffff")}, AutoAssign: true},
				IPMode: v1alpha1.IPModeVIP,
			},
		},
		{
			name: "mixed families, ranges, single addresses and every option",
			pool: ippool("p",
				[]string{"198.51.100.0/25", "198.51.100.200 - 198.51.100.210", "2001:db8:200::/120", "203.0.113.7"},
				reserved("198.51.100.1", "2001:db8:200::1-2001:db8:200::f"),
				avoidBuggy, crossNamespace, ipMode(v1alpha1.IPModeProxy), autoAssign(true),
				allocation(v1alpha1.ServiceAllocation{Priority: 5})),
			want: config.Pool{
				Alloc: allocator.Pool{
					Name: "p",
					Ranges: []allocator.Range{
						rng("198.51.100.0", "198.51.100.127"),
						rng("198.51.100.200", "198.51.100.210"),
						rng("2001:db8:200::", "2001:db8:200::ff"),
						one("203.0.113.7"),
					},
					Reserved:                   []allocator.Range{one("198.51.100.1"), rng("2001:db8:200::1", "2001:db8:200::f")},
					AvoidBuggyIPs:              true,
					AutoAssign:                 true,
					Priority:                   5,
					AllowCrossNamespaceSharing: true,
				},
				IPMode: v1alpha1.IPModeProxy,
			},
		},
		{
			name: "autoAssign false",
			pool: ippool("p", []string{"198.51.100.0/24"}, autoAssign(false)),
			want: config.Pool{
				Alloc:  allocator.Pool{Name: "p", Ranges: []allocator.Range{rng("198.51.100.0", "198.51.100.255")}},
				IPMode: v1alpha1.IPModeVIP,
			},
		},
		{
			name: "reserved covered only by the union of two entries",
			pool: ippool("p", []string{"198.51.100.0/25", "198.51.100.128/25"}, reserved("198.51.100.100-198.51.100.200")),
			want: config.Pool{
				Alloc: allocator.Pool{
					Name:       "p",
					Ranges:     []allocator.Range{rng("198.51.100.0", "198.51.100.127"), rng("198.51.100.128", "198.51.100.255")},
					Reserved:   []allocator.Range{rng("198.51.100.100", "198.51.100.200")},
					AutoAssign: true,
				},
				IPMode: v1alpha1.IPModeVIP,
			},
		},
		{
			name: "reserved equal to the whole pool",
			pool: ippool("p", []string{"223.255.255.0/24"}, reserved("223.255.255.0/24")),
			want: config.Pool{
				Alloc: allocator.Pool{
					Name:       "p",
					Ranges:     []allocator.Range{rng("223.255.255.0", "223.255.255.255")},
					Reserved:   []allocator.Range{rng("223.255.255.0", "223.255.255.255")},
					AutoAssign: true,
				},
				IPMode: v1alpha1.IPModeVIP,
			},
		},
		{
			name: "terminating pool is still valid",
			pool: ippool("p", []string{"198.51.100.0/24"}, terminating),
			want: config.Pool{
				Alloc:       allocator.Pool{Name: "p", Ranges: []allocator.Range{rng("198.51.100.0", "198.51.100.255")}, AutoAssign: true},
				IPMode:      v1alpha1.IPModeVIP,
				Terminating: true,
			},
		},
		{
			name:     "CIDR with host bits",
			pool:     ippool("p", []string{"198.51.100.1/24"}),
			want:     config.Pool{Alloc: allocator.Pool{Name: "p", AutoAssign: true}, IPMode: v1alpha1.IPModeVIP},
			problems: []string{"host bits set"},
		},
		{
			name:     "unparsable entry keeps the good ones",
			pool:     ippool("p", []string{"not-an-ip", "198.51.100.0/24"}),
			want:     config.Pool{Alloc: allocator.Pool{Name: "p", Ranges: []allocator.Range{rng("198.51.100.0", "198.51.100.255")}, AutoAssign: true}, IPMode: v1alpha1.IPModeVIP},
			problems: []string{`addresses: "not-an-ip"`},
		},
		{
			name:     "reversed range",
			pool:     ippool("p", []string{"198.51.100.20-198.51.100.10"}),
			want:     config.Pool{Alloc: allocator.Pool{Name: "p", AutoAssign: true}, IPMode: v1alpha1.IPModeVIP},
			problems: []string{"reversed"},
		},
		{
			name:     "range mixing families",
			pool:     ippool("p", []string{"198.51.100.1-2001:db8::1"}),
			want:     config.Pool{Alloc: allocator.Pool{Name: "p", AutoAssign: true}, IPMode: v1alpha1.IPModeVIP},
			problems: []string{"mixes IPv4 and IPv6"},
		},
		{
			name:     "zoned address",
			pool:     ippool("p", []string{"fe80::1%eth0"}),
			want:     config.Pool{Alloc: allocator.Pool{Name: "p", AutoAssign: true}, IPMode: v1alpha1.IPModeVIP},
			problems: []string{"zone"},
		},
		{
			name:     "IPv4-mapped IPv6 CIDR",
			pool:     ippool("p", []string{"::ffff:198.51.100.0/120"}),
			want:     config.Pool{Alloc: allocator.Pool{Name: "p", AutoAssign: true}, IPMode: v1alpha1.IPModeVIP},
			problems: []string{"IPv4-mapped"},
		},
		{
			name:     "no addresses",
			pool:     ippool("p", nil),
			want:     config.Pool{Alloc: allocator.Pool{Name: "p", AutoAssign: true}, IPMode: v1alpha1.IPModeVIP},
			problems: []string{"addresses is empty"},
		},
		{
			name: "reserved outside the addresses",
			pool: ippool("p", []string{"198.51.100.0/24"}, reserved("192.0.2.1")),
			want: config.Pool{
				Alloc: allocator.Pool{
					Name: "p", Ranges: []allocator.Range{rng("198.51.100.0", "198.51.100.255")},
					Reserved: []allocator.Range{one("192.0.2.1")}, AutoAssign: true,
				},
				IPMode: v1alpha1.IPModeVIP,
			},
			problems: []string{`reserved entry "192.0.2.1" is not inside the pool's addresses`},
		},
		{
			name: "reserved partly outside",
			pool: ippool("p", []string{"198.51.100.0/24"}, reserved("198.51.100.250-198.51.101.5")),
			want: config.Pool{
				Alloc: allocator.Pool{
					Name: "p", Ranges: []allocator.Range{rng("198.51.100.0", "198.51.100.255")},
					Reserved: []allocator.Range{rng("198.51.100.250", "198.51.101.5")}, AutoAssign: true,
				},
				IPMode: v1alpha1.IPModeVIP,
			},
			problems: []string{`reserved entry "198.51.100.250-198.51.101.5" is not inside`},
		},
		{
			name: "reserved of the other family",
			pool: ippool("p", []string{"198.51.100.0/24"}, reserved("2001:db8::1")),
			want: config.Pool{
				Alloc: allocator.Pool{
					Name: "p", Ranges: []allocator.Range{rng("198.51.100.0", "198.51.100.255")},
					Reserved: []allocator.Range{one("2001:db8::1")}, AutoAssign: true,
				},
				IPMode: v1alpha1.IPModeVIP,
			},
			problems: []string{`reserved entry "2001:db8::1" is not inside`},
		},
		{
			name: "unparsable reserved entry",
			pool: ippool("p", []string{"198.51.100.0/24"}, reserved("198.51.100.x")),
			want: config.Pool{
				Alloc:  allocator.Pool{Name: "p", Ranges: []allocator.Range{rng("198.51.100.0", "198.51.100.255")}, AutoAssign: true},
				IPMode: v1alpha1.IPModeVIP,
			},
			problems: []string{`reserved: "198.51.100.x"`},
		},
		{
			name:     "problems accumulate",
			pool:     ippool("p", []string{"198.51.100.1/24"}, reserved("198.51.100.1"), ipMode("Tunnel")),
			want:     config.Pool{Alloc: allocator.Pool{Name: "p", Reserved: []allocator.Range{one("198.51.100.1")}, AutoAssign: true}, IPMode: "Tunnel"},
			problems: []string{`ipMode "Tunnel" is neither VIP nor Proxy`, "host bits", `reserved entry "198.51.100.1" is not inside`},
		},
		{
			name: "invalid namespaceSelector",
			pool: ippool("p", []string{"198.51.100.0/24"}, allocation(v1alpha1.ServiceAllocation{
				Priority: 3,
				NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "env", Operator: "Bogus", Values: []string{"prod"}},
				}},
			})),
			want: config.Pool{
				Alloc:  allocator.Pool{Name: "p", Ranges: []allocator.Range{rng("198.51.100.0", "198.51.100.255")}, AutoAssign: true, Priority: 3},
				IPMode: v1alpha1.IPModeVIP,
			},
			problems: []string{"serviceAllocation.namespaceSelector: "},
		},
		{
			name: "invalid serviceSelector",
			pool: ippool("p", []string{"198.51.100.0/24"}, allocation(v1alpha1.ServiceAllocation{
				ServiceSelector: matchLabels("not a key!", "x"),
			})),
			want: config.Pool{
				Alloc:  allocator.Pool{Name: "p", Ranges: []allocator.Range{rng("198.51.100.0", "198.51.100.255")}, AutoAssign: true},
				IPMode: v1alpha1.IPModeVIP,
			},
			problems: []string{"serviceAllocation.serviceSelector: "},
		},
	}
	opts := cmp.Options{cmpAddr, cmpopts.EquateEmpty(), cmpopts.IgnoreUnexported(config.Pool{}), cmpopts.IgnoreFields(config.Pool{}, "Problems")}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.For([]*v1alpha1.BerthIPPool{tc.pool})
			got, ok := cfg.Pool(tc.pool.Name)
			if !ok {
				t.Fatalf("Pool(%q) not found; every pool, valid or not, must be returned", tc.pool.Name)
			}
			if diff := cmp.Diff(tc.want, *got, opts); diff != "" {
				t.Errorf("pool (-want +got):\n%s", diff)
			}
			if len(got.Problems) != len(tc.problems) {
				t.Fatalf("Problems = %q, want %d matching %q", got.Problems, len(tc.problems), tc.problems)
			}
			for i, want := range tc.problems {
				if !strings.Contains(got.Problems[i], want) {
					t.Errorf("Problems[%d] = %q, want it to contain %q", i, got.Problems[i], want)
				}
			}
			// Every pool reaches the allocator; broken or terminating
			// ones drain, so their holders keep what they have.
			wantAlloc := []allocator.Pool{tc.want.Alloc}
			wantAlloc[0].Draining = len(tc.problems) > 0 || tc.want.Terminating
			if diff := cmp.Diff(wantAlloc, cfg.AllocatorPools(), cmpAddr, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("AllocatorPools (-want +got):\n%s", diff)
			}
		})
	}
}

func TestForSnapshot(t *testing.T) {
	tests := []struct {
		name      string
		pools     []*v1alpha1.BerthIPPool
		wantNames []string
		wantAlloc []string // pools handed to the allocator, "!" marks draining ones
	}{
		{name: "no pools"},
		{
			name: "names sorted; invalid and terminating pools drain",
			pools: []*v1alpha1.BerthIPPool{
				ippool("zeta", []string{"198.51.100.0/26"}),
				ippool("alpha", []string{"198.51.100.65/26"}), // host bits: invalid
				ippool("mid", []string{"2001:db8:100::/64"}, terminating),
				ippool("beta", []string{"203.0.113.0/24"}, reserved("192.0.2.1")), // invalid
				ippool("gamma", []string{"192.0.2.0/24"}, autoAssign(false)),
			},
			wantNames: []string{"alpha", "beta", "gamma", "mid", "zeta"},
			wantAlloc: []string{"!alpha", "!beta", "gamma", "!mid", "zeta"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.For(tc.pools)
			if diff := cmp.Diff(tc.wantNames, cfg.Names(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Names (-want +got):\n%s", diff)
			}
			var gotAlloc []string
			for _, p := range cfg.AllocatorPools() {
				name := p.Name
				if p.Draining {
					name = "!" + name
				}
				gotAlloc = append(gotAlloc, name)
			}
			if diff := cmp.Diff(tc.wantAlloc, gotAlloc, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("AllocatorPools names (-want +got):\n%s", diff)
			}
			for _, n := range tc.wantNames {
				if _, ok := cfg.Pool(n); !ok {
					t.Errorf("Pool(%q) not found", n)
				}
			}
			if _, ok := cfg.Pool("no-such-pool"); ok {
				t.Errorf("Pool(no-such-pool) found")
			}
		})
	}
}

func TestForDoesNotMutateInput(t *testing.T) {
	pools := []*v1alpha1.BerthIPPool{
		ippool("b", []string{"198.51.100.0/24"}),
		ippool("a", []string{"2001:db8::/64"}, allocation(v1alpha1.ServiceAllocation{Namespaces: []string{"y", "x"}})),
	}
	before := []*v1alpha1.BerthIPPool{pools[0].DeepCopy(), pools[1].DeepCopy()}
	config.For(pools)
	if diff := cmp.Diff(before, pools); diff != "" {
		t.Errorf("For changed its input (-before +after):\n%s", diff)
	}
}

func TestAllows(t *testing.T) {
	byList := &v1alpha1.ServiceAllocation{Namespaces: []string{"team-b", "team-a"}}
	byNSLabel := &v1alpha1.ServiceAllocation{NamespaceSelector: matchLabels("tenant", "a")}
	byNSExpr := &v1alpha1.ServiceAllocation{NamespaceSelector: &metav1.LabelSelector{
		MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{"staging", "prod"}},
		},
	}}
	bySvcLabel := &v1alpha1.ServiceAllocation{ServiceSelector: matchLabels("tier", "gold")}
	emptySelectors := &v1alpha1.ServiceAllocation{NamespaceSelector: &metav1.LabelSelector{}, ServiceSelector: &metav1.LabelSelector{}}
	all := &v1alpha1.ServiceAllocation{
		Namespaces:        []string{"team-a"},
		NamespaceSelector: matchLabels("tenant", "a"),
		ServiceSelector:   matchLabels("tier", "gold"),
	}
	type outcome struct {
		OK     bool
		Reason string
	}
	tests := []struct {
		name      string
		alloc     *v1alpha1.ServiceAllocation
		ns        string
		svcLabels labels.Set
		nsLabels  labels.Set
		want      outcome
	}{
		{name: "unrestricted", ns: "default", want: outcome{OK: true}},
		{name: "priority alone restricts nothing", alloc: &v1alpha1.ServiceAllocation{Priority: 10}, ns: "default", want: outcome{OK: true}},
		{name: "empty selectors match everything", alloc: emptySelectors, ns: "x", want: outcome{OK: true}},

		{name: "namespaces: listed", alloc: byList, ns: "team-b", want: outcome{OK: true}},
		{name: "namespaces: not listed", alloc: byList, ns: "default",
			want: outcome{Reason: `pool "p" does not serve namespace "default"`}},

		{name: "namespaceSelector: matching", alloc: byNSLabel, ns: "x", nsLabels: labels.Set{"tenant": "a", "other": "y"}, want: outcome{OK: true}},
		{name: "namespaceSelector: other value", alloc: byNSLabel, ns: "x", nsLabels: labels.Set{"tenant": "b"},
			want: outcome{Reason: `pool "p" does not serve namespace "x" (its labels do not match the pool's namespaceSelector)`}},
		{name: "namespaceSelector: no labels", alloc: byNSLabel, ns: "x",
			want: outcome{Reason: `pool "p" does not serve namespace "x" (its labels do not match the pool's namespaceSelector)`}},
		{name: "namespaceSelector: the Service's labels do not count", alloc: byNSLabel, ns: "x", svcLabels: labels.Set{"tenant": "a"},
			want: outcome{Reason: `pool "p" does not serve namespace "x" (its labels do not match the pool's namespaceSelector)`}},
		{name: "namespaceSelector expression: in set", alloc: byNSExpr, ns: "x", nsLabels: labels.Set{"env": "prod"}, want: outcome{OK: true}},
		{name: "namespaceSelector expression: not in set", alloc: byNSExpr, ns: "x", nsLabels: labels.Set{"env": "dev"},
			want: outcome{Reason: `pool "p" does not serve namespace "x" (its labels do not match the pool's namespaceSelector)`}},

		{name: "serviceSelector: matching", alloc: bySvcLabel, ns: "x", svcLabels: labels.Set{"tier": "gold"}, want: outcome{OK: true}},
		{name: "serviceSelector: other value", alloc: bySvcLabel, ns: "x", svcLabels: labels.Set{"tier": "silver"},
			want: outcome{Reason: `pool "p" does not serve this Service (its labels do not match the pool's serviceSelector)`}},
		{name: "serviceSelector: the namespace's labels do not count", alloc: bySvcLabel, ns: "x", nsLabels: labels.Set{"tier": "gold"},
			want: outcome{Reason: `pool "p" does not serve this Service (its labels do not match the pool's serviceSelector)`}},

		{name: "combination: all match", alloc: all, ns: "team-a", svcLabels: labels.Set{"tier": "gold"}, nsLabels: labels.Set{"tenant": "a"},
			want: outcome{OK: true}},
		{name: "combination: wrong namespace is named first", alloc: all, ns: "team-b",
			want: outcome{Reason: `pool "p" does not serve namespace "team-b"`}},
		{name: "combination: namespace lacks label", alloc: all, ns: "team-a", svcLabels: labels.Set{"tier": "gold"},
			want: outcome{Reason: `pool "p" does not serve namespace "team-a" (its labels do not match the pool's namespaceSelector)`}},
		{name: "combination: Service lacks label", alloc: all, ns: "team-a", nsLabels: labels.Set{"tenant": "a"},
			want: outcome{Reason: `pool "p" does not serve this Service (its labels do not match the pool's serviceSelector)`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var opts []poolOpt
			if tc.alloc != nil {
				opts = append(opts, allocation(*tc.alloc))
			}
			cfg := config.For([]*v1alpha1.BerthIPPool{ippool("p", []string{"198.51.100.0/24"}, opts...)})
			p, _ := cfg.Pool("p")
			if len(p.Problems) > 0 {
				t.Fatalf("pool has problems: %q", p.Problems)
			}
			ok, reason := p.Allows(tc.ns, tc.svcLabels, tc.nsLabels)
			if diff := cmp.Diff(tc.want, outcome{ok, reason}); diff != "" {
				t.Errorf("Allows(%q, %v, %v) (-want +got):\n%s", tc.ns, tc.svcLabels, tc.nsLabels, diff)
			}
		})
	}
}
