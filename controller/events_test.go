package controller

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/api/v1alpha1"
)

// TestAllocationFailedEvents checks docs/pools.md's AllocationFailed
// Event: recorded when a Service without addresses cannot be served and
// when an invalid request keeps the addresses a Service has, each time
// the condition is rewritten, and not again while nothing changes.
func TestAllocationFailedEvents(t *testing.T) {
	const a1, a2 = "192.0.2.1", "192.0.2.2"
	svc := func(name string, opts ...svcOpt) *corev1.Service {
		return service(name, append([]svcOpt{ours}, opts...)...)
	}
	poke := func(name, v string) step {
		return func(h *harness) *harness { h.update(name, withAnnotation("e2e/poke", v)); return h }
	}
	tests := []struct {
		name       string
		pool       []v1alpha1.AddressRange
		steps      []step
		want       map[string]outcome
		wantEvents map[string][]string
	}{
		{
			name: "a Service the full pool cannot serve, once however often it is looked at",
			pool: []v1alpha1.AddressRange{a1},
			steps: []step{
				func(h *harness) *harness { h.create(svc("a", age(1))); return h },
				func(h *harness) *harness { h.create(svc("b", age(2))); return h },
				poke("b", "1"), poke("b", "2"),
			},
			want:       map[string]outcome{"b": {nil, v1alpha1.ReasonPoolExhausted}},
			wantEvents: map[string][]string{"b": {eventAllocateFailed}},
		},
		{
			name: "an invalid request keeps the address, with the Event; another message, another Event",
			pool: []v1alpha1.AddressRange{a1, a2},
			steps: []step{
				func(h *harness) *harness { h.create(svc("a", age(1))); return h },
				func(h *harness) *harness {
					h.update("a", withAnnotation(v1alpha1.AnnotationAddresses, "not-an-ip"))
					return h
				},
				poke("a", "1"),
				func(h *harness) *harness {
					h.update("a", withAnnotation(v1alpha1.AnnotationAddresses, "also-not-an-ip"))
					return h
				},
			},
			want:       map[string]outcome{"a": {[]string{a1}, v1alpha1.ReasonInvalidRequest}},
			wantEvents: map[string][]string{"a": {"AddressAllocated", eventAllocateFailed, eventAllocateFailed}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			runSteps(t, testPool("p", tc.pool...), tc.steps, tc.want, tc.wantEvents)
		})
	}
}

// TestIPModeEdit checks that editing a pool's ipMode moves nothing and is
// rewritten into the status of the Services holding its addresses.
func TestIPModeEdit(t *testing.T) {
	h := newHarness(t, testPool("p", "192.0.2.1-192.0.2.2"))
	h.start()
	h.create(service("a", ours))
	h.create(service("b", ours))
	h.drain()
	before := slices.Concat(h.ingress("a"), h.ingress("b"))
	mode := func(name string) []corev1.LoadBalancerIPMode {
		var out []corev1.LoadBalancerIPMode
		for _, ing := range h.get(name).Status.LoadBalancer.Ingress {
			if ing.IPMode == nil {
				out = append(out, "")
				continue
			}
			out = append(out, *ing.IPMode)
		}
		return out
	}
	for _, m := range []v1alpha1.IPMode{v1alpha1.IPModeProxy, v1alpha1.IPModeVIP} {
		h.editPool("p", func(p *v1alpha1.BerthIPPool) { p.Spec.IPMode = m })
		h.drain()
		want := corev1.LoadBalancerIPMode(m)
		for _, name := range []string{"a", "b"} {
			if got := mode(name); !slices.Equal(got, []corev1.LoadBalancerIPMode{want}) {
				t.Errorf("after ipMode %s: %s shows ipMode %v", m, name, got)
			}
		}
		if after := slices.Concat(h.ingress("a"), h.ingress("b")); !slices.Equal(after, before) {
			t.Errorf("after ipMode %s: addresses %v, were %v", m, after, before)
		}
	}
}
