package speaker

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ipNode(name string, ips ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, ip := range ips {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	return n
}

func TestNextDrains(t *testing.T) {
	now := time.Unix(1000, 0)
	a4, a6 := netip.MustParseAddr("198.51.100.5"), netip.MustParseAddr("2001:db8::5")
	nodes := []*corev1.Node{
		ipNode("self", "198.18.0.1", "2001:db8:1::1"),
		ipNode("old", "198.18.0.2", "2001:db8:1::2"),
		ipNode("v4only", "198.18.0.3"),
	}
	all := []string{"self", "old", "v4only"}
	const window = 30 * time.Second
	tests := []struct {
		name     string
		cur      map[netip.Addr]drain
		prev     map[netip.Addr]string
		owned    []netip.Addr
		members  []string
		want     map[netip.Addr]drain
		wantNext time.Duration
	}{
		{
			name:    "planned move: both families drain to the old owner",
			prev:    map[netip.Addr]string{a4: "old", a6: "old"},
			owned:   []netip.Addr{a4, a6},
			members: all,
			want: map[netip.Addr]drain{
				a4: {node: "old", via: netip.MustParseAddr("198.18.0.2"), until: now.Add(window)},
				a6: {node: "old", via: netip.MustParseAddr("2001:db8:1::2"), until: now.Add(window)},
			},
			wantNext: window,
		},
		{
			name:    "unplanned: the old owner is not a live member",
			prev:    map[netip.Addr]string{a4: "old"},
			owned:   []netip.Addr{a4},
			members: []string{"self", "v4only"},
			want:    map[netip.Addr]drain{},
		},
		{
			name:     "the old owner has no InternalIP of the family",
			prev:     map[netip.Addr]string{a4: "v4only", a6: "v4only"},
			owned:    []netip.Addr{a4, a6},
			members:  all,
			want:     map[netip.Addr]drain{a4: {node: "v4only", via: netip.MustParseAddr("198.18.0.3"), until: now.Add(window)}},
			wantNext: window,
		},
		{
			name:    "a new address, or one this node already owned, does not drain",
			prev:    map[netip.Addr]string{a4: "self"},
			owned:   []netip.Addr{a4, a6},
			members: all,
			want:    map[netip.Addr]drain{},
		},
		{
			name:     "a drain keeps its end while the address stays",
			cur:      map[netip.Addr]drain{a4: {node: "old", via: netip.MustParseAddr("198.18.0.2"), until: now.Add(time.Second)}},
			prev:     map[netip.Addr]string{a4: "self"},
			owned:    []netip.Addr{a4},
			members:  all,
			want:     map[netip.Addr]drain{a4: {node: "old", via: netip.MustParseAddr("198.18.0.2"), until: now.Add(time.Second)}},
			wantNext: time.Second,
		},
		{
			name:    "expired",
			cur:     map[netip.Addr]drain{a4: {node: "old", via: netip.MustParseAddr("198.18.0.2"), until: now}},
			prev:    map[netip.Addr]string{a4: "self"},
			owned:   []netip.Addr{a4},
			members: all,
			want:    map[netip.Addr]drain{},
		},
		{
			name:    "the address went to another node",
			cur:     map[netip.Addr]drain{a4: {node: "old", via: netip.MustParseAddr("198.18.0.2"), until: now.Add(time.Second)}},
			prev:    map[netip.Addr]string{a4: "self"},
			members: all,
			want:    map[netip.Addr]drain{},
		},
		{
			name:    "the old owner died during the drain",
			cur:     map[netip.Addr]drain{a4: {node: "old", via: netip.MustParseAddr("198.18.0.2"), until: now.Add(time.Second)}},
			prev:    map[netip.Addr]string{a4: "self"},
			owned:   []netip.Addr{a4},
			members: []string{"self", "v4only"},
			want:    map[netip.Addr]drain{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, next := nextDrains(tc.cur, tc.prev, "self", &Plan{L2Owned: tc.owned}, tc.members, nodes, now, window)
			opts := cmp.AllowUnexported(drain{})
			if diff := cmp.Diff(tc.want, got, opts, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("drains (-want +got):\n%s", diff)
			}
			if next != tc.wantNext {
				t.Errorf("next = %v, want %v", next, tc.wantNext)
			}
		})
	}
	t.Run("off", func(t *testing.T) {
		got, _ := nextDrains(nil, map[netip.Addr]string{a4: "old"}, "self", &Plan{L2Owned: []netip.Addr{a4}}, all, nodes, now, 0)
		if len(got) != 0 {
			t.Errorf("drains with a zero window: %v", got)
		}
	})
}
