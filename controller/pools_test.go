package controller

import (
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/config"
)

func TestPoolStatus(t *testing.T) {
	fam := func(total, used int64) allocator.FamilyStats {
		return allocator.FamilyStats{Total: big.NewInt(total), Used: big.NewInt(used), Free: big.NewInt(total - used)}
	}
	v6total, _ := new(big.Int).SetString("1208925819614629174706176", 10)
	pool := func(mut ...func(*v1alpha1.BerthIPPool)) *v1alpha1.BerthIPPool {
		p := &v1alpha1.BerthIPPool{ObjectMeta: metav1.ObjectMeta{Name: "p", Generation: 3},
			Spec: v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.51.100.0/24"}}}
		for _, m := range mut {
			m(p)
		}
		return p
	}
	cfgPool := func(p *v1alpha1.BerthIPPool) *config.Pool {
		cp, _ := config.For([]*v1alpha1.BerthIPPool{p}).Pool(p.Name)
		return cp
	}
	tests := []struct {
		name        string
		pool        *v1alpha1.BerthIPPool
		stats       allocator.PoolStats
		holders     []string
		foreign     int
		wantUsage   string
		wantV4      *v1alpha1.AddressCounts
		wantV6      *v1alpha1.AddressCounts
		wantConds   map[string]metav1.ConditionStatus
		wantReason  map[string]string
		wantHolders int32
		wantInUse   string // part of the InUse message
	}{
		{
			name:      "valid v4 pool in use",
			pool:      pool(),
			stats:     allocator.PoolStats{IPv4: fam(256, 2)},
			holders:   []string{"a/x", "b/y"},
			wantUsage: "2/256",
			wantV4:    &v1alpha1.AddressCounts{Total: "256", Used: "2", Free: "254"},
			wantConds: map[string]metav1.ConditionStatus{
				v1alpha1.PoolConditionReady: metav1.ConditionTrue, v1alpha1.PoolConditionOverlapping: metav1.ConditionFalse,
				v1alpha1.PoolConditionInUse: metav1.ConditionTrue,
			},
			wantHolders: 2,
			wantInUse:   "2 Services hold addresses of this pool: a/x, b/y",
		},
		{
			name:      "Services of another implementation count as holders",
			pool:      pool(),
			stats:     allocator.PoolStats{IPv4: fam(256, 3)},
			holders:   []string{"a/x", "b/ccm", "c/ccm"},
			foreign:   2,
			wantUsage: "3/256",
			wantV4:    &v1alpha1.AddressCounts{Total: "256", Used: "3", Free: "253"},
			wantConds: map[string]metav1.ConditionStatus{
				v1alpha1.PoolConditionReady: metav1.ConditionTrue, v1alpha1.PoolConditionInUse: metav1.ConditionTrue,
			},
			wantHolders: 3,
			wantInUse:   "a/x, b/ccm, c/ccm (2 of them served by another implementation, such as berth-ccm)",
		},
		{
			name: "dual-stack with a huge IPv6 part and an overlap",
			pool: pool(func(p *v1alpha1.BerthIPPool) { p.Spec.Addresses = append(p.Spec.Addresses, "2001:db8::/48") }),
			stats: allocator.PoolStats{IPv4: fam(256, 0),
				IPv6:     allocator.FamilyStats{Total: v6total, Used: big.NewInt(1), Free: new(big.Int).Sub(v6total, big.NewInt(1))},
				Overlaps: []string{"other"}},
			wantUsage: "0/256 v4, 1/1208925819614629174706176 v6",
			wantV4:    &v1alpha1.AddressCounts{Total: "256", Used: "0", Free: "256"},
			wantV6:    &v1alpha1.AddressCounts{Total: "1208925819614629174706176", Used: "1", Free: "1208925819614629174706175"},
			wantConds: map[string]metav1.ConditionStatus{
				v1alpha1.PoolConditionReady: metav1.ConditionTrue, v1alpha1.PoolConditionOverlapping: metav1.ConditionTrue,
				v1alpha1.PoolConditionInUse: metav1.ConditionFalse,
			},
		},
		{
			name:       "invalid pool: not Ready, no counts",
			pool:       pool(func(p *v1alpha1.BerthIPPool) { p.Spec.Reserved = []v1alpha1.AddressRange{"192.0.2.1"} }),
			stats:      allocator.PoolStats{IPv4: fam(256, 0)},
			wantConds:  map[string]metav1.ConditionStatus{v1alpha1.PoolConditionReady: metav1.ConditionFalse},
			wantReason: map[string]string{v1alpha1.PoolConditionReady: "InvalidSpec"},
		},
		{
			name: "terminating pool with a holder says deletion waits",
			pool: pool(func(p *v1alpha1.BerthIPPool) {
				now := metav1.NewTime(time.Now())
				p.DeletionTimestamp = &now
			}),
			stats:       allocator.PoolStats{IPv4: fam(256, 1)},
			holders:     []string{"a/x"},
			wantUsage:   "1/256",
			wantV4:      &v1alpha1.AddressCounts{Total: "256", Used: "1", Free: "255"},
			wantConds:   map[string]metav1.ConditionStatus{v1alpha1.PoolConditionReady: metav1.ConditionFalse, v1alpha1.PoolConditionInUse: metav1.ConditionTrue},
			wantReason:  map[string]string{v1alpha1.PoolConditionReady: "Deleting"},
			wantHolders: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := poolStatus(tc.pool, cfgPool(tc.pool), tc.stats, tc.holders, tc.foreign)
			if st.Usage != tc.wantUsage {
				t.Errorf("usage = %q, want %q", st.Usage, tc.wantUsage)
			}
			if diff := cmp.Diff(tc.wantV4, st.IPv4); diff != "" {
				t.Errorf("IPv4 (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantV6, st.IPv6); diff != "" {
				t.Errorf("IPv6 (-want +got):\n%s", diff)
			}
			for typ, want := range tc.wantConds {
				c := meta.FindStatusCondition(st.Conditions, typ)
				if c == nil || c.Status != want || c.ObservedGeneration != 3 {
					t.Errorf("condition %s = %+v, want status %s at generation 3", typ, c, want)
				}
			}
			for typ, want := range tc.wantReason {
				if c := meta.FindStatusCondition(st.Conditions, typ); c == nil || c.Reason != want {
					t.Errorf("condition %s reason = %+v, want %s", typ, c, want)
				}
			}
			if c := meta.FindStatusCondition(st.Conditions, v1alpha1.PoolConditionInUse); tc.wantInUse != "" && (c == nil || !strings.Contains(c.Message, tc.wantInUse)) {
				t.Errorf("InUse condition = %+v, want a message containing %q", c, tc.wantInUse)
			}
			if st.HolderCount != tc.wantHolders || st.ObservedGeneration != 3 {
				t.Errorf("holderCount %d observedGeneration %d, want %d and 3", st.HolderCount, st.ObservedGeneration, tc.wantHolders)
			}
			// A status equal to itself needs no write; a changed count does.
			if !poolStatusEqual(st, st) {
				t.Errorf("poolStatusEqual(st, st) = false")
			}
			changed := st.DeepCopy()
			changed.HolderCount++
			if poolStatusEqual(st, changed) {
				t.Errorf("poolStatusEqual ignores holderCount")
			}
		})
	}
}
