package speaker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/berthlb/berth/bgp"
	berthlisters "github.com/berthlb/berth/client/listers/api/v1alpha1"
	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/internal/serve"
	"github.com/berthlb/berth/nodeport"
)

// bgpSpeaker is what the speaker needs of the BGP back end.
type bgpSpeaker interface {
	SetPeers(ctx context.Context, peers []bgp.Peer) error
	Advertise(ctx context.Context, peer string, advs []bgp.Advertisement) error
	Status(ctx context.Context) ([]bgp.PeerStatus, error)
}

// forwarder is what the speaker needs of the nftables back end.
type forwarder interface {
	Sync(ctx context.Context, rules []nodeport.Rule) error
	Check(ctx context.Context) (bool, error)
	Cleanup(ctx context.Context) error
	// Drain sets the addresses whose unknown mid-stream TCP packets are
	// routed rather than forwarded (nodeport.Forwarder.Drain).
	Drain(ctx context.Context, addrs []netip.Addr) error
	// Members restricts the membership port to the Nodes' addresses
	// (nodeport.Forwarder.Members).
	Members(ctx context.Context, port nodeport.MembersPort, addrs []netip.Addr) error
}

// secretGetter reads one key of a Secret in Berth's namespace, by name.
type secretGetter interface {
	get(ctx context.Context, name, key string) (string, bool, error)
}

// problemReporter tells users about a problem with one of their objects.
type problemReporter interface {
	report(ctx context.Context, object, problem string)
}

// listers are the caches the speaker plans from.
type listers struct {
	nodes    corelisters.NodeLister
	services corelisters.ServiceLister
	slices   discoverylisters.EndpointSliceLister
	// namespaces is nil in tests that need no namespaceSelector.
	namespaces corelisters.NamespaceLister
	pools      berthlisters.BerthIPPoolLister
	peers      berthlisters.BerthBGPPeerLister
	bgpAdvs    berthlisters.BerthBGPAdvertisementLister
	l2Advs     berthlisters.BerthL2AdvertisementLister
	// statuses are the nodes' BerthNodeStatus objects, whose withheld
	// addresses layer-2 ownership leaves out; nil without layer 2.
	statuses berthlisters.BerthNodeStatusLister
}

// Speaker keeps one node's announcements and forwarding in line with the
// cluster.
type Speaker struct {
	node string
	// routerID, if valid, is the router ID the speaker was started with.
	routerID netip.Addr
	listers  listers
	synced   []cache.InformerSynced
	bgp      bgpSpeaker
	bfd      bfdSessions // nil without BGP (bfd.go)
	fwd      forwarder
	// memberTable, without forwarding but with layer 2, is the table
	// that only restricts the membership port (nodeport.NewMembersOnly);
	// nil otherwise.
	memberTable forwarder
	// membersPort is the layer-2 membership port the forwarding table
	// (or memberTable) restricts to node addresses; zero without layer 2.
	membersPort nodeport.MembersPort
	// routes holds the host routes of drains; nil without forwarding or
	// layer 2.
	routes   drainRouter
	secrets  secretGetter
	problems problemReporter
	owners   ownerEvents
	metrics  *Metrics
	// fwdEvents tells users about forwarding failures of their Services.
	fwdEvents forwardingEvents
	// status is used only by reportStatus.
	status nodeStatusState
	// peerConfigs is this node's view of its peers' configuration, from
	// the last sync (guarded by mu).
	peerConfigs map[string]peerConfig
	queue       workqueue.TypedRateLimitingInterface[string]
	// linkLocal finds interface peers' addresses; nil fails them all.
	linkLocal linkLocalResolver
	// announceLinkLocal sends the node's Router Advertisements for its
	// interface peers; nil sends none.
	announceLinkLocal linkLocalAnnouncer
	// neighborRetry is the back-off of syncs while an interface peer's
	// neighbor is not found (ifpeers.go); used by the sync loop only.
	neighborRetry time.Duration

	mu       sync.Mutex
	applied  map[string]bgp.Peer // peers last configured, by name
	lastPlan *Plan
	// announced is the plan as announced: lastPlan without the withheld
	// addresses.
	announced *Plan
	// withheld are the addresses the node does not announce because
	// their forwarding is not in place, with why, from the last sync;
	// withheldBy the Services holding each.
	withheld   map[netip.Addr]string
	withheldBy map[netip.Addr][]string
	// stranded are the layer-2 addresses this node withholds that no
	// node answers for (strandedL2), from the last sync; only the sync
	// loop touches it.
	stranded map[netip.Addr]L2Address
	// drainFor is Options.Drain.
	drainFor time.Duration
	// forwarded says the forwarding table exists; written by the sync
	// loop, read by the drift checker's goroutine too.
	forwarded atomic.Bool
	// keepTable is when this node may delete its forwarding table after
	// handing addresses over: deleting its NAT chains would stop the
	// translation of the connections the new owner drains to it.
	keepTable time.Time
	// l2 is set once the layer-2 membership runs; nil means layer 2 is
	// off (or not up yet) and the node answers for nothing.
	l2 *l2State
	// wantL2 says layer 2 is on, so /readyz waits for the membership.
	wantL2 bool
	// readiness is what the sync loop tells /readyz.
	readiness readiness
	// stall tells /healthz whether a sync is stuck.
	stall *serve.Stall
}

