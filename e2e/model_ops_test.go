package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// modelOp is one kind of operation the generator draws. run performs it
// and returns its description, or "" when it does not apply now (no
// Service to edit, no pool slot free).
type modelOp struct {
	name   string
	weight int
	run    func(ctx context.Context, m *model) (string, error)
}

// clusterOps change Services, pools and namespaces; they may run while
// the controller is down. The controller operations are in model_test.go.
var clusterOps = []modelOp{
	{"create service", 30, func(ctx context.Context, m *model) (string, error) {
		if len(m.services) >= 20 {
			return "", nil
		}
		s := m.newService()
		return "create " + describeModel(s), m.createService(ctx, s)
	}},
	{"delete service", 9, func(ctx context.Context, m *model) (string, error) {
		s := m.pickService()
		if s == nil {
			return "", nil
		}
		m.touched.services[s.id()] = true
		delete(m.services, s.id())
		return "delete " + s.id(), m.e.kube.CoreV1().Services(s.ns).Delete(ctx, s.name, metav1.DeleteOptions{})
	}},
	{"retype service", 8, func(ctx context.Context, m *model) (string, error) {
		s := m.pickService()
		if s == nil {
			return "", nil
		}
		s.lb = !s.lb
		if s.lb {
			m.drawClass(s)
		} else {
			s.lbIP = ""
		}
		return "retype " + describeModel(s), m.updateService(ctx, s)
	}},
	{"request addresses", 12, func(ctx context.Context, m *model) (string, error) {
		s := m.pickService()
		if s == nil {
			return "", nil
		}
		m.drawRequest(s)
		return fmt.Sprintf("request on %s: addresses=%q loadBalancerIP=%q", s.id(), s.addrAnn, s.lbIP), m.updateService(ctx, s)
	}},
	{"pool annotation", 5, func(ctx context.Context, m *model) (string, error) {
		s := m.pickService()
		if s == nil {
			return "", nil
		}
		m.drawPoolAnn(s)
		return fmt.Sprintf("pool annotation on %s: %q", s.id(), s.poolAnn), m.updateService(ctx, s)
	}},
	{"sharing", 7, func(ctx context.Context, m *model) (string, error) {
		s := m.pickService()
		if s == nil {
			return "", nil
		}
		m.drawSharing(s)
		return fmt.Sprintf("sharing on %s: key=%q ports=%v", s.id(), s.key, s.ports), m.updateService(ctx, s)
	}},
	{"traffic policy", 4, func(ctx context.Context, m *model) (string, error) {
		s := m.pickService()
		if s == nil || !s.lb {
			return "", nil
		}
		if m.chance(0.5) {
			s.local = !s.local
		} else {
			s.app = map[string]string{"a": "b", "b": "a"}[s.app]
		}
		return fmt.Sprintf("traffic on %s: local=%v app=%s", s.id(), s.local, s.app), m.updateService(ctx, s)
	}},
	{"create pool", 7, func(ctx context.Context, m *model) (string, error) {
		var free []modelSlot
		for _, sl := range modelSlots {
			if _, ok := m.pools[sl.name]; !ok {
				free = append(free, sl)
			}
		}
		if len(free) == 0 {
			return "", nil
		}
		sl := free[m.pick(len(free))]
		p := &modelPool{slot: sl, reserved: map[netip.Addr]bool{}, crossNS: m.chance(0.3), manual: m.chance(0.1)}
		if sl.base4.IsValid() {
			p.n4 = 2 + m.pick(2)
		}
		if sl.base6.IsValid() {
			p.n6 = 2 + m.pick(2)
		}
		if sl.gold {
			p.priority = -1
		} else {
			p.onlyMA = m.chance(0.2)
		}
		spec, _ := json.Marshal(p.spec())
		return fmt.Sprintf("create pool %s %s", sl.name, spec), m.writePool(ctx, p, true)
	}},
	{"grow pool", 6, func(ctx context.Context, m *model) (string, error) {
		p := m.pickPool()
		if p == nil {
			return "", nil
		}
		n := &p.n4
		if p.n4 == 0 || (p.n6 > 0 && m.chance(0.5)) {
			n = &p.n6
		}
		if *n >= 6 {
			return "", nil
		}
		*n += 1 + m.pick(min(2, 6-*n))
		return fmt.Sprintf("grow pool %s to %d v4, %d v6", p.slot.name, p.n4, p.n6), m.writePool(ctx, p, false)
	}},
	{"shrink pool", 4, func(ctx context.Context, m *model) (string, error) {
		p := m.pickPool()
		if p == nil {
			return "", nil
		}
		n, base := &p.n4, p.slot.base4
		if p.n4 == 0 || (p.n6 > 0 && m.chance(0.5)) {
			n, base = &p.n6, p.slot.base6
		}
		if *n <= 2 {
			return "", nil
		}
		gone := nth(base, *n)
		*n--
		delete(p.reserved, gone) // a reserved entry outside the pool would make it invalid
		m.touched.addrs[gone] = true
		return fmt.Sprintf("shrink pool %s: remove %s", p.slot.name, gone), m.writePool(ctx, p, false)
	}},
	{"reserve", 5, func(ctx context.Context, m *model) (string, error) {
		p := m.pickPool()
		if p == nil {
			return "", nil
		}
		n, base := p.n4, p.slot.base4
		if p.n4 == 0 || (p.n6 > 0 && m.chance(0.5)) {
			n, base = p.n6, p.slot.base6
		}
		a := nth(base, 1+m.pick(n))
		if p.reserved[a] {
			return "", nil
		}
		p.reserved[a] = true
		m.touched.addrs[a] = true
		return fmt.Sprintf("reserve %s in pool %s", a, p.slot.name), m.writePool(ctx, p, false)
	}},
	{"unreserve", 3, func(ctx context.Context, m *model) (string, error) {
		p := m.pickPool()
		if p == nil || len(p.reserved) == 0 {
			return "", nil
		}
		for a := range p.reserved {
			delete(p.reserved, a)
			return fmt.Sprintf("unreserve %s in pool %s", a, p.slot.name), m.writePool(ctx, p, false)
		}
		return "", nil
	}},
	{"pool allocation", 3, func(ctx context.Context, m *model) (string, error) {
		p := m.pickPool()
		if p == nil {
			return "", nil
		}
		if !p.slot.gold && m.chance(0.5) {
			p.onlyMA = !p.onlyMA
		} else {
			p.priority = int32(m.pick(3) - 1)
		}
		m.touched.pools[p.slot.name] = true
		return fmt.Sprintf("pool %s allocation: onlyMA=%v priority=%d", p.slot.name, p.onlyMA, p.priority), m.writePool(ctx, p, false)
	}},
	{"pool sharing", 2, func(ctx context.Context, m *model) (string, error) {
		p := m.pickPool()
		if p == nil {
			return "", nil
		}
		p.crossNS = !p.crossNS
		m.touched.pools[p.slot.name] = true
		return fmt.Sprintf("pool %s allowCrossNamespaceSharing=%v", p.slot.name, p.crossNS), m.writePool(ctx, p, false)
	}},
	{"pool autoAssign", 2, func(ctx context.Context, m *model) (string, error) {
		p := m.pickPool()
		if p == nil {
			return "", nil
		}
		p.manual = !p.manual
		return fmt.Sprintf("pool %s autoAssign=%v", p.slot.name, !p.manual), m.writePool(ctx, p, false)
	}},
	{"delete pool", 2, func(ctx context.Context, m *model) (string, error) {
		p := m.pickPool()
		if p == nil {
			return "", nil
		}
		p.deleting = true
		m.touched.pools[p.slot.name] = true
		return "delete pool " + p.slot.name, m.e.berth.BerthV1alpha1().BerthIPPools().Delete(ctx, p.slot.name, metav1.DeleteOptions{})
	}},
	{"label namespace", 4, func(ctx context.Context, m *model) (string, error) {
		ns := modelNamespaces[m.pick(len(modelNamespaces))]
		m.nsGold[ns] = !m.nsGold[ns]
		m.touched.nss[ns] = true
		patch := `{"metadata":{"labels":{"tier":null}}}`
		if m.nsGold[ns] {
			patch = `{"metadata":{"labels":{"tier":"gold"}}}`
		}
		_, err := m.e.kube.CoreV1().Namespaces().Patch(ctx, ns, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{})
		return fmt.Sprintf("namespace %s tier=gold: %v", ns, m.nsGold[ns]), err
	}},
}

