package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
)

// reasonPartiallyAllocated is the condition reason (status False) of a
// Service that holds some but not all of what it asked for.
const reasonPartiallyAllocated = "PartiallyAllocated"

// free reports whether a is allocatable in p and shown by no Service.
func (s *snapshot) free(held map[netip.Addr][]string, p *poolView, a netip.Addr) bool {
	return p.addrs[a] && len(held[a]) == 0
}

// requestable reports whether the requested address a is free in a pool s
// may ask it from.
func requestable(snap *snapshot, held map[netip.Addr][]string, s *corev1.Service, a netip.Addr) bool {
	for _, p := range allowed(snap, s, false, true) {
		if snap.free(held, p, a) {
			return true
		}
	}
	return false
}

// obtainable returns a free address s could be given for family f: its
// requested address of f if it asks for one (and it is requestable), else
// any free address of f in a pool it may use automatically. Invalid when
// there is none.
func obtainable(snap *snapshot, held map[netip.Addr][]string, s *corev1.Service, r svcRequest, f corev1.IPFamily) netip.Addr {
	for _, a := range r.addrs {
		if familyOf(a) == f {
			if requestable(snap, held, s, a) {
				return a
			}
			return netip.Addr{}
		}
	}
	for _, p := range allowed(snap, s, false, false) {
		for a := range p.addrs {
			if familyOf(a) == f && snap.free(held, p, a) {
				return a
			}
		}
	}
	return netip.Addr{}
}

// 3. No Service of the controller waits for a family while a usable
// address of it is free. berth-ccm's Services are left out: the upstream
// service controller retries a failed Service with exponential backoff,
// which is not the controller's promise. A Service that asks for an
// address it cannot have is left out too: whether it then takes its other
// family (PartiallyAllocated) or nothing is the implementation's choice.
func (c checker) liveness(snap *snapshot) []violation {
	var out []violation
	held := snap.holders()
	for _, id := range sortedKeys(snap.svcs) {
		s := snap.svcs[id]
		cond := condition(s)
		r := svcRequestOf(s)
		if c.servedBy(s) != servedByController || cond == nil || !r.wellFormed(s) ||
			cond.Reason == v1alpha1.ReasonInvalidRequest || cond.Reason == v1alpha1.ReasonSharingConflict {
			continue
		}
		have := map[corev1.IPFamily]bool{}
		for _, a := range addrs(s) {
			have[familyOf(a)] = true
		}
		if slices.ContainsFunc(r.addrs, func(a netip.Addr) bool {
			return !slices.Contains(addrs(s), a) && !requestable(snap, held, s, a)
		}) {
			continue
		}
		var missing []corev1.IPFamily
		for _, f := range r.families {
			if !have[f] {
				missing = append(missing, f)
			}
		}
		if len(missing) == 0 {
			continue
		}
		free := map[corev1.IPFamily]netip.Addr{}
		for _, f := range missing {
			if a := obtainable(snap, held, s, r, f); a.IsValid() {
				free[f] = a
			}
		}
		allOrNothing := s.Spec.IPFamilyPolicy != nil && *s.Spec.IPFamilyPolicy == corev1.IPFamilyPolicyRequireDualStack
		if len(free) == 0 || (allOrNothing && len(free) < len(missing)) {
			continue
		}
		out = append(out, violation{3, id, fmt.Sprintf("waits for %v while %v are free for it; %s", missing, free, statusString(s))})
	}
	return out
}

