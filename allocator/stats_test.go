package allocator

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// counts is FamilyStats as decimal strings, for readable tables.
type counts struct{ Total, Used, Free string }

func countsOf(fs FamilyStats) counts {
	return counts{fs.Total.String(), fs.Used.String(), fs.Free.String()}
}

type statsCase struct {
	name     string
	pools    []Pool
	assign   []Request
	pool     string
	v4, v6   counts
	overlaps []string
}

func statsCases() []statsCase {
	return []statsCase{{
		name:  "IPv4 /24 with reserved and overlapping ranges counted once",
		pools: []Pool{withPool(pool("lan", "198.51.100.0/24", "198.51.100.10-198.51.100.30"), func(p *Pool) { p.Reserved = rng("198.51.100.0-198.51.100.9") })},
		pool:  "lan",
		v4:    counts{"246", "0", "246"},
		v6:    counts{"0", "0", "0"},
	}, {
		name:   "avoidBuggyIPs over 0.0.0.0/0 is arithmetic, not a loop",
		pools:  []Pool{withPool(pool("all", "0.0.0.0/0"), func(p *Pool) { p.AvoidBuggyIPs = true })},
		assign: []Request{req("default/a", "all"), req("default/b", "all")},
		pool:   "all",
		// 254 of each /24 outside 0/8, 127/8, 169.254/16 and 224/4
		// (the broadcast /24 loses .255 to avoidBuggyIPs anyway).
		v4: counts{"3961717248", "2", "3961717246"},
		v6: counts{"0", "0", "0"},
	}, {
		name:  "avoidBuggyIPs with reserved edges and partial /24s",
		pools: []Pool{withPool(pool("lan", "198.51.100.200-198.51.102.10"), func(p *Pool) { p.AvoidBuggyIPs = true; p.Reserved = rng("198.51.101.0/25") })},
		pool:  "lan",
		// 100.200-100.255 minus .255 = 55; 101.128-102.10 minus 101.255, 102.0 = 137
		v4: counts{"192", "0", "192"},
		v6: counts{"0", "0", "0"},
	}, {
		name:   "IPv6 /64",
		pools:  []Pool{pool("v6", "2001:db8::/64")},
		assign: []Request{families(req("default/a", "v6"), false, IPv6)},
		pool:   "v6",
		v4:     counts{"0", "0", "0"},
		v6:     counts{"18446744073709551616", "1", "18446744073709551615"},
	}, {
		name:  "IPv6 /48 minus a reserved /64",
		pools: []Pool{withPool(pool("v6", "2001:db8::/48"), func(p *Pool) { p.Reserved = rng("2001:db8::/64") })},
		pool:  "v6",
		v4:    counts{"0", "0", "0"},
		v6:    counts{"1208907372870555465154560", "0", "1208907372870555465154560"}, // 2^80 - 2^64
	}, {
		name:   "IPv6 ::/0 is 2^128 minus the special-purpose blocks",
		pools:  []Pool{pool("all", "::/0", "2001:db8::/32")},
		assign: []Request{families(req("default/a", "all"), false, IPv6), families(req("default/b", "all"), false, IPv6)},
		pool:   "all",
		v4:     counts{"0", "0", "0"},
		// 2^128 - :: - ::1 - ::ffff:0:0/96 - fe80::/10 - ff00::/8
		v6: counts{"338620831926207318622244848602122813438", "2", "338620831926207318622244848602122813436"},
	}, {
		name: "shared addresses count once; addresses held via another pool count",
		pools: []Pool{pool("a", "198.51.100.0/30"), withPool(pool("b", "198.51.100.2-198.51.100.9"), func(p *Pool) { p.Priority = 1 }),
			pool("c", "198.51.100.64/26", "2001:db8::/120"), pool("d", "203.0.113.0/24"), pool("e", "2001:db8::ff/128")},
		assign: []Request{
			shared(req("default/x", "a"), "k", tcp(80)), shared(req("default/y", "a"), "k", tcp(81)),
			req("default/z", "b"), req("default/w", "b"), req("default/v", "b"),
		},
		pool:     "a",
		v4:       counts{"4", "3", "1"},
		v6:       counts{"0", "0", "0"},
		overlaps: []string{"b"},
	}, {
		name:     "overlaps are found per family",
		pools:    []Pool{pool("c", "198.51.100.64/26", "2001:db8::/120"), pool("d", "203.0.113.0/24"), pool("e", "2001:db8::ff/128", "198.51.100.0/26")},
		pool:     "c",
		v4:       counts{"64", "0", "64"},
		v6:       counts{"256", "0", "256"},
		overlaps: []string{"e"},
	}}
}

func TestStats(t *testing.T) {
	for _, tt := range statsCases() {
		t.Run(tt.name, func(t *testing.T) {
			a := New()
			a.SetPools(tt.pools)
			for _, r := range tt.assign {
				if _, err := a.Assign(r); err != nil {
					t.Fatal(err)
				}
			}
			st, ok := a.Stats(tt.pool)
			if !ok {
				t.Fatalf("Stats(%q) not found", tt.pool)
			}
			if d := cmp.Diff(tt.v4, countsOf(st.IPv4)); d != "" {
				t.Errorf("IPv4 (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tt.v6, countsOf(st.IPv6)); d != "" {
				t.Errorf("IPv6 (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tt.overlaps, st.Overlaps); d != "" {
				t.Errorf("Overlaps (-want +got):\n%s", d)
			}
			checkInvariants(t, a)
		})
	}
}

func TestStatsUnknownPool(t *testing.T) {
	a := New()
	if _, ok := a.Stats("nope"); ok {
		t.Error("Stats of an unknown pool reported ok")
	}
	var zero Allocator // the zero value is usable too
	if _, ok := zero.Stats("nope"); ok {
		t.Error("zero Allocator: Stats reported ok")
	}
	zero.SetPools([]Pool{pool("lan", "198.51.100.0/30")})
	if _, err := zero.Assign(req("default/a", "lan")); err != nil {
		t.Errorf("zero Allocator: Assign: %v", err)
	}
}

func TestStatsReturnsCopies(t *testing.T) {
	a := New()
	a.SetPools([]Pool{pool("lan", "198.51.100.0/30")})
	st, _ := a.Stats("lan")
	st.IPv4.Total.SetInt64(0)
	st.IPv4.Free.SetInt64(0)
	if st2, _ := a.Stats("lan"); st2.IPv4.Total.Int64() != 4 || st2.IPv4.Free.Int64() != 4 {
		t.Errorf("mutating returned stats changed the pool: %v", countsOf(st2.IPv4))
	}
}