const syncKey = "sync"

func (s *Speaker) enqueue(any) { s.queue.Add(syncKey) }

func (s *Speaker) handlers() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    s.enqueue,
		UpdateFunc: func(_, obj any) { s.enqueue(obj) },
		DeleteFunc: s.enqueue,
	}
}

// Run waits for the caches and then keeps the node in line until ctx ends.
// Every change recomputes the whole plan; the queue's rate limiter bounds
// how often that happens.
func (s *Speaker) Run(ctx context.Context, driftCheck, statusEvery time.Duration) error {
	defer utilruntime.HandleCrash()
	defer s.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		return fmt.Errorf("wait for caches: %w", ctx.Err())
	}
	s.readiness.mu.Lock()
	s.readiness.started = time.Now()
	s.readiness.mu.Unlock()
	s.queue.Add(syncKey)
	go wait.UntilWithContext(ctx, s.checkDrift, driftCheck)
	go wait.UntilWithContext(ctx, s.checkNeighbors, neighborRecheck)
	go wait.UntilWithContext(ctx, s.reportStatus, statusEvery)
	go func() {
		<-ctx.Done()
		s.queue.ShutDown()
	}()
	for {
		key, quit := s.queue.Get()
		if quit {
			return nil
		}
		end := s.stall.Begin()
		err := s.sync(ctx)
		end()
		s.readiness.observe(err)
		s.metrics.observeSyncResult(err)
		if err != nil {
			logr.FromContextOrDiscard(ctx).Error(err, "Sync failed; will retry")
			s.queue.AddRateLimited(key)
		} else {
			s.queue.Forget(key)
		}
		s.queue.Done(key)
	}
}

// sync computes the plan and applies it: layer 2, then peers and routes,
// then forwarding. Each back end applies only differences, and each part
// is applied whatever happened to the others: a failure keeps that part's
// last good state, is reported on the object it concerns, and makes the
// sync retried.
func (s *Speaker) sync(ctx context.Context) error {
	start := time.Now()
	snap, err := s.snapshot(ctx)
	if err != nil {
		return err
	}
	plan := Compute(snap)
	for obj, problem := range plan.Problems {
		s.problems.report(ctx, obj, problem)
	}
	s.mu.Lock()
	st, withheld := s.l2, s.withheld
	s.mu.Unlock()
	// Layer 2 first: a membership change must move addresses within the
	// failover budget, whatever BGP and nftables take. It withholds what
	// the last sync could not forward; forwarding comes before BGP, so
	// that BGP announces only what is forwarded now.
	var (
		answering map[netip.Addr]bool
		draining  map[netip.Addr]netip.Addr
		errs      []error
	)
	if st != nil {
		answering = s.applyL2(ctx, st, snap, withholding(plan, withheld))
		draining = drainTargets(st.drains)
		s.reportStranded(ctx, plan)
	}
	now := map[netip.Addr]string{}
	if s.fwd != nil {
		var err error
		now, err = s.applyForwarding(ctx, snap, plan, answering, draining)
		s.metrics.observeForwarding(err)
		errs = append(errs, err)
		s.reportWithheld(ctx, snap, withheld, now)
		s.metrics.withheld.Set(float64(len(now)))
		if !maps.Equal(withheld, now) {
			// Layer 2 catches up at once.
			s.queue.Add(syncKey)
		}
	} else if s.memberTable != nil {
		errs = append(errs, s.applyMembers(ctx, plan))
	}
	announced := withholding(plan, now)
	var applyProblems map[string]string
	if s.bgp != nil {
		var err error
		applyProblems, err = s.applyBGP(ctx, announced)
		s.reportPeerProblems(ctx, applyProblems)
		errs = append(errs, err, s.applyBFD(ctx, snap))
	}
	s.mu.Lock()
	s.lastPlan, s.announced, s.withheld, s.withheldBy = plan, announced, now, holdersOf(snap, now)
	s.peerConfigs = peerConfigs(snap, plan, applyProblems)
	s.mu.Unlock()
	s.metrics.observeSync(plan, time.Since(start))
	return errors.Join(errs...)
}

