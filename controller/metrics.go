package controller

import (
	"math/big"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/internal/metrics"
)

// Metrics are the controller's Prometheus metrics. They live in a registry
// the caller owns, never in the global one.
type Metrics struct {
	queues       *metrics.WorkqueueProvider
	pending      *pendingCollector
	syncErrors   *prometheus.CounterVec
	poolAddrs    *prometheus.GaugeVec
	allocations  prometheus.Counter
	failures     *prometheus.CounterVec
	statusWrites prometheus.Counter
	reconcile    *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		queues: metrics.NewWorkqueueProvider(reg),
		pending: &pendingCollector{desc: prometheus.NewDesc("berth_services_pending",
			"LoadBalancer Services Berth handles that lack some or all of their addresses, by the reason of their AddressAllocated condition.",
			[]string{"reason"}, nil)},
		syncErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_sync_errors_total",
			Help: "Reconciles that failed and were queued again, by kind (service, pool).",
		}, []string{"kind"}),
		poolAddrs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_pool_addresses",
			Help: "Addresses of a BerthIPPool by family and state (total, used, free). Large IPv6 counts are rounded to float64; the pool's status has them exactly.",
		}, []string{"pool", "family", "state"}),
		allocations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_allocations_total",
			Help: "Addresses handed out to Services.",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_allocation_failures_total",
			Help: "Service reconciles that ended without addresses, by condition reason.",
		}, []string{"reason"}),
		statusWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_service_status_writes_total",
			Help: "Writes of Service status made by the controller.",
		}),
		reconcile: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_reconcile_duration_seconds",
			Help:    "Time to reconcile one object, by kind and result.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"kind", "result"}),
	}
	for _, kind := range []string{"service", "pool"} {
		m.syncErrors.WithLabelValues(kind) // present at 0, so that rate() sees the first error
	}
	reg.MustRegister(m.pending, m.syncErrors, m.poolAddrs, m.allocations, m.failures, m.statusWrites, m.reconcile)
	return m
}

func (m *Metrics) observeReconcile(kind string, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
		m.syncErrors.WithLabelValues(kind).Inc()
	}
	m.reconcile.WithLabelValues(kind, result).Observe(d.Seconds())
}

func (m *Metrics) setPool(name string, st allocator.PoolStats) {
	for fam, f := range map[string]allocator.FamilyStats{"IPv4": st.IPv4, "IPv6": st.IPv6} {
		for state, v := range map[string]*big.Int{"total": f.Total, "used": f.Used, "free": f.Free} {
			val := 0.0
			if v != nil {
				val, _ = new(big.Float).SetInt(v).Float64()
			}
			m.poolAddrs.WithLabelValues(name, fam, state).Set(val)
		}
	}
}

func (m *Metrics) forgetPool(name string) {
	m.poolAddrs.DeletePartialMatch(prometheus.Labels{"pool": name})
}

// pendingCollector counts, at scrape time, the Services in the
// controller's cache whose AddressAllocated condition is False: a gauge
// that needs no bookkeeping on every reconcile and cannot drift from the
// Services' status.
type pendingCollector struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	svcs corelisters.ServiceLister // nil until the controller starts
}

func (p *pendingCollector) watch(l corelisters.ServiceLister) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.svcs = l
}

// Describe implements prometheus.Collector.
func (p *pendingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- p.desc }

// Collect implements prometheus.Collector.
func (p *pendingCollector) Collect(ch chan<- prometheus.Metric) {
	p.mu.Lock()
	l := p.svcs
	p.mu.Unlock()
	if l == nil {
		return
	}
	svcs, err := l.List(labels.Everything())
	if err != nil {
		return
	}
	byReason := map[string]int{}
	for _, svc := range svcs {
		c := meta.FindStatusCondition(svc.Status.Conditions, v1alpha1.ServiceConditionAddressAllocated)
		if c != nil && c.Status == "False" {
			byReason[c.Reason]++
		}
	}
	for reason, n := range byReason {
		ch <- prometheus.MustNewConstMetric(p.desc, prometheus.GaugeValue, float64(n), reason)
	}
}
