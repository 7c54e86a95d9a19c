package speaker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/berthlb/berth/internal/serve"
	"github.com/berthlb/berth/nodeport"
)

// blockingForwarder's Sync hangs until release is closed, like a netlink
// call that never returns.
type blockingForwarder struct {
	*failingForwarder
	release chan struct{}
}

func (f *blockingForwarder) Sync(ctx context.Context, rules []nodeport.Rule) error {
	<-f.release
	return f.failingForwarder.Sync(ctx, rules)
}

// TestHealthyFailsWhileSyncStuck runs the speaker's sync loop with a
// forwarding back end that hangs: /healthz's check fails once the sync
// has run for longer than the limit, and passes again once it returns.
func TestHealthyFailsWhileSyncStuck(t *testing.T) {
	e := newDegradeEnv(t)
	fwd := &blockingForwarder{failingForwarder: e.fwd, release: make(chan struct{})}
	e.s.fwd, e.s.bgp = fwd, nil
	e.s.stall = serve.NewStall("sync", 100*time.Millisecond)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- e.s.Run(ctx, time.Hour, time.Hour) }()
	defer func() {
		cancel()
		<-done
	}()
	if err := e.s.Healthy(ctx); err != nil {
		t.Fatalf("healthy at the start: %v", err)
	}
	waitFor(t, "the stuck sync to fail /healthz", func() bool {
		err := e.s.Healthy(ctx)
		return err != nil && strings.Contains(err.Error(), "the sync loop is stuck")
	})
	close(fwd.release)
	waitFor(t, "/healthz to pass once the sync returned", func() bool { return e.s.Healthy(ctx) == nil })
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
