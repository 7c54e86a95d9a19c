package ledger

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/config"
)

// ErrNamespaceNotCached means the Service's Namespace is not in the cache
// yet, so its labels (which pools may depend on) are unknown. Judging the
// Service without them could put it into the wrong pool for good; the
// caller retries, and the Namespace's arrival queues the Service again.
var ErrNamespaceNotCached = errors.New("the Service's namespace is not in the cache yet")

// Options wire a Ledger to the implementation using it.
type Options struct {
	// Serves reports whether this implementation serves the Service. Other
	// LoadBalancer Services are foreign: their addresses are held, never
	// handed out, never written.
	Serves func(*corev1.Service) bool
	// Services and Namespaces are read when a Service is judged; a nil
	// Namespaces lister means no namespace labels (tests).
	Services   corelisters.ServiceLister
	Namespaces corelisters.NamespaceLister
	// PoolChanged, if set, is told each pool whose holders changed.
	PoolChanged func(pool string)
	// StatusStaysOnFailure says that a Service that cannot be served
	// keeps showing the addresses its status had (the cloud-provider
	// service controller writes no status when Ensure fails), so they
	// stay held for it rather than being handed to someone else.
	StatusStaysOnFailure bool
	// YieldToForeign says that an address both a served Service and a
	// foreign Service's status show goes to the foreign one: the served
	// Service is moved (and Moved is told), so that two implementations
	// allocating from one pool at the same instant end with distinct
	// addresses. Only one of them may yield: berth-controller does,
	// berth-ccm cannot (the service controller calls it only when one of
	// its Services changes).
	YieldToForeign bool
	// Moved, if set, is told each served Service the ledger moved to
	// another address on its own (YieldToForeign); the caller writes its
	// status.
	Moved func(key string)
}

// Ledger records which Service holds which address. All methods are safe
// for concurrent use; every change happens under one lock, so that an
// address freed by one Service reaches the oldest waiting Service before
// any other Service can be given it.
type Ledger struct {
	opts  Options
	alloc *allocator.Allocator
	cfg   atomic.Pointer[config.Config]

	mu       sync.Mutex
	pools    []*v1alpha1.BerthIPPool
	cluster  config.Cluster
	restored bool
	// pending are foreign syncs asked for before Restore, done by it.
	pending map[string]struct{}
	foreign foreignState
	waiting waitingSet
}

// New returns an empty ledger with no pools.
func New(opts Options) *Ledger {
	l := &Ledger{
		opts:    opts,
		alloc:   allocator.New(),
		pending: map[string]struct{}{},
		foreign: newForeignState(),
		waiting: waitingSet{},
	}
	l.cfg.Store(config.For(nil))
	return l
}

// Outcome is what judging a Service decided.
type Outcome struct {
	// Before and Got are what the Service held before and holds now.
	Before, Got []allocator.Assignment
	// Err says why the Service cannot be served as it is written (a
	// *config.RequestError or an *allocator.Error). Got is then empty,
	// unless Kept.
	Err error
	// Kept is set when Err is an InvalidRequest and Got are the addresses
	// the Service keeps until it is fixed, so a typo costs no address.
	Kept bool
	// Missing are the families the Service wants but did not get, while
	// it got others: the condition must not say Allocated.
	Missing []allocator.Missing
	// Requested are the addresses the Service asked for by name.
	Requested []netip.Addr
	// Wake are other Services given addresses that this change freed;
	// queue them once this Service's status is written.
	Wake []string
}

// Config returns the current pool configuration.
func (l *Ledger) Config() *config.Config { return l.cfg.Load() }

// SetPools validates the pools and makes them the ones addresses come
// from. Holdings are kept as recorded. Once Restore has run, it then, under
// the same lock, holds the addresses of foreign Services that a new or
// grown pool now covers, and offers what the edit freed to the waiting
// Services, oldest first, so that no other Service can take it between.
// It returns the Services so woken; re-judging the rest (holders of an
// address the edit made invalid) is the caller's next step.
func (l *Ledger) SetPools(pools []*v1alpha1.BerthIPPool) (wake []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pools = pools
	return l.configure()
}

// SetCluster sets the ranges the cluster uses (Service and pod ranges,
// node addresses), which no pool hands out, and applies them as SetPools
// applies pools. A Service holding an address the cluster now uses is
// found invalid and moved by the caller's next judgement, like one whose
// address left its pool: Berth must stop announcing an address a node or
// a ClusterIP now has.
func (l *Ledger) SetCluster(c config.Cluster) (wake []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cluster = c
	return l.configure()
}

