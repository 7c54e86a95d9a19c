package lbclass

import (
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Class is the spec.loadBalancerClass berth-ccm serves; the empty Class
// means the Services without one, the upstream default.
type Class string

// Parse validates a --load-balancer-class value: empty, or a qualified
// name as the API server requires of spec.loadBalancerClass.
func Parse(s string) (Class, error) {
	if s == "" {
		return "", nil
	}
	if errs := validation.IsQualifiedName(s); len(errs) > 0 {
		return "", fmt.Errorf("load balancer class %q: %s", s, strings.Join(errs, "; "))
	}
	return Class(s), nil
}

// Of reports whether the Service carries c: its spec.loadBalancerClass
// equals c, or is unset when c is empty.
func (c Class) Of(svc *v1.Service) bool {
	if svc.Spec.LoadBalancerClass == nil {
		return c == ""
	}
	return string(c) == *svc.Spec.LoadBalancerClass
}

// Serves reports whether berth-ccm gives the Service a load balancer: a
// LoadBalancer Service of class c.
func (c Class) Serves(svc *v1.Service) bool {
	return svc.Spec.Type == v1.ServiceTypeLoadBalancer && c.Of(svc)
}
