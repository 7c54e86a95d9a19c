package speaker

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/bgp"
)

// TestAdvertisementNamespaces: a Service's label alone cannot opt it into
// an advertisement (an internet-facing one) whose namespaces do not
// include the Service's; within them, the label selects as before.
func TestAdvertisementNamespaces(t *testing.T) {
	internet := adv("internet", func(s *v1alpha1.BerthBGPAdvertisementSpec) {
		s.Peers = []string{"edge"}
		s.ServiceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"exposure": "internet"}}
		s.Namespaces = []string{"public"}
	})
	labelled := func(ns string) func(*corev1.Service) {
		return func(s *corev1.Service) { s.Namespace = ns; s.Labels["exposure"] = "internet" }
	}
	snap := Snapshot{
		Node:  node(),
		Pools: []*v1alpha1.BerthIPPool{pool("lan", "198.51.100.0/24")},
		Peers: []*v1alpha1.BerthBGPPeer{peer("edge", "198.18.1.1")},
		Services: []*corev1.Service{
			lbService("web", []string{"198.51.100.1"}, labelled("public")),
			lbService("sneaky", []string{"198.51.100.2"}, labelled("tenant-b")),
			lbService("unlabelled", []string{"198.51.100.3"}, func(s *corev1.Service) { s.Namespace = "public" }),
		},
		BGPAdvs: []*v1alpha1.BerthBGPAdvertisement{internet},
	}
	got := Compute(snap).Routes["edge"]
	want := []bgp.Advertisement{{Prefix: host("198.51.100.1")}}
	if !slices.EqualFunc(got, want, func(a, b bgp.Advertisement) bool { return a.Prefix == b.Prefix }) {
		t.Errorf("routes to edge = %v, want only %v: the label must not opt tenant-b in", got, want)
	}
	// Without namespaces, the label alone decides (the old behaviour).
	internet.Spec.Namespaces = nil
	if got := Compute(snap).Routes["edge"]; len(got) != 2 {
		t.Errorf("routes without namespaces = %v, want web and sneaky", got)
	}
	// Layer 2 is decided by the same rule.
	l2 := &v1alpha1.BerthL2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "l2"}}
	l2.Spec.Namespaces = []string{"public"}
	snap.BGPAdvs, snap.L2Advs, snap.Nodes = nil, []*v1alpha1.BerthL2Advertisement{l2}, []*corev1.Node{node()}
	if l2Addrs := computeL2Addrs(snap); !slices.Equal(l2Addrs, []string{"198.51.100.1", "198.51.100.3"}) {
		t.Errorf("layer-2 addresses = %v, want those of namespace public only", l2Addrs)
	}
}

// TestAdvertisementNamespaceSelector: an advertisement with a
// namespaceSelector admits Services of namespaces whose labels match it
// (the operator labels namespaces; tenants cannot); a namespace the
// speaker does not know, or an invalid selector, admits nothing; BGP and
// layer 2 decide alike.
func TestAdvertisementNamespaceSelector(t *testing.T) {
	internet := adv("internet", func(s *v1alpha1.BerthBGPAdvertisementSpec) {
		s.Peers = []string{"edge"}
		s.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"exposure": "internet"}}
	})
	inNS := func(ns string) func(*corev1.Service) { return func(s *corev1.Service) { s.Namespace = ns } }
	snap := Snapshot{
		Node:  node(),
		Pools: []*v1alpha1.BerthIPPool{pool("lan", "198.51.100.0/24")},
		Peers: []*v1alpha1.BerthBGPPeer{peer("edge", "198.18.1.1")},
		Services: []*corev1.Service{
			lbService("web", []string{"198.51.100.1"}, inNS("public")),
			lbService("internal", []string{"198.51.100.2"}, inNS("tenant-b")),
			lbService("unknown", []string{"198.51.100.3"}, inNS("not-cached-yet")),
		},
		BGPAdvs: []*v1alpha1.BerthBGPAdvertisement{internet},
		Namespaces: map[string]labels.Set{
			"public":   {"kubernetes.io/metadata.name": "public", "exposure": "internet"},
			"tenant-b": {"kubernetes.io/metadata.name": "tenant-b"},
		},
	}
	prefixes := func() []string {
		var out []string
		for _, a := range Compute(snap).Routes["edge"] {
			out = append(out, a.Prefix.String())
		}
		return out
	}
	if got := prefixes(); !slices.Equal(got, []string{"198.51.100.1/32"}) {
		t.Errorf("routes to edge = %v, want only public's", got)
	}
	// Both namespaces and namespaceSelector must admit the Service.
	internet.Spec.Namespaces = []string{"tenant-b"}
	if got := prefixes(); len(got) != 0 {
		t.Errorf("routes with namespaces [tenant-b] and the selector = %v, want none", got)
	}
	internet.Spec.Namespaces = nil
	// An invalid selector admits nothing.
	internet.Spec.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "exposure", Operator: "Bogus"}}}
	if got := prefixes(); len(got) != 0 {
		t.Errorf("routes with an invalid selector = %v, want none", got)
	}
	// Layer 2 is decided by the same rule.
	l2 := &v1alpha1.BerthL2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "l2"}}
	l2.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"exposure": "internet"}}
	snap.BGPAdvs, snap.L2Advs, snap.Nodes = nil, []*v1alpha1.BerthL2Advertisement{l2}, []*corev1.Node{node()}
	if l2Addrs := computeL2Addrs(snap); !slices.Equal(l2Addrs, []string{"198.51.100.1"}) {
		t.Errorf("layer-2 addresses = %v, want public's only", l2Addrs)
	}
}

// computeL2Addrs lists the addresses the layer-2 plan announces.
func computeL2Addrs(s Snapshot) []string {
	all, _, _ := computeL2(s)
	out := make([]string, 0, len(all))
	for _, a := range all {
		out = append(out, a.Addr.String())
	}
	return out
}