// applyForwarding programs the plan's rules, plus those of addresses still
// answered on layer 2 during a handover: a cordoned owner keeps delivering
// the traffic that reaches it until the new owner has taken over. It also
// programs the drains, each address's host route and drain set element, and
// keeps the table of a node that handed addresses over for as long as the
// new owner may drain to it. It returns the addresses whose forwarding is
// not in place (see unforwarded), with why.
func (s *Speaker) applyForwarding(ctx context.Context, snap Snapshot, plan *Plan, answering map[netip.Addr]bool, draining map[netip.Addr]netip.Addr) (map[netip.Addr]string, error) {
	rules, err := s.programForwarding(ctx, snap, plan, answering, draining)
	return unforwarded(rules, err), err
}

// programForwarding does applyForwarding's work and returns the rules it
// programmed.
func (s *Speaker) programForwarding(ctx context.Context, snap Snapshot, plan *Plan, answering map[netip.Addr]bool, draining map[netip.Addr]netip.Addr) ([]nodeport.Rule, error) {
	rules := plan.Forward
	handover := map[netip.Addr]bool{}
	for a := range answering {
		if !slices.Contains(plan.L2Owned, a) {
			handover[a] = true
		}
	}
	if len(handover) > 0 {
		rules = append(slices.Clone(rules), plan.forwarding(snap, handover, false)...)
	}
	if s.routes != nil {
		// The routes before the drain set, so that a packet exempt
		// from the rewrite has a route to the old owner.
		if err := s.routes.Set(draining); err != nil {
			return rules, fmt.Errorf("drain routes: %w", err)
		}
	}
	addrs := slices.Collect(maps.Keys(draining))
	slices.SortFunc(addrs, netip.Addr.Compare)
	if err := s.fwd.Drain(ctx, addrs); err != nil {
		return rules, fmt.Errorf("drain: %w", err)
	}
	if err := s.fwd.Members(ctx, s.membersPort, plan.Members); err != nil {
		return rules, fmt.Errorf("membership port: %w", err)
	}
	now := time.Now()
	if len(handover) > 0 && s.drainFor > 0 {
		s.keepTable = now.Add(s.drainFor)
		s.queue.AddAfter(syncKey, s.drainFor+10*time.Millisecond)
	}
	// With layer 2 the table also guards the membership port, so an
	// ineligible node keeps it, without rules.
	if !plan.Eligible && len(rules) == 0 && !now.Before(s.keepTable) && s.membersPort.Port == 0 {
		if s.forwarded.Load() {
			logr.FromContextOrDiscard(ctx).Info("Node not eligible; removing forwarding", "why", plan.Why)
			if err := s.fwd.Cleanup(ctx); err != nil {
				return nil, fmt.Errorf("remove forwarding: %w", err)
			}
			s.forwarded.Store(false)
		}
		return nil, nil
	}
	err := s.fwd.Sync(ctx, rules)
	// Rules left out (invalid, or refused by the kernel) leave the rest
	// in the table: it exists, and the error makes the sync retry them.
	if err == nil || nodeport.IsRefused(err) || nodeport.IsInvalidRule(err) {
		s.forwarded.Store(true)
	}
	if err != nil {
		return rules, fmt.Errorf("sync forwarding: %w", err)
	}
	return rules, nil
}

// applyMembers programs the table of a speaker that forwards nothing: the
// membership port, restricted to the Nodes' addresses.
func (s *Speaker) applyMembers(ctx context.Context, plan *Plan) error {
	if err := s.memberTable.Members(ctx, s.membersPort, plan.Members); err != nil {
		return fmt.Errorf("membership port: %w", err)
	}
	if err := s.memberTable.Sync(ctx, nil); err != nil {
		return fmt.Errorf("membership table: %w", err)
	}
	s.forwarded.Store(true)
	return nil
}

