package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/berthlb/berth/internal/serve"
)

// hangingWriter's Service status writes hang until release is closed,
// like a request to an API server that never answers.
type hangingWriter struct {
	writer
	release chan struct{}
}

func (w *hangingWriter) applyServiceStatus(ctx context.Context, svc *corev1ac.ServiceApplyConfiguration) error {
	<-w.release
	return w.writer.applyServiceStatus(ctx, svc)
}

// TestHealthyFailsWhileReconcileStuck reconciles a Service whose status
// write hangs: /healthz's check fails once the reconcile has run past the
// limit, and passes again once it returns.
func TestHealthyFailsWhileReconcileStuck(t *testing.T) {
	h := newHarness(t, testPool("p", "192.0.2.0/28"))
	h.start()
	w := &hangingWriter{writer: h.c.writer, release: make(chan struct{})}
	h.c.writer = w
	h.c.stall = serve.NewStall("reconcile", 100*time.Millisecond)
	h.create(service("web", ours))
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.c.processNext(h.ctx, h.c.svcQueue, h.c.syncService, "service")
	}()
	deadline := time.Now().Add(10 * time.Second)
	for err := h.c.stall.Check(); err == nil || !strings.Contains(err.Error(), "the reconcile loop is stuck"); err = h.c.stall.Check() {
		if time.Now().After(deadline) {
			t.Fatalf("/healthz's check still %v with the reconcile hanging", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(w.release)
	<-done
	if err := h.c.stall.Check(); err != nil {
		t.Errorf("after the reconcile returned: %v", err)
	}
}
