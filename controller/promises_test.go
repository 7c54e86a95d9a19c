package controller

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
)

// TestPromises checks the guarantees of docs/pools.md that only a sequence
// of changes (and restarts) can break: a freed address reaches the oldest
// Service waiting for it, a restart never moves a valid address, what is
// kept through an invalid edit survives a restart, and a Service that got
// less than it asked for never shows Allocated. Each step is followed by
// draining the queues; "restart" starts a new controller on the cache as
// the old one left it.
func TestPromises(t *testing.T) {
	const a1, a2, a3 = "192.0.2.1", "192.0.2.2", "192.0.2.3"
	const v6a, v6b = "2001:db8::1", "2001:db8::2"
	svc := func(name string, opts ...svcOpt) *corev1.Service {
		return service(name, append([]svcOpt{ours}, opts...)...)
	}
	add := func(s *corev1.Service) step { return func(h *harness) *harness { h.create(s); return h } }
	edit := func(name string, opts ...svcOpt) step {
		return func(h *harness) *harness { h.update(name, opts...); return h }
	}
	del := func(name string) step { return func(h *harness) *harness { h.remove(name, false); return h } }
	restart := func(h *harness) *harness { return h.restart() }
	reserve := func(addr v1alpha1.AddressRange) step {
		return func(h *harness) *harness {
			h.editPool("p", func(p *v1alpha1.BerthIPPool) { p.Spec.Reserved = append(p.Spec.Reserved, addr) })
			return h
		}
	}
	clusterIP := func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }
	requestAddr := func(a string) svcOpt { return withAnnotation(v1alpha1.AnnotationAddresses, a) }
	dual := func(s *corev1.Service) {
		p := corev1.IPFamilyPolicyPreferDualStack
		s.Spec.IPFamilyPolicy = &p
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	}
	v6 := func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} }

	tests := []struct {
		name  string
		pool  []v1alpha1.AddressRange
		steps []step
		// want is the ingress and condition reason of the named Services
		// at the end.
		want map[string]outcome
		// wantEvents, if set, are the reasons of the Events by Service.
		wantEvents map[string][]string
	}{
		{
			name:  "a Service waiting for a full pool gets the address its holder's deletion frees",
			pool:  []v1alpha1.AddressRange{a1},
			steps: []step{add(svc("a", age(1))), add(svc("b", age(2))), del("a")},
			want:  map[string]outcome{"b": {[]string{a1}, v1alpha1.ReasonAllocated}},
		},
		{
			name:  "and the address a holder changed to ClusterIP lets go",
			pool:  []v1alpha1.AddressRange{a1},
			steps: []step{add(svc("a", age(1))), add(svc("b", age(2))), edit("a", clusterIP)},
			want:  map[string]outcome{"a": {nil, ""}, "b": {[]string{a1}, v1alpha1.ReasonAllocated}},
		},
		{
			name:  "and the address a holder's class change lets go",
			pool:  []v1alpha1.AddressRange{a1},
			steps: []step{add(svc("a", age(1))), add(svc("b", age(2))), edit("a", withClass("other"))},
			want:  map[string]outcome{"a": {nil, ""}, "b": {[]string{a1}, v1alpha1.ReasonAllocated}},
		},
		{
			name: "a Service waiting for a requested address gets it when its holder goes",
			pool: []v1alpha1.AddressRange{"192.0.2.1-192.0.2.2"},
			steps: []step{add(svc("a", age(1))), add(svc("b", age(2), requestAddr(a1))),
				func(h *harness) *harness {
					h.expect("b", outcome{nil, v1alpha1.ReasonRequestedAddressUnavailable})
					return h
				}, del("a")},
			want: map[string]outcome{"b": {[]string{a1}, v1alpha1.ReasonAllocated}},
		},
		{
			name: "the oldest waiting Service gets a freed address, not the first queued",
			pool: []v1alpha1.AddressRange{a1},
			steps: []step{add(svc("a", age(1))), add(svc("young", age(3))), add(svc("old", age(2))),
				del("a")},
			want: map[string]outcome{
				"old":   {[]string{a1}, v1alpha1.ReasonAllocated},
				"young": {nil, v1alpha1.ReasonPoolExhausted},
			},
		},
		{
			name: "a waiting Service gets an address a pool edit frees",
			pool: []v1alpha1.AddressRange{a1},
			steps: []step{add(svc("a", age(1))), add(svc("b", age(2))), func(h *harness) *harness {
				h.editPool("p", func(p *v1alpha1.BerthIPPool) { p.Spec.Addresses = append(p.Spec.Addresses, a2) })
				return h
			}},
			want: map[string]outcome{"a": {[]string{a1}, v1alpha1.ReasonAllocated}, "b": {[]string{a2}, v1alpha1.ReasonAllocated}},
		},
		{
			name: "and the oldest waiting Service gets what a pool edit frees",
			pool: []v1alpha1.AddressRange{a1},
			steps: []step{add(svc("a", age(1))), add(svc("young", age(3))), add(svc("old", age(2))), func(h *harness) *harness {
				h.editPool("p", func(p *v1alpha1.BerthIPPool) { p.Spec.Addresses = append(p.Spec.Addresses, a2) })
				return h
			}},
			want: map[string]outcome{"old": {[]string{a2}, v1alpha1.ReasonAllocated}, "young": {nil, v1alpha1.ReasonPoolExhausted}},
		},
		{
			name: "a restart moves only the Service whose address became invalid, to a free address",
			pool: []v1alpha1.AddressRange{"192.0.2.1-192.0.2.3"},
			steps: []step{add(svc("old", age(1))), add(svc("young", age(2))),
				// Reserved while the controller is down: the new one
				// starts on a pool that already reserves it.
				func(h *harness) *harness {
					return h.restartWith(func(p *v1alpha1.BerthIPPool) { p.Spec.Reserved = []v1alpha1.AddressRange{a1} })
				}},
			want: map[string]outcome{
				"old":   {[]string{a3}, v1alpha1.ReasonAllocated},
				"young": {[]string{a2}, v1alpha1.ReasonAllocated},
			},
			wantEvents: map[string][]string{"old": {eventChanged}, "young": nil},
		},
		{
			name:  "a reservation while running moves only its holder too",
			pool:  []v1alpha1.AddressRange{"192.0.2.1-192.0.2.3"},
			steps: []step{add(svc("old", age(1))), add(svc("young", age(2))), reserve(a1)},
			want: map[string]outcome{
				"old":   {[]string{a3}, v1alpha1.ReasonAllocated},
				"young": {[]string{a2}, v1alpha1.ReasonAllocated},
			},
		},
		{
			name: "an address kept through an invalid annotation survives a restart",
			pool: []v1alpha1.AddressRange{"192.0.2.1-192.0.2.2"},
			steps: []step{add(svc("a", age(1))), edit("a", requestAddr("not-an-ip")),
				restart, add(svc("new", age(2)))},
			want: map[string]outcome{
				"a":   {[]string{a1}, v1alpha1.ReasonInvalidRequest},
				"new": {[]string{a2}, v1alpha1.ReasonAllocated},
			},
		},
		{
			name: "a PreferDualStack Service whose requested IPv6 address is held is not Allocated, then gets it",
			pool: []v1alpha1.AddressRange{a1, a2, v6a, v6b},
			steps: []step{add(svc("holder", age(1), v6, requestAddr(v6a))),
				add(svc("dual", age(2), dual, requestAddr(a2+","+v6a))),
				func(h *harness) *harness {
					h.expect("dual", outcome{[]string{a2}, v1alpha1.ReasonPartiallyAllocated})
					return h
				},
				del("holder")},
			want:       map[string]outcome{"dual": {[]string{a2, v6a}, v1alpha1.ReasonAllocated}},
			wantEvents: map[string][]string{"dual": {eventAllocated, eventPartial, eventAllocated}},
		},
		{
			name: "an invalid pool drains: its holder keeps its address, nobody gets a new one, also across a restart",
			pool: []v1alpha1.AddressRange{"192.0.2.1-192.0.2.2"},
			steps: []step{add(svc("a", age(1))),
				func(h *harness) *harness {
					h.editPool("p", func(p *v1alpha1.BerthIPPool) { p.Spec.Reserved = []v1alpha1.AddressRange{"198.51.100.1"} })
					return h
				},
				add(svc("b", age(2))), restart},
			want: map[string]outcome{
				"a": {[]string{a1}, v1alpha1.ReasonAllocated},
				"b": {nil, v1alpha1.ReasonNoMatchingPool},
			},
		},
		{
			name:  "a PreferDualStack Service whose pools have no IPv6 at all is Allocated with IPv4",
			pool:  []v1alpha1.AddressRange{a1},
			steps: []step{add(svc("dual", age(1), dual))},
			want:  map[string]outcome{"dual": {[]string{a1}, v1alpha1.ReasonAllocated}},
		},
		{
			name: "a PreferDualStack Service whose IPv6 pool is full waits for IPv6",
			pool: []v1alpha1.AddressRange{a1, a2, v6a},
			steps: []step{add(svc("v6", age(1), v6)), add(svc("dual", age(2), dual)),
				func(h *harness) *harness {
					h.expect("dual", outcome{[]string{a1}, v1alpha1.ReasonPartiallyAllocated})
					return h
				},
				del("v6")},
			want: map[string]outcome{"dual": {[]string{a1, v6a}, v1alpha1.ReasonAllocated}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			runSteps(t, testPool("p", tc.pool...), tc.steps, tc.want, tc.wantEvents)
		})
	}
}

