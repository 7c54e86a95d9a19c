package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/api/v1alpha1"
)

// The invariants of TestControllerModel, checked on a snapshot of all
// Services, BerthIPPools and namespaces. They read only the snapshot (and
// which implementation serves which class), never the generator's model,
// so a generator mistake cannot hide a controller bug.

// snapshot is the cluster as one round of List calls saw it.
type snapshot struct {
	svcs  map[string]*corev1.Service // by ns/name
	pools map[string]*poolView
	nss   map[string]labels.Set
	key   string // resource versions of everything, to tell when nothing changes
	at    time.Time
}

// poolView is a BerthIPPool with its addresses enumerated (the model's pools
// are small ranges and single addresses).
type poolView struct {
	*v1alpha1.BerthIPPool
	addrs    map[netip.Addr]bool // allocatable: in the ranges and not reserved
	reserved map[netip.Addr]bool
	deleting bool
}

func takeSnapshot(ctx context.Context, e *env) (*snapshot, error) {
	s := &snapshot{svcs: map[string]*corev1.Service{}, pools: map[string]*poolView{}, nss: map[string]labels.Set{}, at: time.Now()}
	var key []string
	for _, ns := range modelNamespaces {
		list, err := e.kube.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for i := range list.Items {
			svc := &list.Items[i]
			s.svcs[ns+"/"+svc.Name] = svc
			key = append(key, ns+"/"+svc.Name+"@"+svc.ResourceVersion)
		}
		nsObj, err := e.kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		s.nss[ns] = nsObj.Labels
		key = append(key, "ns/"+ns+"@"+nsObj.ResourceVersion)
	}
	pools, err := e.berth.BerthV1alpha1().BerthIPPools().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range pools.Items {
		p := &pools.Items[i]
		v := &poolView{BerthIPPool: p, addrs: map[netip.Addr]bool{}, reserved: map[netip.Addr]bool{}, deleting: p.DeletionTimestamp != nil}
		for _, r := range p.Spec.Reserved {
			for _, a := range expand(string(r)) {
				v.reserved[a] = true
			}
		}
		for _, r := range p.Spec.Addresses {
			for _, a := range expand(string(r)) {
				if !v.reserved[a] {
					v.addrs[a] = true
				}
			}
		}
		s.pools[p.Name] = v
		key = append(key, "pool/"+p.Name+"@"+p.ResourceVersion)
	}
	slices.Sort(key)
	s.key = strings.Join(key, " ")
	return s, nil
}

// expand lists the addresses of a range "a-b" or a single address.
func expand(r string) []netip.Addr {
	first, last, ok := strings.Cut(r, "-")
	if !ok {
		last = first
	}
	a, err1 := netip.ParseAddr(strings.TrimSpace(first))
	b, err2 := netip.ParseAddr(strings.TrimSpace(last))
	if err1 != nil || err2 != nil {
		return nil
	}
	var out []netip.Addr
	for ; a.Compare(b) <= 0 && len(out) < 256; a = a.Next() {
		out = append(out, a)
	}
	return out
}

// violation is one broken invariant.
type violation struct {
	inv int
	svc string // ns/name, or pool/name
	msg string
}

func (v violation) String() string {
	return fmt.Sprintf("invariant %d (%s): %s: %s", v.inv, invNames[v.inv], v.svc, v.msg)
}

var invNames = map[int]string{1: "no duplicate", 2: "no valid address moved", 3: "liveness", 4: "honesty",
	5: "persistence", 6: "pool counts"}

// checker knows who serves which Service.
type checker struct {
	ccm bool // berth-ccm serves unclassed Services; the controller only berth.dev/lb
}

const (
	servedByNone = iota
	servedByController
	servedByCCM
)

func (c checker) servedBy(s *corev1.Service) int {
	if s.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return servedByNone
	}
	switch {
	case s.Spec.LoadBalancerClass == nil && c.ccm:
		return servedByCCM
	case s.Spec.LoadBalancerClass == nil, *s.Spec.LoadBalancerClass == "berth.dev/lb":
		return servedByController
	}
	return servedByNone
}

// check returns every violation in cur; prev is the snapshot of the last
// check (nil at the first) and t what changed since.
func (c checker) check(prev, cur *snapshot, t *touches) []violation {
	var out []violation
	out = append(out, c.duplicates(cur)...)
	if prev != nil {
		out = append(out, c.moved(prev, cur, t)...)
	}
	out = append(out, c.liveness(cur)...)
	out = append(out, c.honesty(cur)...)
	out = append(out, c.poolCounts(cur)...)
	return out
}

// holders maps each address to the Services showing it.
func (s *snapshot) holders() map[netip.Addr][]string {
	out := map[netip.Addr][]string{}
	for _, id := range sortedKeys(s.svcs) {
		for _, a := range addrs(s.svcs[id]) {
			out[a] = append(out[a], id)
		}
	}
	return out
}

