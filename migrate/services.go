package migrate

import (
	"errors"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/config"
)

// checkServices is the pre-flight of a takeover: for every LoadBalancer
// Service given to the converter (from files or the cluster), it reports
// each address of its status that no converted pool contains, which Berth
// would replace by a new one, and a request Berth cannot read (two
// annotations that disagree), which keeps its address but shows
// InvalidRequest until it is fixed.
func (c *converter) checkServices(objs []*unstructured.Unstructured) {
	cfg := config.For(c.res.Pools)
	for _, o := range objs {
		if o.GetAPIVersion() != "v1" || o.GetKind() != "Service" {
			continue
		}
		var svc corev1.Service
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &svc); err != nil {
			c.lost(source(o), "", "cannot be read: %v", err)
			continue
		}
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.LoadBalancerClass != nil {
			// A Service with a class is another implementation's (MetalLB
			// too serves only unclassed Services unless told otherwise).
			continue
		}
		src := source(o)
		for _, a := range config.CurrentAddresses(&svc) {
			if _, ok := cfg.PoolFor(a); !ok {
				c.lost(src, "status.loadBalancer.ingress", "holds %s, which no converted pool contains: Berth would give the Service a new address; add %s to a pool before berth-controller starts", a, a)
			}
		}
		_, err := cfg.Request(&svc, nil)
		var re *config.RequestError
		if errors.As(err, &re) && re.Reason == v1alpha1.ReasonInvalidRequest {
			c.changed(src, "metadata.annotations", "Berth will report InvalidRequest (keeping the address it holds): %s", re.Msg)
		}
	}
}
