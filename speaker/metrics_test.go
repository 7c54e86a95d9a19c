package speaker

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestObserveForwarding checks the forwarding failure metrics the chart's
// BerthForwardingFailing alert reads: the gauge follows the last attempt,
// the counter counts every failure.
func TestObserveForwarding(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	steps := []struct {
		err                error
		failing, errsTotal float64
	}{
		{nil, 0, 0},
		{errors.New("netlink: operation not permitted"), 1, 1},
		{errors.New("netlink: operation not permitted"), 1, 2},
		{nil, 0, 2},
	}
	for i, s := range steps {
		m.observeForwarding(s.err)
		if got := testutil.ToFloat64(m.fwdFailing); got != s.failing {
			t.Errorf("step %d: berth_speaker_forwarding_failing = %v, want %v", i, got, s.failing)
		}
		if got := testutil.ToFloat64(m.fwdErrors); got != s.errsTotal {
			t.Errorf("step %d: berth_speaker_forwarding_errors_total = %v, want %v", i, got, s.errsTotal)
		}
	}
}