// configure builds the configuration from the pools and the cluster and
// hands it to the allocator. Called with mu held.
func (l *Ledger) configure() (wake []string) {
	cfg := config.ForCluster(l.pools, l.cluster)
	l.cfg.Store(cfg)
	l.alloc.SetPools(cfg.AllocatorPools())
	if !l.restored || l.opts.Services == nil {
		return nil
	}
	svcs, err := l.opts.Services.List(labels.Everything())
	if err != nil {
		return nil
	}
	for _, svc := range svcs {
		if svc.Spec.Type == corev1.ServiceTypeLoadBalancer && !l.opts.Serves(svc) {
			l.syncForeign(config.Key(svc))
		}
	}
	return l.serveWaiting("", nil)
}

// Invalid returns the served Services holding an address that is no
// longer valid for them (their pool dropped it, reserved it, or the
// cluster uses it now); the caller re-judges them.
func (l *Ledger) Invalid() []string {
	var out []string
	for _, k := range l.alloc.Invalid() {
		if !strings.HasPrefix(k, ForeignPrefix) {
			out = append(out, k)
		}
	}
	return out
}

// Lookup returns what the Service with key holds.
func (l *Ledger) Lookup(key string) []allocator.Assignment { return l.alloc.Lookup(key) }

// Holders returns the identities holding addresses of the pool, foreign
// ones with ForeignPrefix.
func (l *Ledger) Holders(pool string) []string { return l.alloc.Holders(pool) }

// Stats returns the pool's exact counts.
func (l *Ledger) Stats(pool string) (allocator.PoolStats, bool) { return l.alloc.Stats(pool) }

// Assign judges a Service this implementation serves and records the
// result. It fails only with ErrNamespaceNotCached.
func (l *Ledger) Assign(svc *corev1.Service) (Outcome, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	nsLabels, ok := l.namespaceLabels(svc.Namespace)
	if !ok {
		return Outcome{Before: l.alloc.Lookup(config.Key(svc))}, ErrNamespaceNotCached
	}
	out := l.judge(svc, nsLabels)
	out.Wake = l.freed(config.Key(svc), out.Before, out.Got)
	return out, nil
}

// Release frees everything the Service with key holds, as when it is
// deleted or stops being served, and returns what it held and the Services
// woken by the addresses it freed.
func (l *Ledger) Release(key string) (held []allocator.Assignment, wake []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	held = l.alloc.Lookup(key)
	l.waiting.remove(key)
	if len(held) == 0 {
		return nil, nil
	}
	l.alloc.Release(key)
	l.poolsChanged(held, nil)
	return held, l.freed(key, held, nil)
}

// judge runs the Service through config and allocator. Called with mu held.
func (l *Ledger) judge(svc *corev1.Service, nsLabels labels.Set) Outcome {
	key := config.Key(svc)
	// Served now: what it showed before is no longer someone else's. Done
	// under the same lock as the assignment, so no one can take it between.
	l.dropForeign(key)
	cfg := l.cfg.Load()
	out := Outcome{Before: l.alloc.Lookup(key)}
	req, err := cfg.Request(svc, nsLabels)
	var got []allocator.Assignment
	var missing []allocator.Missing
	if err == nil {
		got, missing, err = l.alloc.AssignPartial(req)
	}
	switch {
	case err != nil && isInvalid(err):
		// A typo must not cost a working address: keep what it holds
		// (after a restart, what Restore kept of its status).
		out.Err, out.Got = err, out.Before
		out.Kept = len(out.Got) > 0
		l.waiting.remove(key)
	case err != nil:
		// It holds nothing, so that it never keeps an address from a pool
		// it may no longer use; it waits for one to be freed. Unless its
		// status keeps showing what it had: then that stays taken.
		l.alloc.Release(key)
		if l.opts.StatusStaysOnFailure {
			if hr, _ := cfg.HoldingRequest(svc, key); len(hr.Requested) > 0 {
				_, _ = l.alloc.Assign(hr)
			}
		}
		out.Err = err
		l.waiting.add(svc)
	default:
		out.Got, out.Requested = got, req.Requested
		out.Missing = wanted(req, missing)
		if len(out.Missing) > 0 {
			l.waiting.add(svc)
		} else {
			l.waiting.remove(key)
		}
	}
	l.poolsChanged(out.Before, out.Got)
	return out
}