// snapshot reads everything the plan depends on from the caches, and the
// peers' passwords from their Secrets by name.
func (s *Speaker) snapshot(ctx context.Context) (Snapshot, error) {
	var snap Snapshot
	s.mu.Lock()
	st := s.l2
	s.mu.Unlock()
	// The view is read before the caches, so that a change signalled
	// meanwhile causes another sync rather than being missed.
	if st != nil {
		snap.L2 = st.view()
	}
	node, err := s.listers.nodes.Get(s.node)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return snap, fmt.Errorf("get node: %w", err)
	default:
		snap.Node = node
	}
	if snap.Services, err = s.listers.services.List(labels.Everything()); err != nil {
		return snap, err
	}
	if snap.Slices, err = s.listers.slices.List(labels.Everything()); err != nil {
		return snap, err
	}
	if snap.Pools, err = s.listers.pools.List(labels.Everything()); err != nil {
		return snap, err
	}
	if snap.Peers, err = s.listers.peers.List(labels.Everything()); err != nil {
		return snap, err
	}
	if snap.BGPAdvs, err = s.listers.bgpAdvs.List(labels.Everything()); err != nil {
		return snap, err
	}
	if s.listers.l2Advs != nil {
		if snap.L2Advs, err = s.listers.l2Advs.List(labels.Everything()); err != nil {
			return snap, err
		}
	}
	if snap.Nodes, err = s.listers.nodes.List(labels.Everything()); err != nil {
		return snap, err
	}
	if s.listers.statuses != nil {
		sts, err := s.listers.statuses.List(labels.Everything())
		if err != nil {
			return snap, err
		}
		snap.CannotForward = cannotForward(sts)
	}
	if s.listers.namespaces != nil {
		nss, err := s.listers.namespaces.List(labels.Everything())
		if err != nil {
			return snap, err
		}
		snap.Namespaces = make(map[string]labels.Set, len(nss))
		for _, ns := range nss {
			snap.Namespaces[ns.Name] = config.NamespaceLabels(ns)
		}
	}
	slices.SortFunc(snap.Services, func(a, b *corev1.Service) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
	snap.RouterID = s.routerID
	s.readPasswords(ctx, &snap)
	return snap, nil
}

// readPasswords reads the peers' passwords into snap. A Secret that cannot
// be read is the problem of the peers that name it (their current sessions
// are kept), never a reason to stop configuring everything else; through
// an API outage the password read last is used.
func (s *Speaker) readPasswords(ctx context.Context, snap *Snapshot) {
	snap.Passwords, snap.PasswordErrors = map[string]string{}, map[string]string{}
	for _, p := range snap.Peers {
		ref := p.Spec.PasswordSecretRef
		if ref == nil {
			continue
		}
		v, ok, err := s.secrets.get(ctx, ref.Name, keyOf(ref))
		// Nothing watches Secrets: look again once the cached answer
		// expires, so that a Secret created, changed, deleted or made
		// readable is noticed within secretTTL.
		s.queue.AddAfter(syncKey, secretTTL)
		switch {
		case apierrors.IsForbidden(err):
			// The speaker's Role names the Secrets it may read.
			snap.PasswordErrors[SecretKey(ref)] = "the speaker may not read it; add it to the resourceNames of the speaker's Secrets Role"
		case errors.Is(err, errStale):
			logr.FromContextOrDiscard(ctx).Info("Cannot read a password Secret; using the answer read last", "peer", p.Name, "err", err.Error())
			if ok {
				snap.Passwords[SecretKey(ref)] = v
			}
		case err != nil:
			snap.PasswordErrors[SecretKey(ref)] = fmt.Sprintf("cannot read it: %v", err)
		case ok:
			snap.Passwords[SecretKey(ref)] = v
		}
	}
}

// checkDrift asks the forwarder whether someone changed its table, and
// repairs it if so.
func (s *Speaker) checkDrift(ctx context.Context) {
	table := s.fwd
	if table == nil {
		table = s.memberTable
	}
	if table == nil || !s.forwarded.Load() {
		return
	}
	drifted, err := table.Check(ctx)
	if err != nil {
		logr.FromContextOrDiscard(ctx).Error(err, "Check forwarding table")
		return
	}
	if drifted {
		logr.FromContextOrDiscard(ctx).Info("Forwarding table was changed by someone else; repairing it")
		s.metrics.drifts.Inc()
		s.queue.Add(syncKey)
	}
}

// LastPlan returns the plan applied last, for tests and debugging.
func (s *Speaker) LastPlan() *Plan {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastPlan == nil {
		return nil
	}
	c := *s.lastPlan
	c.Routes = maps.Clone(c.Routes)
	return &c
}
