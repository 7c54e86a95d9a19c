package e2e

import (
	"flag"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var takeoverN = flag.Int("takeover.services", 1000, "BenchmarkMigrateTakeover: Services holding MetalLB's addresses")

// takeoverBenchConfig is the MetalLB pool the benchmark's Services hold
// addresses of: 4,096 addresses, so that a renumbered Service would land
// on a lower, unused one.
const takeoverBenchConfig = `
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: prod, namespace: metallb-system}
spec:
  addresses: [198.18.16.0/20]
`

// BenchmarkMigrateTakeover takes over n Services that hold addresses
// MetalLB gave them (every tenth pair sharing one address under
// allow-shared-ip, every tenth Service pinned by loadBalancerIPs) and
// measures the time from berth-controller's start until all of them show
// Allocated, checking that none moved. b.N is ignored (-benchtime=1x).
func BenchmarkMigrateTakeover(b *testing.B) {
	n := *takeoverN
	e := newBenchEnv(b)
	applyConverted(b, e, takeoverBenchConfig)
	want := make([]foreignSvc, n)
	base := mustAddr("198.18.24.0") // the upper half of the pool
	for i := range n {
		s := foreignSvc{ns: "bench", name: fmt.Sprintf("t%05d", i), ports: []int32{80},
			annotations: map[string]string{"metallb.universe.tf/ip-allocated-from-pool": "prod"}}
		addr := nth(base, i)
		switch {
		case i%20 == 1: // shares the address of the one before
			addr = nth(base, i-1)
			s.ports = []int32{443}
			s.annotations["metallb.universe.tf/allow-shared-ip"] = fmt.Sprintf("k%d", i-1)
		case i%20 == 0:
			s.annotations["metallb.universe.tf/allow-shared-ip"] = fmt.Sprintf("k%d", i)
		case i%10 == 5:
			s.annotations["metallb.universe.tf/loadBalancerIPs"] = addr.String()
		}
		s.ips = []string{addr.String()}
		want[i] = s
	}
	const creators = 8
	var wg sync.WaitGroup
	for c := range creators {
		wg.Go(func() {
			for i := c; i < n; i += creators {
				e.foreignService(b, want[i])
			}
		})
	}
	wg.Wait()

	ctrl := e.startController(b)
	start := time.Now()
	got := e.waitAll(b, "bench", n, 10*time.Minute, "Allocated", func(s *corev1.Service) bool {
		c := condition(s)
		return c != nil && c.Status == metav1.ConditionTrue && len(addrs(s)) == 1
	})
	adopt := time.Since(start)
	ctrl.waitReady(b)
	moved := 0
	for _, s := range want {
		if a := addrs(got[s.name]); len(a) != 1 || a[0] != netip.MustParseAddr(s.ips[0]) {
			moved++
			if moved <= 5 {
				b.Errorf("%s moved from %s to %v", s.name, s.ips[0], a)
			}
		}
	}
	b.ReportMetric(adopt.Seconds(), "s-adopt-all")
	b.ReportMetric(float64(moved), "moved")
	b.Logf("%d Services adopted in %v after berth-controller started; %d moved", n, adopt.Round(time.Millisecond), moved)
}