// poolsOf returns the pools whose ranges (reserved or not) contain a.
func (s *snapshot) poolsOf(a netip.Addr) []*poolView {
	var out []*poolView
	for _, name := range sortedKeys(s.pools) {
		if p := s.pools[name]; p.addrs[a] || p.reserved[a] {
			out = append(out, p)
		}
	}
	return out
}

// 1. No address on two Services unless they may share it.
func (c checker) duplicates(s *snapshot) []violation {
	var out []violation
	for a, ids := range s.holders() {
		for i := range ids {
			for j := i + 1; j < len(ids); j++ {
				if why := canShare(s, s.svcs[ids[i]], s.svcs[ids[j]], a); why != "" {
					out = append(out, violation{1, ids[i], fmt.Sprintf("%s is also on %s, but they may not share it: %s", a, ids[j], why)})
				}
			}
		}
	}
	return out
}

// canShare returns "" when x and y may share a, else why not.
func canShare(s *snapshot, x, y *corev1.Service, a netip.Addr) string {
	kx, ky := strings.TrimSpace(x.Annotations[v1alpha1.AnnotationSharingKey]), strings.TrimSpace(y.Annotations[v1alpha1.AnnotationSharingKey])
	if kx == "" || kx != ky {
		return fmt.Sprintf("sharing keys %q and %q", kx, ky)
	}
	for _, p := range x.Spec.Ports {
		for _, q := range y.Spec.Ports {
			if p.Port == q.Port && proto(p) == proto(q) {
				return fmt.Sprintf("both use %s/%d", proto(p), p.Port)
			}
		}
	}
	if x.Namespace != y.Namespace {
		for _, p := range s.poolsOf(a) {
			if !p.Spec.AllowCrossNamespaceSharing {
				return fmt.Sprintf("different namespaces and pool %s does not allow cross-namespace sharing", p.Name)
			}
		}
	}
	lx, ly := x.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal, y.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	if lx || ly {
		if !lx || !ly || x.Namespace != y.Namespace || len(x.Spec.Selector) == 0 || !maps.Equal(x.Spec.Selector, y.Spec.Selector) {
			return "externalTrafficPolicy Local needs both Local, one namespace and identical selectors"
		}
	}
	return ""
}

func proto(p corev1.ServicePort) corev1.Protocol {
	if p.Protocol == "" {
		return corev1.ProtocolTCP
	}
	return p.Protocol
}

// 2 and 5. An address a Service had at the last check and lost is a
// violation unless something that concerns it changed (exempt).
func (c checker) moved(prev, cur *snapshot, t *touches) []violation {
	var out []violation
	prevHolders := prev.holders()
	for _, id := range sortedKeys(prev.svcs) {
		was, now := prev.svcs[id], cur.svcs[id]
		if now == nil || c.servedBy(was) == servedByNone || c.servedBy(was) != c.servedBy(now) {
			continue
		}
		var lost []netip.Addr
		excused := false
		for _, a := range addrs(was) {
			if !slices.Contains(addrs(now), a) {
				lost = append(lost, a)
				excused = excused || c.exempt(prev, prevHolders, t, was, a) != ""
			}
		}
		// A Service that had to give up one address may lose the others
		// with it (RequireDualStack is all or nothing).
		if excused {
			continue
		}
		for _, a := range lost {
			inv, what := 2, "a valid address"
			if cond := condition(was); cond != nil && cond.Reason == v1alpha1.ReasonInvalidRequest {
				inv, what = 5, "an address kept through an invalid request"
			}
			if t.restarted {
				what += " (across a restart)"
			}
			out = append(out, violation{inv, id, fmt.Sprintf("lost %s %s though nothing that concerns it changed; was %s, now %s",
				what, a, statusString(was), statusString(now))})
		}
	}
	return out
}

// exempt returns why a Service may have lost a, "" if nothing excuses it:
// the Service itself changed; a was removed from its pool or reserved; a
// pool holding a was deleted or had its serviceAllocation or sharing
// changed; the Service's namespace was relabelled; a Service that showed
// a, or one with the same sharing key, changed; or a was not valid for
// the Service in the first place (then invariant 4 speaks).
func (c checker) exempt(prev *snapshot, prevHolders map[netip.Addr][]string, t *touches, was *corev1.Service, a netip.Addr) string {
	id := was.Namespace + "/" + was.Name
	switch {
	case t.services[id]:
		return "the Service changed"
	case t.addrs[a]:
		return "the address was removed or reserved"
	case t.nss[was.Namespace]:
		return "its namespace was relabelled"
	}
	for _, p := range prev.poolsOf(a) {
		if t.pools[p.Name] {
			return "its pool changed"
		}
	}
	for _, other := range prevHolders[a] {
		if other != id && (t.services[other] || t.nss[strings.SplitN(other, "/", 2)[0]]) {
			return "a Service sharing it changed"
		}
	}
	if key := strings.TrimSpace(was.Annotations[v1alpha1.AnnotationSharingKey]); key != "" {
		for other := range t.services {
			if o := prev.svcs[other]; o != nil && strings.TrimSpace(o.Annotations[v1alpha1.AnnotationSharingKey]) == key {
				return "a Service with its sharing key changed"
			}
		}
	}
	if len(prevHolders[a]) > 1 && canShare(prev, prev.svcs[prevHolders[a][0]], prev.svcs[prevHolders[a][1]], a) != "" {
		return "it was a duplicate"
	}
	if c.servedBy(was) == servedByController && !validFor(prev, was, a) {
		return "it was not valid for the Service"
	}
	return ""
}

