package controlplane

import (
	"context"
	"testing"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
)

// StartForTest starts a control plane for tb and stops it when tb's cleanup
// runs. It fails tb (it does not skip) if the binaries cannot be built or the
// control plane does not start: a test that needs the real API server must
// not pass without one. When tb has failed, the last lines of both logs are
// logged before the data directory is removed.
//
// Building the binaries the first time is bounded by the test's deadline,
// less a minute, so that a cold build that would outlast -timeout fails with
// a hint instead of a panic.
func StartForTest(tb testing.TB, opts Options) *ControlPlane {
	tb.Helper()
	ctx := klog.NewContext(tb.Context(), ktesting.NewLogger(tb, ktesting.NewConfig()))
	if d, ok := tb.(interface{ Deadline() (time.Time, bool) }); ok {
		if deadline, ok := d.Deadline(); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, deadline.Add(-time.Minute))
			defer cancel()
		}
	}
	cp, err := Start(ctx, opts)
	if err != nil {
		tb.Fatalf("start control plane: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("control plane logs:\n%s", cp.logTails(40))
		}
		if err := cp.Stop(); err != nil {
			tb.Errorf("stop control plane: %v", err)
		}
	})
	return cp
}
