package cloud

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// readiness is what /readyz of berth-ccm reports; see Cloud.Ready.
type readiness struct {
	mu sync.Mutex
	// leading is set when the controller manager initializes the plugin,
	// which it does only once it holds the leader Lease (or at the start,
	// without leader election).
	leading bool
	// backend reports the started backend's readiness; nil while
	// Initialize runs.
	backend func() error
}

func (r *readiness) startLeading() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.leading = true
}

func (r *readiness) started(backend func() error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.backend = backend
}

// Ready is berth-ccm's readiness, with berth-controller's semantics: a
// standby replica (not initialized: it does not hold the Lease) is ready to
// take over; the leader is ready once its backend has loaded what it
// serves from (the pools backend: BerthIPPools, Services and Namespaces, and the
// addresses replayed from Services' status; the aws backend: its Node,
// Service and EndpointSlice caches). nil means ready; the error says what
// is missing.
func (c *Cloud) Ready(context.Context) error {
	c.ready.mu.Lock()
	leading, backend := c.ready.leading, c.ready.backend
	c.ready.mu.Unlock()
	switch {
	case !leading:
		return nil
	case backend == nil:
		return errors.New("leading, starting the backend")
	}
	return backend()
}

// Ready reports whether the pools backend has loaded the pools and
// replayed the Services' addresses.
func (p *Pools) Ready() error {
	select {
	case <-p.ready:
	default:
		return errors.New("leading, still loading BerthIPPools and replaying the addresses in Services' status")
	}
	p.readyMu.Lock()
	defer p.readyMu.Unlock()
	if p.initErr != nil {
		return fmt.Errorf("the pools backend cannot start: %w", p.initErr)
	}
	return nil
}

// Healthy fails while a call into the backend (EnsureLoadBalancer and the
// others) has run for longer than lbStallLimit, for /healthz: the
// controller manager's own /healthz does not see a plugin that hangs.
func (c *Cloud) Healthy(context.Context) error { return c.lb.stall.Check() }
