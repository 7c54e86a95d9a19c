package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/berthlb/berth/api/v1alpha1"
)

// The generator of TestControllerModel: what it believes the cluster
// holds, the operations it draws, and what each operation touches.

// modelSlot is where one pool of the model may live: a block of 16
// addresses per family that no other slot uses, so pools never overlap
// and pool counts are exact.
type modelSlot struct {
	name         string
	base4, base6 netip.Addr // invalid when the slot has no such family
	gold         bool       // the pool admits only namespaces labelled tier=gold
}

var modelSlots = []modelSlot{
	{name: "v4a", base4: mustAddr("198.51.100.16")},
	{name: "v4b", base4: mustAddr("198.51.100.32")},
	{name: "v6a", base6: mustAddr("2001:db8:a::")},
	{name: "gold", base4: mustAddr("203.0.113.16"), base6: mustAddr("2001:db8:b::"), gold: true},
	{name: "dual", base4: mustAddr("203.0.113.32"), base6: mustAddr("2001:db8:c::")},
}

var modelNamespaces = []string{"ma", "mb"}

// nth returns base + k.
func nth(base netip.Addr, k int) netip.Addr {
	a := base
	for range k {
		a = a.Next()
	}
	return a
}

// modelPool is the generator's copy of one BerthIPPool's spec.
type modelPool struct {
	slot     modelSlot
	n4, n6   int                 // addresses base+1 .. base+n of each family
	reserved map[netip.Addr]bool // a subset of them
	onlyMA   bool                // serviceAllocation.namespaces: [ma]
	priority int32
	crossNS  bool
	manual   bool // autoAssign: false
	deleting bool
}

func (p *modelPool) spec() v1alpha1.BerthIPPoolSpec {
	var s v1alpha1.BerthIPPoolSpec
	if p.n4 > 0 {
		s.Addresses = append(s.Addresses, v1alpha1.AddressRange(fmt.Sprintf("%s-%s", nth(p.slot.base4, 1), nth(p.slot.base4, p.n4))))
	}
	if p.n6 > 0 {
		s.Addresses = append(s.Addresses, v1alpha1.AddressRange(fmt.Sprintf("%s-%s", nth(p.slot.base6, 1), nth(p.slot.base6, p.n6))))
	}
	var res []netip.Addr
	for a := range p.reserved {
		res = append(res, a)
	}
	slices.SortFunc(res, netip.Addr.Compare)
	for _, a := range res {
		s.Reserved = append(s.Reserved, v1alpha1.AddressRange(a.String()))
	}
	if p.manual {
		f := false
		s.AutoAssign = &f
	}
	s.AllowCrossNamespaceSharing = p.crossNS
	if p.slot.gold || p.onlyMA || p.priority != 0 {
		s.ServiceAllocation = &v1alpha1.ServiceAllocation{Priority: p.priority}
		if p.slot.gold {
			s.ServiceAllocation.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "gold"}}
		}
		if p.onlyMA {
			s.ServiceAllocation.Namespaces = []string{"ma"}
		}
	}
	return s
}

// modelPort is one (protocol, port) of a Service.
type modelPort struct {
	proto corev1.Protocol
	port  int32
}

var modelPorts = []modelPort{{corev1.ProtocolTCP, 80}, {corev1.ProtocolTCP, 443}, {corev1.ProtocolUDP, 53}, {corev1.ProtocolTCP, 53}}

// modelService is the generator's copy of one Service.
type modelService struct {
	ns, name string
	lb       bool
	class    string // "" for none
	policy   corev1.IPFamilyPolicy
	families []corev1.IPFamily
	addrAnn  string // berth.dev/addresses, "" for none
	lbIP     string
	poolAnn  string
	key      string
	ports    []modelPort
	local    bool
	app      string
}

func (s *modelService) id() string { return s.ns + "/" + s.name }

