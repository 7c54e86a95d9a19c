package controller

import (
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
)

// TestMetricsLint fills every controller metric, runs the Prometheus
// linter over the registry, and checks the pending Services gauge and
// the deletion of a removed pool's series.
func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	svc := func(name string, status metav1.ConditionStatus, reason string) *corev1.Service {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
		if reason != "" {
			s.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ServiceConditionAddressAllocated, Status: status, Reason: reason}}
		}
		return s
	}
	for _, s := range []*corev1.Service{
		svc("a", metav1.ConditionFalse, v1alpha1.ReasonPoolExhausted),
		svc("b", metav1.ConditionFalse, v1alpha1.ReasonPoolExhausted),
		svc("c", metav1.ConditionFalse, v1alpha1.ReasonNoMatchingPool),
		svc("d", metav1.ConditionTrue, v1alpha1.ReasonAllocated),
		svc("e", "", ""), // not Berth's
	} {
		if err := idx.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	m.pending.watch(corelisters.NewServiceLister(idx))
	m.observeReconcile("service", 0, nil)
	m.observeReconcile("service", 0, errors.New("conflict"))
	m.allocations.Inc()
	m.failures.WithLabelValues(v1alpha1.ReasonPoolExhausted).Inc()
	m.statusWrites.Inc()
	ten := big.NewInt(10)
	m.setPool("p1", allocator.PoolStats{IPv4: allocator.FamilyStats{Total: ten, Used: big.NewInt(3), Free: big.NewInt(7)}})
	m.setPool("p2", allocator.PoolStats{IPv4: allocator.FamilyStats{Total: ten, Used: ten, Free: new(big.Int)}})
	m.forgetPool("p2")
	m.queues.NewDepthMetric("services").Inc()

	want := `# HELP berth_services_pending LoadBalancer Services Berth handles that lack some or all of their addresses, by the reason of their AddressAllocated condition.
# TYPE berth_services_pending gauge
berth_services_pending{reason="NoMatchingPool"} 1
berth_services_pending{reason="PoolExhausted"} 2
# HELP berth_sync_errors_total Reconciles that failed and were queued again, by kind (service, pool).
# TYPE berth_sync_errors_total counter
berth_sync_errors_total{kind="pool"} 0
berth_sync_errors_total{kind="service"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "berth_services_pending", "berth_sync_errors_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.poolAddrs); n != 6 {
		t.Errorf("berth_pool_addresses has %d series, want 6 (p1's only: p2 was removed)", n)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}