// svcRequest is what a Service asks for, as the documentation reads its
// annotations.
type svcRequest struct {
	families   []corev1.IPFamily // the families it wants
	addrs      []netip.Addr      // requested addresses
	malformed  bool              // an entry of berth.dev/addresses does not parse
	annotated  bool              // berth.dev/addresses names something
	annotatedN int               // addrs[:annotatedN] come from berth.dev/addresses
	pools      []string          // berth.dev/pool, nil for none
}

func svcRequestOf(s *corev1.Service) svcRequest {
	var r svcRequest
	r.families = s.Spec.IPFamilies
	if len(r.families) == 0 {
		r.families = []corev1.IPFamily{corev1.IPv4Protocol}
	}
	if s.Spec.IPFamilyPolicy == nil || *s.Spec.IPFamilyPolicy == corev1.IPFamilyPolicySingleStack {
		r.families = r.families[:1]
	}
	for _, part := range strings.Split(s.Annotations[v1alpha1.AnnotationAddresses], ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil {
			r.malformed = true
			continue
		}
		r.addrs = append(r.addrs, a)
	}
	r.annotated, r.annotatedN = len(r.addrs) > 0 || r.malformed, len(r.addrs)
	if ip, err := netip.ParseAddr(s.Spec.LoadBalancerIP); err == nil && !slices.Contains(r.addrs, ip) {
		r.addrs = append(r.addrs, ip)
	}
	if v, ok := s.Annotations[v1alpha1.AnnotationPool]; ok {
		r.pools = []string{}
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				r.pools = append(r.pools, n)
			}
		}
	}
	return r
}

// wellFormed reports whether the request is one the controller must try
// to serve: parsable, at most one address per family, each of a family
// the Service gets, and loadBalancerIP agreeing with the annotation.
func (r svcRequest) wellFormed(s *corev1.Service) bool {
	if r.malformed || (r.pools != nil && len(r.pools) == 0) {
		return false
	}
	seen := map[corev1.IPFamily]bool{}
	for _, a := range r.addrs {
		f := familyOf(a)
		if seen[f] || !slices.Contains(r.families, f) {
			return false
		}
		seen[f] = true
	}
	if ip, err := netip.ParseAddr(s.Spec.LoadBalancerIP); err == nil && r.annotated && !slices.Contains(r.addrs[:r.annotatedN], ip) {
		return false
	}
	return true
}

func familyOf(a netip.Addr) corev1.IPFamily {
	if a.Is4() {
		return corev1.IPv4Protocol
	}
	return corev1.IPv6Protocol
}

// admits reports whether pool p's serviceAllocation admits s (the model
// uses namespaces and namespaceSelector only).
func admits(snap *snapshot, p *poolView, s *corev1.Service) bool {
	sa := p.Spec.ServiceAllocation
	if sa == nil {
		return true
	}
	if len(sa.Namespaces) > 0 && !slices.Contains(sa.Namespaces, s.Namespace) {
		return false
	}
	if sa.NamespaceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(sa.NamespaceSelector)
		if err != nil || !sel.Matches(snap.nss[s.Namespace]) {
			return false
		}
	}
	return true
}

// allowed returns the pools s may take addresses from: named by
// berth.dev/pool if it has one, admitting it; deleting pools only when
// keep (for an address it holds already); autoAssign false pools only
// when named or explicit (a requested address).
func allowed(snap *snapshot, s *corev1.Service, keep, explicit bool) []*poolView {
	r := svcRequestOf(s)
	var out []*poolView
	for _, name := range sortedKeys(snap.pools) {
		p := snap.pools[name]
		named := r.pools != nil && slices.Contains(r.pools, name)
		switch {
		case r.pools != nil && !named, p.deleting && !keep, !admits(snap, p, s):
			continue
		case !keep && !explicit && !named && p.Spec.AutoAssign != nil && !*p.Spec.AutoAssign:
			continue
		}
		out = append(out, p)
	}
	return out
}

// validFor reports whether s may hold a: a is allocatable in a pool it
// may keep addresses of.
func validFor(snap *snapshot, s *corev1.Service, a netip.Addr) bool {
	for _, p := range allowed(snap, s, true, true) {
		if p.addrs[a] {
			return true
		}
	}
	return false
}
