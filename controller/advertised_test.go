package controller

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/berthlb/berth/api/v1alpha1"
	berthlisters "github.com/berthlb/berth/client/listers/api/v1alpha1"
)

// TestAdvertisedCondition checks the Service's Advertised condition: True
// naming the advertisements that apply to its address, False naming the
// pool none selects, and written again (only) when an advertisement
// starts to apply.
func TestAdvertisedCondition(t *testing.T) {
	h := newHarness(t, testPool("lit", "198.51.100.0/28"), testPool("dark", "203.0.113.0/28"))
	bgp := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	l2 := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	h.c.advs = &advertisements{bgp: berthlisters.NewBerthBGPAdvertisementLister(bgp), l2: berthlisters.NewBerthL2AdvertisementLister(l2)}
	sel := func(pool string) v1alpha1.AdvertisementSelector {
		return v1alpha1.AdvertisementSelector{IPPools: []string{pool}}
	}
	if err := bgp.Add(&v1alpha1.BerthBGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "tor"}, Spec: v1alpha1.BerthBGPAdvertisementSpec{AdvertisementSelector: sel("lit")}}); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.create(service("a", ours, withAnnotation(v1alpha1.AnnotationPool, "lit")))
	h.create(service("b", ours, withAnnotation(v1alpha1.AnnotationPool, "dark")))
	h.drain()
	check := func(name string, status metav1.ConditionStatus, text string) {
		t.Helper()
		c := meta.FindStatusCondition(h.get(name).Status.Conditions, v1alpha1.ServiceConditionAdvertised)
		if c == nil || c.Status != status || !strings.Contains(c.Message, text) {
			t.Errorf("%s: Advertised condition %+v, want %s naming %q", name, c, status, text)
		}
	}
	check("a", metav1.ConditionTrue, "198.51.100.0: BerthBGPAdvertisement tor")
	check("b", metav1.ConditionFalse, "203.0.113.0: no BerthBGPAdvertisement or BerthL2Advertisement selects pool dark")
	writes := h.w.writes["b"]

	if err := l2.Add(&v1alpha1.BerthL2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1alpha1.BerthL2AdvertisementSpec{AdvertisementSelector: sel("dark")}}); err != nil {
		t.Fatal(err)
	}
	h.c.enqueueHandled()
	h.drain()
	check("b", metav1.ConditionTrue, "203.0.113.0: BerthL2Advertisement lan")
	if h.w.writes["b"] != writes+1 {
		t.Errorf("b written %d times for the new advertisement, want once", h.w.writes["b"]-writes)
	}
	writes = h.w.writes["a"]
	h.c.enqueueHandled()
	h.drain()
	if h.w.writes["a"] != writes {
		t.Errorf("a written again although nothing changed")
	}
}

// TestPeerSessions checks the BerthBGPPeers' session counts, summed over the
// nodes' BerthNodeStatuses, and that unchanged counts are not written.
func TestPeerSessions(t *testing.T) {
	h := newHarness(t)
	peers := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	nodes := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	h.c.advs = &advertisements{peers: berthlisters.NewBerthBGPPeerLister(peers)}
	h.c.nodeStatuses = berthlisters.NewBerthNodeStatusLister(nodes)
	for _, obj := range []any{
		&v1alpha1.BerthBGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor"}},
		&v1alpha1.BerthBGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "quiet"}, Status: v1alpha1.BerthBGPPeerStatus{Sessions: 0}},
		&v1alpha1.BerthBGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "stale"}, Status: v1alpha1.BerthBGPPeerStatus{Sessions: 3, SessionsEstablished: 3}},
	} {
		if err := peers.Add(obj); err != nil {
			t.Fatal(err)
		}
	}
	session := func(peer, state string) v1alpha1.BerthBGPSession {
		return v1alpha1.BerthBGPSession{Peer: peer, State: state}
	}
	for name, sess := range map[string][]v1alpha1.BerthBGPSession{
		"n1": {session("tor", "Established")},
		"n2": {session("tor", "Active")},
		"n3": {session("tor", "Established"), session("gone", "Established")},
	} {
		if err := nodes.Add(&v1alpha1.BerthNodeStatus{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: v1alpha1.BerthNodeStatusStatus{Sessions: sess}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.c.syncPeerSessions(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := map[string][2]int32{}
	for name, st := range h.w.peerStatus {
		got[name] = [2]int32{*st.SessionsEstablished, *st.Sessions}
	}
	want := map[string][2]int32{"tor": {2, 3}, "stale": {0, 0}}
	if len(got) != len(want) || got["tor"] != want["tor"] || got["stale"] != want["stale"] {
		t.Errorf("peer statuses written (up, total) %v, want %v (quiet unchanged, not written)", got, want)
	}
}
