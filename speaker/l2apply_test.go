package speaker

import (
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/l2"
)

func TestDecideL2(t *testing.T) {
	a1, a2, a3 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::3")
	set := func(as ...netip.Addr) map[netip.Addr]bool {
		m := map[netip.Addr]bool{}
		for _, a := range as {
			m[a] = true
		}
		return m
	}
	node := func(name string) *corev1.Node { return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}} }
	plan := &Plan{
		L2: []L2Address{
			{Addr: a1, Service: "demo/a", Owner: "n1", Interfaces: []string{"eth0"}},
			{Addr: a2, Service: "demo/b", Owner: "n2"},
			{Addr: a3, Service: "demo/c", Owner: "n1"},
		},
		L2Owned: []netip.Addr{a1, a3},
	}
	for _, tc := range []struct {
		name    string
		want    map[netip.Addr]bool
		owned   map[netip.Addr]bool
		applied uint64
		lease   uint64
		known   []string
		members []string
		nodes   []*corev1.Node
		step    l2Step
	}{{
		name: "gains, a handover kept quiet, same lease",
		want: set(a1, a2, a3), owned: set(a2), applied: 4, lease: 4,
		step: l2Step{
			owns: map[netip.Addr]l2.Ownership{
				a1: {Interfaces: []string{"eth0"}}, a2: {Quiet: true}, a3: {},
			},
			gained: []l2Gain{{a1, "demo/a"}, {a3, "demo/c"}},
		},
	}, {
		name: "a new lease narrows to what was owned first",
		want: set(a1, a3), owned: set(a3, a2), applied: 4, lease: 5,
		step: l2Step{
			owns:   map[netip.Addr]l2.Ownership{a1: {Interfaces: []string{"eth0"}}, a3: {}},
			keep:   map[netip.Addr]l2.Ownership{a3: {}},
			gained: []l2Gain{{a1, "demo/a"}},
			lost:   []netip.Addr{a2},
		},
	}, {
		name: "everything lost; a deleted node that is no member is forgotten",
		want: set(), owned: set(a3, a1), applied: 2, lease: 2,
		known: []string{"n1", "n2", "n3", "n4"}, members: []string{"n1", "n3"},
		nodes: []*corev1.Node{node("n1"), node("n2")},
		step: l2Step{
			owns: map[netip.Addr]l2.Ownership{},
			lost: []netip.Addr{a1, a3},
			gone: []string{"n4"},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			snap := Snapshot{L2: L2View{Lease: tc.lease, Members: tc.members}, Nodes: tc.nodes}
			got := decideL2(tc.want, tc.owned, plan, tc.applied, tc.known, snap)
			if !reflect.DeepEqual(got, tc.step) {
				t.Errorf("decideL2:\n got %+v\nwant %+v", got, tc.step)
			}
		})
	}
}
