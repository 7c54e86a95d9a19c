package allocator

import (
	"strconv"
	"testing"
)

// The benchmarks show that costs depend on the number of held addresses
// (logarithmically) and not on pool size: compare the /16 with the /8, and
// the /48 with the /64 and ::/0, at equal allocation counts. The
// "fragmented" and "avoidBuggy" cases show that gaps in the held addresses
// (released holes, skipped .0/.255) do not make the search for the lowest
// free address walk them.

type benchCase struct {
	name     string
	pool     Pool
	family   Family
	existing int
	holes    bool // release every other existing allocation
}

func benchCases() []benchCase {
	v4 := func(cidr string) Pool { return pool("p", cidr) }
	return []benchCase{
		{"v4-/16-10k", v4("10.0.0.0/16"), IPv4, 10_000, false},
		// 100k does not fit in a /16 (65,536 addresses): use 60k, and a /8.
		{"v4-/16-60k", v4("10.0.0.0/16"), IPv4, 60_000, false},
		{"v4-/16-60k-avoidBuggy", withPool(v4("10.0.0.0/16"), func(p *Pool) { p.AvoidBuggyIPs = true }), IPv4, 60_000, false},
		{"v4-/8-100k", v4("10.0.0.0/8"), IPv4, 100_000, false},
		{"v6-/48-10k", v4("2001:db8::/48"), IPv6, 10_000, false},
		{"v6-/48-100k", v4("2001:db8::/48"), IPv6, 100_000, false},
		{"v6-/48-100k-fragmented", v4("2001:db8::/48"), IPv6, 100_000, true},
		{"v6-/64-100k", v4("2001:db8::/64"), IPv6, 100_000, false},
		{"v6-::/0-100k", v4("::/0"), IPv6, 100_000, false},
	}
}

func benchRequest(c benchCase, name string) Request {
	return Request{Service: name, Namespace: "bench", Families: []Family{c.family}, Pools: []string{c.pool.Name}}
}

func benchAllocator(b *testing.B, c benchCase) *Allocator {
	b.Helper()
	a := New()
	a.SetPools([]Pool{c.pool})
	for i := range c.existing {
		if _, err := a.Assign(benchRequest(c, "bench/existing-"+strconv.Itoa(i))); err != nil {
			b.Fatal(err)
		}
	}
	if c.holes {
		for i := 0; i < c.existing; i += 2 {
			a.Release("bench/existing-" + strconv.Itoa(i))
		}
	}
	return a
}

func (a *Allocator) heldRuns(c benchCase) float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return float64(a.pools[c.pool.Name].fam(c.family).held.runs)
}

// batch is how many operations run between untimed clean-ups, so that the
// number of held addresses stays close to the case's figure however long
// the benchmark runs.
const batch = 1024

func BenchmarkAssign(b *testing.B) {
	for _, c := range benchCases() {
		b.Run(c.name, func(b *testing.B) {
			a := benchAllocator(b, c)
			reqs := make([]Request, batch)
			for i := range reqs {
				reqs[i] = benchRequest(c, "bench/new-"+strconv.Itoa(i))
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := a.Assign(reqs[i]); err != nil {
					b.Fatal(err)
				}
				if i++; i == batch {
					b.StopTimer()
					for _, r := range reqs {
						a.Release(r.Service)
					}
					i = 0
					b.StartTimer()
				}
			}
			b.ReportMetric(a.heldRuns(c), "runs")
		})
	}
}

func BenchmarkRelease(b *testing.B) {
	for _, c := range benchCases() {
		b.Run(c.name, func(b *testing.B) {
			a := benchAllocator(b, c)
			// Release existing Services spread over the pool, splitting
			// runs, then put them back untimed.
			reqs := make([]Request, batch)
			for i := range reqs {
				r := benchRequest(c, "bench/existing-"+strconv.Itoa((i*c.existing/batch)|1))
				for _, as := range a.Lookup(r.Service) {
					r.Current = append(r.Current, as.Addr)
				}
				reqs[i] = r
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				a.Release(reqs[i].Service)
				if i++; i == batch {
					b.StopTimer()
					for _, r := range reqs {
						if _, err := a.Assign(r); err != nil {
							b.Fatal(err)
						}
					}
					i = 0
					b.StartTimer()
				}
			}
		})
	}
}

func BenchmarkStats(b *testing.B) {
	for _, c := range benchCases() {
		b.Run(c.name, func(b *testing.B) {
			a := benchAllocator(b, c)
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := a.Stats(c.pool.Name); !ok {
					b.Fatal("no stats")
				}
			}
		})
	}
}
