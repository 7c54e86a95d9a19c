package allocator

import (
	"fmt"
	"sync"
	"testing"
)

// TestConcurrentUse hammers one Allocator from several goroutines; run it
// with -race. Services of different goroutines compete for the same small
// pools, some sharing a key, while another goroutine replaces the pools.
func TestConcurrentUse(t *testing.T) {
	pools := []Pool{
		pool("lan", "198.51.100.0/28", "2001:db8::/124"),
		withPool(pool("wan", "198.51.100.8-198.51.100.23"), func(p *Pool) { p.Priority = 1; p.AllowCrossNamespaceSharing = true }),
	}
	a := New()
	a.SetPools(pools)
	const workers, rounds = 6, 300
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				r := req(fmt.Sprintf("ns%d/svc%d", w%2, i%7), "lan", "wan")
				r.Families = []Family{IPv4, IPv6}
				if i%3 == 0 {
					r = shared(r, "k", tcp(int32(w)))
				}
				if _, err := a.Assign(r); err != nil && ReasonOf(err) != ReasonPoolExhausted {
					errs <- err
					return
				}
				a.Lookup(r.Service)
				a.Stats("lan")
				a.Holders("wan")
				a.PoolsContaining(addr("198.51.100.9"))
				if i%5 == 0 {
					a.Release(r.Service)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range rounds / 10 {
			a.SetPools(pools)
			a.Invalid()
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkInvariants(t, a)
}