// TestNamespaceArrivesLate: a Service judged before its Namespace reaches
// the cache waits for it rather than landing, for good, in a pool its
// namespace's labels would not have chosen.
func TestNamespaceArrivesLate(t *testing.T) {
	gold := testPool("gold", "198.51.100.1")
	gold.Spec.ServiceAllocation = &v1alpha1.ServiceAllocation{Priority: -10,
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "gold"}}}
	h := newHarness(t, testPool("p", "192.0.2.1"), gold)
	h.start()
	s := service("web", ours)
	s.Namespace = "late"
	h.create(s)
	h.drain()
	if got := h.ingressIn("late", "web"); len(got) != 0 {
		t.Fatalf("judged before its namespace was known: %v", got)
	}
	h.addNamespace("late", map[string]string{"tier": "gold"})
	h.drain()
	if diff := cmp.Diff([]string{"198.51.100.1"}, h.ingressIn("late", "web")); diff != "" {
		t.Errorf("ingress once the namespace arrived (-want +got):\n%s", diff)
	}
}

// TestReleaseWrittenBeforeHandedOn: a Service that stops being Berth's while
// the cache has not yet seen the address written on it gets that status
// taken back before the address is written on the Service waiting for it,
// so no two Services show it at once.
func TestReleaseWrittenBeforeHandedOn(t *testing.T) {
	h := newHarness(t, testPool("p", "192.0.2.1"))
	h.start()
	h.create(service("a", ours, age(1)))
	if err := h.c.syncService(h.ctx, "ns/a"); err != nil { // writes .1; the cache lags
		t.Fatal(err)
	}
	h.create(service("b", ours, age(2)))
	if err := h.c.syncService(h.ctx, "ns/b"); err != nil { // waits
		t.Fatal(err)
	}
	// a changes class before the cache shows the address written on it.
	h.update("a", withClass("other"))
	if err := h.c.syncService(h.ctx, "ns/a"); err != nil {
		t.Fatal(err)
	}
	// Another worker serves b, woken by the release, at once.
	if err := h.c.syncService(h.ctx, "ns/b"); err != nil {
		t.Fatal(err)
	}
	h.drain()
	cleared, gaveB := -1, -1
	for i, w := range h.w.log {
		switch w {
		case "a:":
			cleared = i
		case "b:192.0.2.1":
			gaveB = i
		}
	}
	if cleared < 0 || gaveB < 0 || cleared > gaveB {
		t.Errorf("status writes %v: want a's release (a:) written before b gets the address", h.w.log)
	}
	h.expect("b", outcome{[]string{"192.0.2.1"}, v1alpha1.ReasonAllocated})
}
