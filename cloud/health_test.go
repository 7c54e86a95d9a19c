package cloud

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/internal/serve"
)

// hangingBackend's Ensure hangs until release is closed, like a cloud API
// call without a deadline.
type hangingBackend struct {
	Backend
	release chan struct{}
}

func (b *hangingBackend) Ensure(context.Context, *v1.Service, []*v1.Node) (*v1.LoadBalancerStatus, error) {
	<-b.release
	return &v1.LoadBalancerStatus{}, nil
}

// TestHealthyFailsWhileBackendStuck calls EnsureLoadBalancer on a backend
// that hangs: berth-ccm's /healthz check fails once the call has run past
// the limit, and passes again once it returns.
func TestHealthyFailsWhileBackendStuck(t *testing.T) {
	b := &hangingBackend{release: make(chan struct{})}
	c := &Cloud{lb: &loadBalancers{backend: b, stall: serve.NewStall("load balancer", 100*time.Millisecond)}}
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}, Spec: v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer}}
	done := make(chan error)
	go func() {
		_, err := c.lb.EnsureLoadBalancer(t.Context(), "cluster", svc, nil)
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for err := c.Healthy(t.Context()); err == nil || !strings.Contains(err.Error(), "the load balancer loop is stuck"); err = c.Healthy(t.Context()) {
		if time.Now().After(deadline) {
			t.Fatalf("Healthy = %v with EnsureLoadBalancer hanging", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(b.release)
	if err := <-done; err != nil {
		t.Fatalf("EnsureLoadBalancer: %v", err)
	}
	if err := c.Healthy(t.Context()); err != nil {
		t.Errorf("after EnsureLoadBalancer returned: %v", err)
	}
}
