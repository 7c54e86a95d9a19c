package controller

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/berthlb/berth/api/v1alpha1"
)

// TestClusterAddressesNeverHandedOut: a pool overlapping the cluster's
// Service range and a node's address hands out neither; a Service asking
// for one is refused with a reason it can act on; and a Service holding an
// address that a node takes later is moved with a Warning naming why.
func TestClusterAddressesNeverHandedOut(t *testing.T) {
	h := newHarness(t, testPool("lan", "198.51.100.0/29"))
	inf := informers.NewSharedInformerFactory(kubefake.NewClientset(), 0)
	nodeInf, cidrInf := inf.Core().V1().Nodes(), inf.Networking().V1().ServiceCIDRs()
	if err := h.c.WatchCluster(nodeInf, cidrInf); err != nil {
		t.Fatal(err)
	}
	nodes, cidrs := nodeInf.Informer().GetIndexer(), cidrInf.Informer().GetIndexer()
	add := func(store cache.Indexer, obj any) {
		t.Helper()
		if err := store.Add(obj); err != nil {
			t.Fatal(err)
		}
		h.c.poolQueue.Add(clusterKey)
		h.drain()
	}
	add(cidrs, &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"},
		Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"198.51.100.0/31"}}})
	add(nodes, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.51.100.2"}}}})
	h.start()

	h.create(service("a", ours))
	h.drain()
	h.expect("a", outcome{ingress: []string{"198.51.100.3"}, reason: v1alpha1.ReasonAllocated})

	h.create(service("wants-api", ours, withAnnotation(v1alpha1.AnnotationAddresses, "198.51.100.1")))
	h.drain()
	h.expect("wants-api", outcome{reason: v1alpha1.ReasonRequestedAddressUnavailable})
	if c := findCondition(h.get("wants-api")); !strings.Contains(c.Message, "is inside the cluster's Service range 198.51.100.0/31, which Berth never hands out") {
		t.Errorf("condition message %q does not say why", c.Message)
	}

	// A second node now has a's address: a moves, and is told why.
	add(nodes, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.51.100.3"}}}})
	h.expect("a", outcome{ingress: []string{"198.51.100.4"}, reason: v1alpha1.ReasonAllocated})
	msgs := h.rec.messages["a"]
	if len(msgs) == 0 || !strings.Contains(msgs[len(msgs)-1], "198.51.100.3 is a node's address now") || strings.Contains(msgs[len(msgs)-1], "n2") {
		t.Errorf("last Event of a = %q, want one saying 198.51.100.3 is a node's address (without naming the node)", msgs)
	}
	st := h.w.poolStatus["lan"]
	if st == nil {
		t.Fatal("no pool status written")
	}
	var overlap string
	for _, c := range st.Conditions {
		if *c.Type == v1alpha1.PoolConditionClusterOverlap {
			overlap = *c.Message
		}
	}
	for _, want := range []string{"Service range 198.51.100.0/31", "node addresses 198.51.100.2, 198.51.100.3"} {
		if !strings.Contains(overlap, want) {
			t.Errorf("ClusterOverlap message %q lacks %q", overlap, want)
		}
	}
	if r := h.rec.reasons["pool/lan"]; !slices.Contains(r, "ClusterAddresses") {
		t.Errorf("Events on pool lan = %q, want a ClusterAddresses Warning", r)
	}
}