// write copies the model's fields onto a Service object.
func (s *modelService) write(svc *corev1.Service) {
	svc.Annotations = map[string]string{}
	for k, v := range map[string]string{v1alpha1.AnnotationAddresses: s.addrAnn, v1alpha1.AnnotationPool: s.poolAnn, v1alpha1.AnnotationSharingKey: s.key} {
		if v != "" {
			svc.Annotations[k] = v
		}
	}
	svc.Spec.Selector = map[string]string{"app": s.app}
	old := svc.Spec.Ports
	svc.Spec.Ports = nil
	for i, p := range s.ports {
		sp := corev1.ServicePort{Name: fmt.Sprintf("%s-%d", strings.ToLower(string(p.proto)), p.port), Protocol: p.proto, Port: p.port}
		if s.lb && i < len(old) && old[i].Port == p.port && old[i].Protocol == p.proto {
			sp.NodePort = old[i].NodePort
		}
		svc.Spec.Ports = append(svc.Spec.Ports, sp)
	}
	svc.Spec.IPFamilyPolicy = &s.policy
	svc.Spec.IPFamilies = s.families
	if !s.lb {
		toClusterIP(svc)
		return
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer && s.class != "" {
		svc.Spec.LoadBalancerClass = &s.class
	}
	svc.Spec.Type = corev1.ServiceTypeLoadBalancer
	svc.Spec.LoadBalancerIP = s.lbIP
	svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	if s.local {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	} else {
		svc.Spec.HealthCheckNodePort = 0
	}
}

// touches is what the operations since the last check changed; a Service
// whose address moves is exempt from invariant 2 when any of these
// concerns it (see exempt in model_check_test.go).
type touches struct {
	services  map[string]bool     // ns/name whose own spec or annotations changed, or which were deleted
	addrs     map[netip.Addr]bool // addresses removed from their pool or reserved
	pools     map[string]bool     // pools deleted, or whose serviceAllocation or sharing changed
	nss       map[string]bool     // namespaces relabelled
	restarted bool
}

func newTouches() *touches {
	return &touches{services: map[string]bool{}, addrs: map[netip.Addr]bool{}, pools: map[string]bool{}, nss: map[string]bool{}}
}

// model is the generator's state.
type model struct {
	rng      *rand.Rand
	e        *env
	pools    map[string]*modelPool
	services map[string]*modelService
	nsGold   map[string]bool
	next     int
	touched  *touches
}

func (m *model) pick(n int) int { return m.rng.IntN(n) }

func (m *model) chance(p float64) bool { return m.rng.Float64() < p }

// pickService returns a random Service of the model, nil if there is none.
func (m *model) pickService() *modelService {
	if len(m.services) == 0 {
		return nil
	}
	ids := sortedKeys(m.services)
	return m.services[ids[m.pick(len(ids))]]
}

func sortedKeys[V any](mp map[string]V) []string {
	out := make([]string, 0, len(mp))
	for k := range mp {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// randomAddress returns an address of family v6 from a random slot: often
// in a pool, sometimes beyond its end.
func (m *model) randomAddress(v6 bool) netip.Addr {
	for {
		s := modelSlots[m.pick(len(modelSlots))]
		base := s.base4
		if v6 {
			base = s.base6
		}
		if base.IsValid() {
			return nth(base, 1+m.pick(7))
		}
	}
}

// drawRequest fills the requested addresses of s.
func (m *model) drawRequest(s *modelService) {
	s.addrAnn, s.lbIP = "", ""
	switch r := m.pick(20); {
	case r < 13:
	case r == 13:
		s.addrAnn = "not-an-ip"
	case r < 16 && s.lb:
		s.lbIP = m.randomAddress(s.families[0] == corev1.IPv6Protocol).String()
	default:
		var parts []string
		for i, f := range s.families {
			if i == 0 || m.chance(0.5) {
				parts = append(parts, m.randomAddress(f == corev1.IPv6Protocol).String())
			}
		}
		s.addrAnn = strings.Join(parts, ", ")
	}
}

func (m *model) drawPoolAnn(s *modelService) {
	switch r := m.pick(20); {
	case r < 16:
		s.poolAnn = ""
	case r < 18:
		s.poolAnn = modelSlots[m.pick(len(modelSlots))].name
	case r == 18:
		s.poolAnn = "nope"
	default:
		s.poolAnn = "v4a, dual"
	}
}

func (m *model) drawSharing(s *modelService) {
	s.key = []string{"", "", "k1", "k1", "k2"}[m.pick(5)]
	p := slices.Clone(modelPorts)
	m.rng.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
	s.ports = p[:1+m.pick(2)]
}

func (m *model) drawClass(s *modelService) {
	switch r := m.pick(10); {
	case r < 5:
		s.class = ""
	case r < 9:
		s.class = "berth.dev/lb"
	default:
		s.class = "other.example/lb"
	}
}

// newService draws a new Service.
func (m *model) newService() *modelService {
	s := &modelService{ns: modelNamespaces[m.pick(len(modelNamespaces))], name: fmt.Sprintf("s%03d", m.next), lb: true, app: []string{"a", "b"}[m.pick(2)]}
	m.next++
	switch m.pick(6) {
	case 0, 1:
		s.policy, s.families = corev1.IPFamilyPolicySingleStack, []corev1.IPFamily{corev1.IPv4Protocol}
	case 2:
		s.policy, s.families = corev1.IPFamilyPolicySingleStack, []corev1.IPFamily{corev1.IPv6Protocol}
	case 3:
		s.policy, s.families = corev1.IPFamilyPolicyPreferDualStack, []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	case 4:
		s.policy, s.families = corev1.IPFamilyPolicyPreferDualStack, []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
	default:
		s.policy, s.families = corev1.IPFamilyPolicyRequireDualStack, []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	}
	m.drawClass(s)
	m.drawRequest(s)
	m.drawPoolAnn(s)
	m.drawSharing(s)
	s.local = m.chance(0.2)
	return s
}

func (m *model) createService(ctx context.Context, s *modelService) error {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: s.name}}
	s.write(svc)
	if _, err := m.e.kube.CoreV1().Services(s.ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create %s: %w", s.id(), err)
	}
	m.services[s.id()] = s
	return nil
}

// updateService writes the model's copy of s, retrying on conflicts.
func (m *model) updateService(ctx context.Context, s *modelService) error {
	m.touched.services[s.id()] = true
	return wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		svc, err := m.e.kube.CoreV1().Services(s.ns).Get(ctx, s.name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		s.write(svc)
		_, err = m.e.kube.CoreV1().Services(s.ns).Update(ctx, svc, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("update %s: %w", s.id(), err)
		}
		return true, nil
	})
}

