package ledger

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
)

func TestHolderNames(t *testing.T) {
	tests := []struct {
		name        string
		ids         []string
		want        []string
		wantForeign int
	}{
		{name: "none", ids: nil, want: nil},
		{name: "only Berth's", ids: []string{"a/x", "b/y"}, want: []string{"a/x", "b/y"}},
		{
			name:        "foreign ones by name, in order",
			ids:         []string{"a/x", "c/z", "foreign:b/ccm", "foreign:d/ccm"},
			want:        []string{"a/x", "b/ccm", "c/z", "d/ccm"},
			wantForeign: 2,
		},
		{
			name:        "a Service in both roles while it changes hands is listed once",
			ids:         []string{"a/x", "foreign:a/x"},
			want:        []string{"a/x"},
			wantForeign: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, foreign := HolderNames(tc.ids)
			if diff := cmp.Diff(tc.want, got); diff != "" || foreign != tc.wantForeign {
				t.Errorf("HolderNames(%v) = %v, %d; want %v, %d (-want +got):\n%s", tc.ids, got, foreign, tc.want, tc.wantForeign, diff)
			}
		})
	}
}

// TestYieldToForeign: an address a served Service holds and a foreign
// Service's status shows (two implementations allocated it at the same
// instant) goes to the foreign Service when the ledger yields: the served
// Service keeps its other family, gets a new address if there is one, and
// the caller is told to write it. A ledger that does not yield claims.
func TestYieldToForeign(t *testing.T) {
	tests := []struct {
		name      string
		yield     bool
		dual      bool
		addresses []v1alpha1.AddressRange
		wantMine  []string
		wantTheir []string
		wantMoved []string
	}{
		{
			name: "yields: the served Service moves", yield: true,
			addresses: []v1alpha1.AddressRange{"192.0.2.1-192.0.2.2"},
			wantMine:  []string{"192.0.2.2"}, wantTheir: []string{"192.0.2.1"}, wantMoved: []string{"ns/mine"},
		},
		{
			name:      "does not yield: the foreign Service claims",
			addresses: []v1alpha1.AddressRange{"192.0.2.1-192.0.2.2"},
			wantMine:  []string{"192.0.2.1"}, wantTheir: nil, wantMoved: nil,
		},
		{
			name: "dual stack: the other family stays", yield: true, dual: true,
			addresses: []v1alpha1.AddressRange{"192.0.2.1-192.0.2.2", "2001:db8::1"},
			wantMine:  []string{"192.0.2.2", "2001:db8::1"}, wantTheir: []string{"192.0.2.1"}, wantMoved: []string{"ns/mine"},
		},
		{
			name: "a full pool: the served Service waits", yield: true,
			addresses: []v1alpha1.AddressRange{"192.0.2.1"},
			wantMine:  nil, wantTheir: []string{"192.0.2.1"}, wantMoved: []string{"ns/mine"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
			var moved []string
			l := New(Options{
				Serves:         func(s *corev1.Service) bool { return s.Spec.LoadBalancerClass == nil },
				Services:       corelisters.NewServiceLister(idx),
				YieldToForeign: tc.yield,
				Moved:          func(k string) { moved = append(moved, k) },
			})
			l.SetPools([]*v1alpha1.BerthIPPool{{ObjectMeta: metav1.ObjectMeta{Name: "p"},
				Spec: v1alpha1.BerthIPPoolSpec{Addresses: tc.addresses}}})
			l.Restore(nil)
			// Berth's Service is given 192.0.2.1; its status is not written
			// yet when the other implementation's Service shows the same.
			mine := lbService("mine", "")
			if tc.dual {
				mine.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
				policy := corev1.IPFamilyPolicyRequireDualStack
				mine.Spec.IPFamilyPolicy = &policy
			}
			if err := idx.Add(mine); err != nil {
				t.Fatal(err)
			}
			if out, err := l.Assign(mine); err != nil || out.Err != nil || out.Got[0].Addr.String() != "192.0.2.1" {
				t.Fatalf("Assign = %+v, %v; want 192.0.2.1 first", out, err)
			}
			if err := idx.Add(lbService("theirs", "other", "192.0.2.1")); err != nil {
				t.Fatal(err)
			}
			l.SyncForeign("ns/theirs")
			if diff := cmp.Diff(tc.wantMine, addrStrings(l.Lookup("ns/mine"))); diff != "" {
				t.Errorf("served Service holds (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantTheir, addrStrings(l.Lookup(ForeignPrefix+"ns/theirs"))); diff != "" {
				t.Errorf("foreign Service holds (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantMoved, moved); diff != "" {
				t.Errorf("Moved told (-want +got):\n%s", diff)
			}
			// What the caller's next judgement writes is what the ledger
			// holds: judging again moves nothing.
			if out, err := l.Assign(mine); err != nil || !cmp.Equal(tc.wantMine, addrStrings(out.Got)) {
				t.Errorf("judged again: %+v, %v; want %v", out, err, tc.wantMine)
			}
		})
	}
}

// TestYieldToForeignOnRestore: after a restart, an address both show is
// the foreign Service's even when Berth's Service is the older; Berth's is
// judged afterwards like every served Service, and gets another.
func TestYieldToForeignOnRestore(t *testing.T) {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	l := New(Options{
		Serves:         func(s *corev1.Service) bool { return s.Spec.LoadBalancerClass == nil },
		Services:       corelisters.NewServiceLister(idx),
		YieldToForeign: true,
		Moved: func(k string) {
			t.Errorf("Moved(%s) during the replay: its caller judges every served Service after it", k)
		},
	})
	l.SetPools([]*v1alpha1.BerthIPPool{{ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"192.0.2.1-192.0.2.2"}}}})
	mine, theirs := lbService("mine", "", "192.0.2.1"), lbService("theirs", "other", "192.0.2.1")
	mine.CreationTimestamp, theirs.CreationTimestamp = metav1.Unix(1, 0), metav1.Unix(2, 0)
	for _, s := range []*corev1.Service{mine, theirs} {
		if err := idx.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	served, foreign := l.Restore([]*corev1.Service{theirs, mine})
	if len(served) != 1 || foreign != 1 {
		t.Fatalf("Restore = %d served, %d foreign; want 1, 1", len(served), foreign)
	}
	if got := addrStrings(l.Lookup(ForeignPrefix + "ns/theirs")); !cmp.Equal(got, []string{"192.0.2.1"}) {
		t.Errorf("foreign Service holds %v; want [192.0.2.1]", got)
	}
	if out, err := l.Assign(mine); err != nil || !cmp.Equal(addrStrings(out.Got), []string{"192.0.2.2"}) {
		t.Errorf("served Service judged after the replay: %+v, %v; want 192.0.2.2", out, err)
	}
}

func addrStrings(as []allocator.Assignment) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Addr.String())
	}
	return out
}
