// Package metrics holds what Berth's processes share for their Prometheus
// metrics: a client-go work queue MetricsProvider that registers in the
// process's own registry (never client-go's global one). It must not hold
// metrics of one component: those live beside the code that moves them.
package metrics