func (m *model) writePool(ctx context.Context, p *modelPool, create bool) error {
	if create {
		_, err := m.e.berth.BerthV1alpha1().BerthIPPools().Create(ctx, &v1alpha1.BerthIPPool{ObjectMeta: metav1.ObjectMeta{Name: p.slot.name}, Spec: p.spec()}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create pool %s: %w", p.slot.name, err)
		}
		m.pools[p.slot.name] = p
		return nil
	}
	return wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		cur, err := m.e.berth.BerthV1alpha1().BerthIPPools().Get(ctx, p.slot.name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		cur.Spec = p.spec()
		_, err = m.e.berth.BerthV1alpha1().BerthIPPools().Update(ctx, cur, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("update pool %s: %w", p.slot.name, err)
		}
		return true, nil
	})
}

// forgetGone drops the pools the snapshot no longer shows (deleted pools
// whose finalizer went) and the Services it does not show.
func (m *model) forgetGone(s *snapshot) {
	for name, p := range m.pools {
		if _, ok := s.pools[name]; !ok && p.deleting {
			delete(m.pools, name)
		}
	}
}

// livePools returns the names of the model's pools not being deleted.
func (m *model) livePools() []string {
	var out []string
	for _, name := range sortedKeys(m.pools) {
		if !m.pools[name].deleting {
			out = append(out, name)
		}
	}
	return out
}
