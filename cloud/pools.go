package cloud

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/go-logr/logr"
	v1 "k8s.io/api/core/v1"
	"k8s.io/cloud-provider/api"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/ledger"
)

// readyWait bounds how long one call waits for the initial load before it
// asks the service controller to retry.
const readyWait = 30 * time.Second

// Pools is the "pools" backend: addresses from BerthIPPools, decided by the same
// ledger (config, allocator, replay, foreign holdings) as berth-controller.
//
// Restart stability: before it answers any call, Start replays every
// Service that already has addresses, oldest first, into the ledger:
// every valid address is restored before any Service may be given a new
// one, and every other implementation's addresses inside the pools are held
// so they are never handed out twice. After that the Service informer keeps
// the other Services' holdings current.
type Pools struct {
	log    logr.Logger
	ledger *ledger.Ledger

	ready   chan struct{}
	readyMu sync.Mutex
	initErr error
}

var _ Backend = (*Pools)(nil)

// NewPools returns a pools backend that answers nothing until Start (or
// Restore, in tests) has loaded the current state.
func NewPools(log logr.Logger) *Pools {
	return &Pools{log: log, ready: make(chan struct{})}
}

// Restore loads the pools and replays the Services' current addresses
// (ledger.Restore), then starts answering. Start calls it once the caches
// have synced; tests call it without Start.
func (p *Pools) Restore(pools []*v1alpha1.BerthIPPool, svcs []*v1.Service) {
	if p.ledger == nil {
		p.ledger = ledger.New(ledger.Options{Serves: serves, StatusStaysOnFailure: true})
	}
	p.ledger.SetPools(pools)
	served, foreign := p.ledger.Restore(svcs)
	p.log.Info("Replayed addresses from Service status", "served", len(served), "other", foreign)
	p.readyMu.Lock()
	defer p.readyMu.Unlock()
	select {
	case <-p.ready:
	default:
		close(p.ready)
	}
}

// fail records why the backend cannot start; every call returns it.
func (p *Pools) fail(err error) {
	p.log.Error(err, "Pools backend cannot start")
	p.readyMu.Lock()
	defer p.readyMu.Unlock()
	p.initErr = err
	select {
	case <-p.ready:
	default:
		close(p.ready)
	}
}

func (p *Pools) waitReady(ctx context.Context) error {
	t := time.NewTimer(readyWait)
	defer t.Stop()
	select {
	case <-p.ready:
		p.readyMu.Lock()
		defer p.readyMu.Unlock()
		return p.initErr
	case <-ctx.Done():
		return fmt.Errorf("wait for BerthIPPools and Services to load: %w", ctx.Err())
	case <-t.C:
		return api.NewRetryError("berth-ccm is still loading BerthIPPools and existing Service addresses", 5*time.Second)
	}
}

// serves reports whether the plugin, rather than some other implementation,
// serves the Service: the service controller's rule (LoadBalancer, no
// class) minus what the add-on controller has claimed.
func serves(svc *v1.Service) bool {
	return svc.Spec.Type == v1.ServiceTypeLoadBalancer && refusal(svc) == nil
}

// Get reports the addresses the ledger holds for the Service: it exists
// exactly when there are some.
func (p *Pools) Get(ctx context.Context, svc *v1.Service) (*v1.LoadBalancerStatus, bool, error) {
	if err := p.waitReady(ctx); err != nil {
		return nil, false, err
	}
	got := p.ledger.Lookup(config.Key(svc))
	if len(got) == 0 {
		return nil, false, nil
	}
	return p.status(got), true, nil
}

// Ensure allocates, or confirms, the Service's addresses, judged exactly as
// berth-controller judges them. On failure the service controller keeps
// the status it wrote before, so a bad edit never costs a working address.
// A Service that gets some but not all of what it asked for is refused
// too (the service controller shows the message as an Event and retries),
// except when only a family its PreferDualStack policy merely prefers is
// full: then it is served with what it got, as the policy allows.
func (p *Pools) Ensure(ctx context.Context, svc *v1.Service, _ []*v1.Node) (*v1.LoadBalancerStatus, error) {
	if err := p.waitReady(ctx); err != nil {
		return nil, err
	}
	out, err := p.ledger.Assign(svc)
	if err != nil {
		return nil, api.NewRetryError(err.Error(), time.Second)
	}
	if out.Err != nil {
		return nil, fmt.Errorf("berth: cannot serve this Service (%s): %w", reasonOf(out.Err), out.Err)
	}
	for _, m := range out.Missing {
		if ledger.AskedFor(out.Requested, m.Family) {
			return nil, fmt.Errorf("berth: requested address not given (%s): %w", m.Err.Reason, m.Err)
		}
		p.log.Info("Service served with one family only", "service", config.Key(svc), "missing", m.Family.String(), "why", m.Err.Msg)
	}
	logr.FromContextOrDiscard(ctx).V(2).Info("Ensured", "service", config.Key(svc), "addresses", addrs(out.Got))
	return p.status(out.Got), nil
}

func reasonOf(err error) string {
	var re *config.RequestError
	if errors.As(err, &re) {
		return re.Reason
	}
	return string(allocator.ReasonOf(err))
}

// Update does nothing: pool addresses do not depend on the node set; the
// speaker follows nodes itself.
func (p *Pools) Update(context.Context, *v1.Service, []*v1.Node) error { return nil }

// Delete releases the Service's addresses; idempotent. A waiting Service
// the freed address now belongs to gets it on its next sync.
func (p *Pools) Delete(ctx context.Context, svc *v1.Service) error {
	if err := p.waitReady(ctx); err != nil {
		return err
	}
	p.ledger.Release(config.Key(svc))
	return nil
}

// status turns assignments into ingress entries, with each pool's ipMode.
func (p *Pools) status(got []allocator.Assignment) *v1.LoadBalancerStatus {
	return &v1.LoadBalancerStatus{Ingress: p.ledger.Config().Ingress(got)}
}

// addrs is for log messages.
func addrs(got []allocator.Assignment) []netip.Addr {
	out := make([]netip.Addr, len(got))
	for i, a := range got {
		out[i] = a.Addr
	}
	return out
}
