package speaker

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/bfd"
	"github.com/berthlb/berth/bgp"
)

func TestBFDSessionsFor(t *testing.T) {
	i32 := func(v int32) *int32 { return &v }
	bp := func(name string, prof *v1alpha1.BFDProfile) *v1alpha1.BerthBGPPeer {
		return &v1alpha1.BerthBGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.BerthBGPPeerSpec{BFD: prof}}
	}
	a, b := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8::1")
	src := netip.MustParseAddr("198.51.100.9")
	running := map[string]bgp.Peer{
		"fast":  {Name: "fast", Address: a, SourceAddress: src},
		"plain": {Name: "plain", Address: b},
		"none":  {Name: "none", Address: a},
	}
	for _, tc := range []struct {
		name  string
		peers []*v1alpha1.BerthBGPPeer
		want  []bfd.Session
	}{
		{"no profile, no session", []*v1alpha1.BerthBGPPeer{bp("none", nil)}, nil},
		{"not running, no session", []*v1alpha1.BerthBGPPeer{bp("elsewhere", &v1alpha1.BFDProfile{})}, nil},
		{"defaults left to bfd", []*v1alpha1.BerthBGPPeer{bp("plain", &v1alpha1.BFDProfile{})},
			[]bfd.Session{{Name: "plain", Peer: b}}},
		{"profile and source address", []*v1alpha1.BerthBGPPeer{bp("fast", &v1alpha1.BFDProfile{MinTxMillis: i32(100), MinRxMillis: i32(200), Multiplier: i32(5), Multihop: true})},
			[]bfd.Session{{Name: "fast", Peer: a, Local: src, Multihop: true, Timers: bfd.Timers{MinTx: 100 * time.Millisecond, MinRx: 200 * time.Millisecond, Multiplier: 5}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := bfdSessionsFor(Snapshot{Peers: tc.peers}, running)
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
				t.Errorf("sessions (-want +got):\n%s", diff)
			}
		})
	}
}
