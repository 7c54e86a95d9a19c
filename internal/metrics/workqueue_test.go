package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/util/workqueue"
)

// TestWorkqueueProvider runs a real client-go queue on the provider and
// checks that its series move and pass the Prometheus linter.
func TestWorkqueueProvider(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := NewWorkqueueProvider(reg)
	q := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "things", MetricsProvider: p})
	defer q.ShutDown()
	q.Add("a")
	q.Add("b")
	if got := testutil.ToFloat64(p.depth.WithLabelValues("things")); got != 2 {
		t.Errorf("workqueue_depth{name=things} = %v, want 2", got)
	}
	k, _ := q.Get()
	q.AddRateLimited(k)
	q.Done(k)
	for name, want := range map[string]float64{"adds": 2, "retries": 1} {
		c := map[string]*prometheus.CounterVec{"adds": p.adds, "retries": p.retries}[name]
		if got := testutil.ToFloat64(c.WithLabelValues("things")); got != want {
			t.Errorf("workqueue %s{name=things} = %v, want %v", name, got, want)
		}
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		t.Errorf("lint: %s: %s", pr.Metric, pr.Text)
	}
	if n, err := testutil.GatherAndCount(reg, "workqueue_depth"); err != nil || n != 1 {
		t.Errorf("workqueue_depth series = %d, %v; want 1", n, err)
	}
}
