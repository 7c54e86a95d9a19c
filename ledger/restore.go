package ledger

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/config"
)

// Restore rebuilds the record from the Services' status after a start or a
// leadership change, before anything else is judged. First every address
// that is still valid for the Service showing it is recorded, oldest
// Service first and without handing out anything new, for the Services
// this implementation serves and for foreign ones alike. Only then may a
// Service be given a new address, so a Service whose address became
// invalid can never be given another's valid one. Restore returns the
// served Services, oldest first, for the caller to judge in that order.
func (l *Ledger) Restore(svcs []*corev1.Service) (served []*corev1.Service, foreign int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	sorted := slices.Clone(svcs)
	slices.SortFunc(sorted, OlderFirst)
	cfg := l.cfg.Load()
	for _, svc := range sorted {
		isServed := l.opts.Serves(svc)
		if isServed {
			served = append(served, svc)
		}
		if len(config.CurrentAddresses(svc)) == 0 {
			continue
		}
		switch {
		case isServed:
			l.keep(cfg, svc, nil)
		case svc.Spec.Type == corev1.ServiceTypeLoadBalancer:
			l.holdForeign(svc)
			foreign++
		}
	}
	l.restored = true
	for key := range l.pending {
		l.syncForeign(key)
	}
	clear(l.pending)
	return served, foreign
}

// keep records the addresses of a served Service's status (or of only,
// when not nil) that are still valid for it, and nothing else. Called with
// mu held.
func (l *Ledger) keep(cfg *config.Config, svc *corev1.Service, only []netip.Addr) {
	nsLabels, _ := l.namespaceLabels(svc.Namespace)
	req, err := cfg.Request(svc, nsLabels)
	switch {
	case err == nil:
		// Whatever is still valid, even of a RequireDualStack Service
		// that lost one family: the rest is judged afterwards.
		req.KeepOnly, req.RequireAll = true, false
	case isInvalid(err):
		req = cfg.KeepRequest(svc, nsLabels)
	default:
		return
	}
	if only != nil {
		req.Current, req.Requested = only, nil
	}
	if _, _, err := l.alloc.AssignPartial(req); err == nil {
		l.poolsChanged(nil, l.alloc.Lookup(config.Key(svc)))
	}
}
