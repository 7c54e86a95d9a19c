package cloud

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	cloudprovider "k8s.io/cloud-provider"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/internal/serve"
)

// addOnFieldManager is the field manager of berth-controller's status
// writes (controller.FieldManager; not imported, to keep the controller's
// dependencies out of the plugin).
const addOnFieldManager = "berth-controller"

// Backend is what serves load balancers behind the plugin. Every method
// must treat the Service and Nodes as read-only. The plugin has already
// refused Services it must not serve when a method is called.
type Backend interface {
	// Get reports what the backend holds for the Service; exists is false
	// when it holds nothing.
	Get(ctx context.Context, svc *v1.Service) (status *v1.LoadBalancerStatus, exists bool, err error)
	// Ensure gives the Service its load balancer, or keeps the one it has.
	Ensure(ctx context.Context, svc *v1.Service, nodes []*v1.Node) (*v1.LoadBalancerStatus, error)
	// Update follows a change of the node set.
	Update(ctx context.Context, svc *v1.Service, nodes []*v1.Node) error
	// Delete releases what the backend holds for the Service; releasing
	// nothing is not an error.
	Delete(ctx context.Context, svc *v1.Service) error
}

// loadBalancers adapts a Backend to cloudprovider.LoadBalancer and enforces
// the division of work with the add-on controller.
type loadBalancers struct {
	backend Backend
	// stall tells /healthz whether a backend call is stuck.
	stall *serve.Stall
}

// lbStallLimit is how long one backend call may run before berth-ccm's
// /healthz fails: the backends answer from their caches or return a
// retry error while a cloud resource is pending, so minutes mean a call
// is stuck.
const lbStallLimit = 5 * time.Minute

var _ cloudprovider.LoadBalancer = (*loadBalancers)(nil)

// GetLoadBalancer reports whether the backend holds anything for the
// Service. A Service the add-on controller serves does not exist for the
// plugin, whatever its status says.
func (l *loadBalancers) GetLoadBalancer(ctx context.Context, _ string, svc *v1.Service) (*v1.LoadBalancerStatus, bool, error) {
	if refusal(svc) != nil {
		return nil, false, nil
	}
	defer l.stall.Begin()()
	return l.backend.Get(ctx, svc)
}

// GetLoadBalancerName is upstream's default, "a" and the UID without
// dashes, at most 32 characters: stable for the Service's lifetime.
func (l *loadBalancers) GetLoadBalancerName(_ context.Context, _ string, svc *v1.Service) string {
	return cloudprovider.DefaultLoadBalancerName(svc)
}

// EnsureLoadBalancer returns the Service's addresses, allocating them if
// needed. The error of a request that cannot be served says why; the
// service controller turns it into an Event on the Service.
func (l *loadBalancers) EnsureLoadBalancer(ctx context.Context, _ string, svc *v1.Service, nodes []*v1.Node) (*v1.LoadBalancerStatus, error) {
	if err := refusal(svc); err != nil {
		return nil, err
	}
	defer l.stall.Begin()()
	return l.backend.Ensure(ctx, svc, nodes)
}

// UpdateLoadBalancer passes a node change on to the backend.
func (l *loadBalancers) UpdateLoadBalancer(ctx context.Context, _ string, svc *v1.Service, nodes []*v1.Node) error {
	if refusal(svc) != nil {
		return nil
	}
	defer l.stall.Begin()()
	return l.backend.Update(ctx, svc, nodes)
}

// EnsureLoadBalancerDeleted releases what the plugin holds for the
// Service, and nothing else: addresses the add-on controller gave are
// recorded under another identity and survive.
func (l *loadBalancers) EnsureLoadBalancerDeleted(ctx context.Context, _ string, svc *v1.Service) error {
	defer l.stall.Begin()()
	return l.backend.Delete(ctx, svc)
}

// ConflictError is returned for a Service the plugin must not serve.
type ConflictError struct{ Msg string }

func (e *ConflictError) Error() string { return e.Msg }

// refusal returns a *ConflictError when the plugin must not serve the
// Service: it has a loadBalancerClass (the service controller never passes
// one, but a Service is only ever served by one implementation), or the
// add-on controller has already claimed it by writing its condition.
func refusal(svc *v1.Service) error {
	if c := svc.Spec.LoadBalancerClass; c != nil {
		return &ConflictError{Msg: fmt.Sprintf("berth-ccm serves only Services without spec.loadBalancerClass; this one has %q", *c)}
	}
	if addOnManaged(svc) {
		return &ConflictError{Msg: fmt.Sprintf(
			"Service is managed by the add-on controller (%s condition %s in its status); "+
				"run berth-controller with --handle-unclassed=false so that it releases the Service, "+
				"then berth-ccm takes it over", addOnFieldManager, v1alpha1.ServiceConditionAddressAllocated)}
	}
	return nil
}

// addOnManaged reports whether berth-controller has written its condition
// on the Service. When managedFields are present they must name
// berth-controller as a status writer; when they were stripped, the
// condition alone decides, since only Berth uses that condition type.
func addOnManaged(svc *v1.Service) bool {
	found := false
	for _, c := range svc.Status.Conditions {
		found = found || c.Type == v1alpha1.ServiceConditionAddressAllocated
	}
	if !found {
		return false
	}
	if len(svc.ManagedFields) == 0 {
		return true
	}
	for _, mf := range svc.ManagedFields {
		if mf.Manager == addOnFieldManager && mf.Subresource == "status" {
			return true
		}
	}
	return false
}