// wanted keeps the missing families the Service really wants: those it
// asked an address of, and those the pools could serve but not now (full,
// held, in conflict). A PreferDualStack Service whose pools simply have no
// addresses of a family is served in full with the other.
func wanted(req allocator.Request, missing []allocator.Missing) []allocator.Missing {
	var out []allocator.Missing
	for _, m := range missing {
		if AskedFor(req.Requested, m.Family) || m.Err.Reason != allocator.ReasonNoMatchingPool {
			out = append(out, m)
		}
	}
	return out
}

// AskedFor reports whether requested holds an address of family f.
func AskedFor(requested []netip.Addr, f allocator.Family) bool {
	return slices.ContainsFunc(requested, func(a netip.Addr) bool { return a.Is4() == (f == allocator.IPv4) })
}

// freed hands the addresses of before that after no longer has to whoever
// waits for them: first foreign Services whose status shows them, then
// the waiting Services, oldest first. self is the Service that let them go.
// Called with mu held.
func (l *Ledger) freed(self string, before, after []allocator.Assignment) []string {
	addrs := freedAddrs(before, after)
	if len(addrs) == 0 {
		return nil
	}
	l.giveToClaimants(addrs)
	return l.serveWaiting(self, addrs)
}

// serveWaiting re-judges waiting Services, oldest first, until the freed
// addresses are taken (all of them when freed is nil). Called with mu held.
func (l *Ledger) serveWaiting(self string, freed []netip.Addr) []string {
	left := map[netip.Addr]bool{}
	for _, a := range freed {
		left[a] = true
	}
	var wake []string
	for _, key := range l.waiting.oldestFirst() {
		if freed != nil && len(left) == 0 {
			break
		}
		if key == self {
			continue
		}
		svc, err := l.get(key)
		if err != nil || svc == nil || !l.opts.Serves(svc) {
			l.waiting.remove(key)
			continue
		}
		nsLabels, ok := l.namespaceLabels(svc.Namespace)
		if !ok {
			continue
		}
		out := l.judge(svc, nsLabels)
		if slices.Equal(out.Before, out.Got) {
			continue
		}
		wake = append(wake, key)
		for _, as := range out.Got {
			delete(left, as.Addr)
		}
		if more := freedAddrs(out.Before, out.Got); len(more) > 0 {
			l.giveToClaimants(more)
			for _, a := range more {
				if freed != nil {
					left[a] = true
				}
			}
		}
	}
	return wake
}

func freedAddrs(before, after []allocator.Assignment) []netip.Addr {
	var out []netip.Addr
	for _, as := range before {
		if !hasAddr(after, as.Addr) {
			out = append(out, as.Addr)
		}
	}
	return out
}

func hasAddr(as []allocator.Assignment, a netip.Addr) bool {
	return slices.ContainsFunc(as, func(x allocator.Assignment) bool { return x.Addr == a })
}

func isInvalid(err error) bool {
	var re *config.RequestError
	if errors.As(err, &re) {
		return re.Reason == v1alpha1.ReasonInvalidRequest
	}
	return allocator.ReasonOf(err) == allocator.ReasonInvalidRequest
}

// poolsChanged tells the caller about every pool whose holders changed.
func (l *Ledger) poolsChanged(before, after []allocator.Assignment) {
	if l.opts.PoolChanged == nil || slices.Equal(before, after) {
		return
	}
	seen := map[string]bool{}
	for _, a := range slices.Concat(before, after) {
		if !seen[a.Pool] {
			seen[a.Pool] = true
			l.opts.PoolChanged(a.Pool)
		}
	}
}

// get reads a Service from the lister by key; nil if it is gone.
func (l *Ledger) get(key string) (*corev1.Service, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil, fmt.Errorf("split key %q: %w", key, err)
	}
	if l.opts.Services == nil {
		return nil, nil
	}
	svc, err := l.opts.Services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return svc, err
}

// namespaceLabels returns the labels of the namespace, and false if it is
// not in the cache.
func (l *Ledger) namespaceLabels(ns string) (labels.Set, bool) {
	if l.opts.Namespaces == nil {
		return nil, true
	}
	obj, err := l.opts.Namespaces.Get(ns)
	if err != nil {
		return nil, false
	}
	return obj.Labels, true
}