// 4. The condition of every Service of the controller matches its status,
// and Services no one serves show neither addresses nor Berth's condition.
func (c checker) honesty(snap *snapshot) []violation {
	var out []violation
	bad := func(id, format string, args ...any) {
		out = append(out, violation{4, id, fmt.Sprintf(format, args...) + "; " + statusString(snap.svcs[id])})
	}
	for _, id := range sortedKeys(snap.svcs) {
		s := snap.svcs[id]
		cond := condition(s)
		got := addrs(s)
		switch c.servedBy(s) {
		case servedByNone:
			if len(got) > 0 || cond != nil {
				bad(id, "is served by no one but shows addresses or Berth's condition")
			}
			continue
		case servedByCCM:
			if cond != nil {
				bad(id, "is berth-ccm's but shows the controller's condition")
			}
			continue
		}
		if cond == nil {
			bad(id, "has no %s condition", v1alpha1.ServiceConditionAddressAllocated)
			continue
		}
		r := svcRequestOf(s)
		fams := map[corev1.IPFamily]int{}
		for _, a := range got {
			fams[familyOf(a)]++
		}
		for f, n := range fams {
			if n > 1 || !slices.Contains(r.families, f) {
				bad(id, "shows %d %s addresses, wants families %v", n, f, r.families)
			}
		}
		if r.malformed && cond.Reason != v1alpha1.ReasonInvalidRequest {
			bad(id, "asks for a malformed address but is not InvalidRequest")
		}
		switch cond.Reason {
		case v1alpha1.ReasonAllocated:
			if cond.Status != metav1.ConditionTrue {
				bad(id, "reason Allocated with status %s", cond.Status)
			}
			if len(got) == 0 {
				bad(id, "is Allocated without an address")
			}
			policy := corev1.IPFamilyPolicySingleStack
			if s.Spec.IPFamilyPolicy != nil {
				policy = *s.Spec.IPFamilyPolicy
			}
			if policy != corev1.IPFamilyPolicyPreferDualStack && len(fams) != len(r.families) {
				bad(id, "is Allocated with %d of the %d families %s asks for", len(fams), len(r.families), policy)
			}
			if r.wellFormed(s) {
				for _, a := range r.addrs {
					if !slices.Contains(got, a) {
						bad(id, "is Allocated without its requested address %s", a)
					}
				}
			}
		case v1alpha1.ReasonPoolExhausted, v1alpha1.ReasonNoMatchingPool, v1alpha1.ReasonRequestedAddressUnavailable, v1alpha1.ReasonSharingConflict:
			if cond.Status != metav1.ConditionFalse || len(got) > 0 {
				bad(id, "condition %s/%s while showing %v", cond.Status, cond.Reason, got)
			}
		case reasonPartiallyAllocated:
			if cond.Status != metav1.ConditionFalse || len(got) == 0 {
				bad(id, "condition %s/%s while showing %v", cond.Status, cond.Reason, got)
			}
		case v1alpha1.ReasonInvalidRequest:
			if cond.Status != metav1.ConditionFalse {
				bad(id, "InvalidRequest with status %s", cond.Status)
			}
			continue // may keep its previous addresses, valid or not
		default:
			bad(id, "unknown reason %q", cond.Reason)
		}
		for _, a := range got {
			if !validFor(snap, s, a) {
				bad(id, "holds %s, which is in no pool it may use or is reserved", a)
			}
		}
	}
	return out
}

// 6. Each ready pool's status counts the distinct addresses of its ranges
// that Services show.
func (c checker) poolCounts(snap *snapshot) []violation {
	var out []violation
	held := snap.holders()
	for _, name := range sortedKeys(snap.pools) {
		p := snap.pools[name]
		if p.deleting || p.Status.ObservedGeneration != p.Generation || !poolReady(p.BerthIPPool) {
			continue
		}
		total := map[corev1.IPFamily]int{}
		used := map[corev1.IPFamily]int{}
		for a := range p.addrs {
			total[familyOf(a)]++
			if len(held[a]) > 0 {
				used[familyOf(a)]++
			}
		}
		for f, st := range map[corev1.IPFamily]*v1alpha1.AddressCounts{corev1.IPv4Protocol: p.Status.IPv4, corev1.IPv6Protocol: p.Status.IPv6} {
			gotTotal, gotUsed := 0, 0
			if st != nil {
				gotTotal, _ = strconv.Atoi(st.Total)
				gotUsed, _ = strconv.Atoi(st.Used)
			}
			if gotTotal != total[f] || gotUsed != used[f] {
				out = append(out, violation{6, "pool/" + name, fmt.Sprintf("%s status says %d used of %d, Services show %d used of %d", f, gotUsed, gotTotal, used[f], total[f])})
			}
		}
	}
	return out
}

func poolReady(p *v1alpha1.BerthIPPool) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == v1alpha1.PoolConditionReady {
			return c.Status == metav1.ConditionTrue
		}
	}
	return false
}