// pickPool returns a random pool not being deleted, nil if there is none.
func (m *model) pickPool() *modelPool {
	live := m.livePools()
	if len(live) == 0 {
		return nil
	}
	return m.pools[live[m.pick(len(live))]]
}

// drawOp picks one operation of ops by weight.
func (m *model) drawOp(ops []modelOp) modelOp {
	total := 0
	for _, o := range ops {
		total += o.weight
	}
	r := m.pick(total)
	for _, o := range ops {
		if r < o.weight {
			return o
		}
		r -= o.weight
	}
	return ops[len(ops)-1]
}

func describeModel(s *modelService) string {
	typ := "ClusterIP"
	if s.lb {
		typ = "LoadBalancer"
		if s.class != "" {
			typ += "(" + s.class + ")"
		}
	}
	pol := string(s.policy)
	for _, f := range s.families {
		pol += "/" + string(f)
	}
	var ports []string
	for _, p := range s.ports {
		ports = append(ports, fmt.Sprintf("%s/%d", p.proto, p.port))
	}
	tp := "Cluster"
	if s.local {
		tp = "Local"
	}
	return fmt.Sprintf("%s %s %s addresses=%q lbIP=%q pool=%q key=%q ports=%v etp=%s app=%s",
		s.id(), typ, pol, s.addrAnn, s.lbIP, s.poolAnn, s.key, ports, tp, s.app)
}
