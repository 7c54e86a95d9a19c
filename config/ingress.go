package config

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
)

// Ingress is what a Service's status.loadBalancer.ingress says for the
// addresses it holds: one entry per address, in order, each with the ipMode
// of the pool it came from (VIP unless the pool says Proxy). berth-controller
// and berth-ccm's pools backend both write exactly this.
func (c *Config) Ingress(got []allocator.Assignment) []corev1.LoadBalancerIngress {
	out := make([]corev1.LoadBalancerIngress, 0, len(got))
	for _, a := range got {
		mode := corev1.LoadBalancerIPModeVIP
		if p, ok := c.Pool(a.Pool); ok && p.IPMode == v1alpha1.IPModeProxy {
			mode = corev1.LoadBalancerIPModeProxy
		}
		out = append(out, corev1.LoadBalancerIngress{IP: a.Addr.String(), IPMode: &mode})
	}
	return out
}
