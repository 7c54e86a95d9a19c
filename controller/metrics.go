package controller

import (
	"math/big"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/util/workqueue"

	"github.com/berthlb/berth/allocator"
)

// Metrics are the controller's Prometheus metrics. They live in a registry
// the caller owns, never in the global one.
type Metrics struct {
	reg          prometheus.Registerer
	poolAddrs    *prometheus.GaugeVec
	allocations  prometheus.Counter
	failures     *prometheus.CounterVec
	statusWrites prometheus.Counter
	reconcile    *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: reg,
		poolAddrs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_pool_addresses",
			Help: "Addresses of an IPPool by family and state (total, used, free). Large IPv6 counts are rounded to float64; the pool's status has them exactly.",
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
	reg.MustRegister(m.poolAddrs, m.allocations, m.failures, m.statusWrites, m.reconcile)
	return m
}

func (m *Metrics) watchQueues(svc, pool workqueue.TypedRateLimitingInterface[string]) {
	for name, q := range map[string]workqueue.TypedRateLimitingInterface[string]{"services": svc, "pools": pool} {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "berth_workqueue_depth",
			Help:        "Items waiting in a work queue.",
			ConstLabels: prometheus.Labels{"queue": name},
		}, func() float64 { return float64(q.Len()) }))
	}
}

func (m *Metrics) observeReconcile(kind string, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
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
