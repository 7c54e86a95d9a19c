package speaker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/berthlb/berth/bgp"
	"github.com/berthlb/berth/client/clientset/versioned"
	berthinformers "github.com/berthlb/berth/client/informers/externalversions"
	"github.com/berthlb/berth/internal/cli"
	"github.com/berthlb/berth/internal/serve"
	"github.com/berthlb/berth/l2"
	"github.com/berthlb/berth/nodeport"
)

// Options configure a speaker process; cmd/berth-speaker fills them from
// flags.
type Options struct {
	// Kubeconfig is the path of a kubeconfig file; empty means in-cluster.
	Kubeconfig string
	// NodeName is the node this speaker runs on.
	NodeName string
	// Namespace is Berth's namespace, where BGP password Secrets live.
	Namespace string
	// BGP enables the BGP back end.
	BGP bool
	// RouterID is the BGP identifier. When invalid (unset), each sync
	// reads it from the Node object: its router ID annotation, else its
	// first IPv4 InternalIP (or ExternalIP), else a hash of its name (see
	// identityOf). Nothing waits for it.
	RouterID netip.Addr
	// Forwarding enables nftables forwarding to NodePorts.
	Forwarding bool
	// Table is the nftables table (family inet) the speaker owns.
	Table string
	// CleanupOnExit removes the forwarding table on a clean shutdown (for
	// uninstalling); otherwise rules stay so that traffic keeps flowing
	// across a restart.
	CleanupOnExit bool
	// LifecycleConfigMap names the ConfigMap in Namespace that marks an
	// uninstall (package internal/lifecycle), upon which the speaker
	// removes its node's state and idles; empty ignores uninstalls.
	LifecycleConfigMap string
	// DriftCheck is how often the forwarding table is checked for changes
	// made by someone else.
	DriftCheck time.Duration
	// MetricsAddr serves /metrics, /healthz and /readyz; empty disables.
	MetricsAddr string
	// MetricsSecure serves them over HTTPS (a self-signed certificate) and
	// /metrics only to a bearer token whose user may get /metrics, as the
	// API server's TokenReview and SubjectAccessReview say. The speaker
	// runs on the host network: otherwise anyone who reaches a node's
	// address reads its metrics.
	MetricsSecure bool
	// L2 enables layer-2 announcement (ARP and NDP).
	L2 bool
	// MemberlistPort is the UDP and TCP port of the speakers' membership.
	MemberlistPort int
	// MemberlistSecret names the Secret in Namespace whose key
	// "secretkey" authenticates the membership.
	MemberlistSecret string
	// Handover is how long a node keeps answering for an address after a
	// planned move away from it.
	Handover time.Duration
	// L2Tiebreak names the coordination.k8s.io Lease in Namespace that
	// lets exactly half of an even layer-2 membership answer (two-node
	// clusters, even splits); empty disables it.
	L2Tiebreak string
	// L2Members names the coordination.k8s.io Lease in Namespace that
	// holds the layer-2 membership record (docs/layer2.md, "Leaving dead
	// nodes out of the quorum"); empty: no record, every known node
	// votes until its Node is deleted.
	L2Members string
	// L2ForgetAfter is how long a Node must not have been Ready before
	// the speakers leave it out of the layer-2 quorum; 0: never (the
	// record is still read and followed).
	L2ForgetAfter time.Duration
	// L2Voters lets the membership record name the voters: every node in
	// a layer-2 cluster of up to 7, 5 in a larger one, to which alone the
	// others send heartbeats (docs/layer2.md, "Named voters, and a small
	// voter set"). A new node votes only once a record names it. It takes
	// effect with L2Members, once every speaker reads heartbeat version 4;
	// on by default.
	L2Voters bool
	// StatusInterval is the least time between two writes of the node's
	// BerthNodeStatus.
	StatusInterval time.Duration
	// Drain is how long the new owner of an address, after a planned move,
	// routes the mid-stream TCP packets of connections it does not know to
	// the old owner (with forwarding on); 0 disables.
	Drain time.Duration
}

// DefaultOptions returns the options a deployment starts from.
func DefaultOptions() Options {
	return Options{
		Namespace:        "berth-system",
		BGP:              true,
		Forwarding:       true,
		Table:            nodeport.DefaultTable,
		DriftCheck:       10 * time.Second,
		MetricsAddr:      ":9631",
		L2:               true,
		MemberlistPort:   l2.DefaultMembersPort,
		MemberlistSecret: "berth-memberlist",
		Handover:         DefaultHandover,
		Drain:            DefaultDrain,
		L2Tiebreak:       DefaultL2Tiebreak,
		L2Members:        DefaultL2Members,
		L2ForgetAfter:    DefaultL2ForgetAfter,
		L2Voters:         true,
		StatusInterval:   DefaultStatusInterval,
	}
}

// Run runs a speaker until ctx is done.
func Run(ctx context.Context, opts Options) error {
	if opts.NodeName == "" {
		return errors.New("the node name is required (--node-name or NODE_NAME)")
	}
	if opts.LifecycleConfigMap != "" {
		return runUntilUninstall(ctx, opts)
	}
	log := logr.FromContextOrDiscard(ctx).WithName("speaker").WithValues("node", opts.NodeName)
	ctx = logr.NewContext(ctx, log)
	_, kube, berth, err := cli.Clients(opts.Kubeconfig, 20, 40, "berth-speaker")
	if err != nil {
		return err
	}
	reg := serve.NewRegistry()
	s := newSpeaker(opts, kube, berth, reg)
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	defer broadcaster.Shutdown()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	events := newEventReporter(broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "berth-speaker", Host: opts.NodeName}))
	events.uid = s.objectUID
	s.problems, s.owners, s.fwdEvents, s.status.events = events, events, events, events
	if opts.MetricsAddr != "" {
		stop, err := serveMetrics(ctx, opts, kube, reg, s.Ready, s.Healthy)
		if err != nil {
			return err
		}
		defer stop()
	}
	if opts.BGP {
		stop, err := s.startBGP(ctx, opts)
		if err != nil {
			return err
		}
		defer stop()
		defer s.startBFD(ctx)()
	}
	if opts.Forwarding || opts.L2 {
		stop, err := s.startForwarding(ctx, opts, reg)
		if err != nil {
			return err
		}
		defer stop()
	}
	kubeInf, berthInf, err := s.watch(opts, kube, berth)
	if err != nil {
		return err
	}
	kubeInf.Start(ctx.Done())
	berthInf.Start(ctx.Done())
	defer kubeInf.Shutdown()
	defer berthInf.Shutdown()
	log.Info("Speaker starting", "bgp", opts.BGP, "forwarding", opts.Forwarding, "l2", opts.L2)
	if opts.L2 {
		// Waits for the membership's Leave on the way out, so that the
		// others take over at once rather than after failure detection.
		var tie l2.TieStore
		if opts.L2Tiebreak != "" {
			tie = &leaseTieStore{leases: kube.CoordinationV1().Leases(opts.Namespace), name: opts.L2Tiebreak}
		}
		var record *leaseRecordStore
		if opts.L2Members != "" {
			record = &leaseRecordStore{leases: kube.CoordinationV1().Leases(opts.Namespace), name: opts.L2Members}
		}
		defer s.runL2(ctx, opts, tie, record, events)()
	}
	err = s.Run(ctx, opts.DriftCheck, 2*time.Second)
	s.stopDraining(ctx)
	return err
}

// serveMetrics serves the metrics and health endpoints (see
// Options.MetricsSecure).
func serveMetrics(ctx context.Context, opts Options, kube kubernetes.Interface, reg *prometheus.Registry, ready, healthy func(context.Context) error) (stop func(), err error) {
	cfg := serve.Config{Addr: opts.MetricsAddr, Registry: reg, Ready: ready, Healthy: healthy}
	if opts.MetricsSecure {
		cfg.Auth = serve.NewAPIAuth(kube.AuthenticationV1().TokenReviews(), kube.AuthorizationV1().SubjectAccessReviews(), 0)
		cfg.TLS = true
	}
	return serve.Serve(ctx, cfg)
}

// newSpeaker returns a speaker with its API clients, before any back end
// starts.
func newSpeaker(opts Options, kube kubernetes.Interface, berth versioned.Interface, reg prometheus.Registerer) *Speaker {
	m := NewMetrics(reg)
	s := &Speaker{
		wantL2:   opts.L2,
		node:     opts.NodeName,
		metrics:  m,
		stall:    serve.NewStall("sync", syncStallLimit),
		applied:  map[string]bgp.Peer{},
		drainFor: opts.Drain,
		status: nodeStatusState{
			writer:   &apiNodeStatus{client: berth, node: opts.NodeName},
			interval: opts.StatusInterval,
		},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedMaxOfRateLimiter(
				workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 30*time.Second),
				// Bound whole-plan recomputations even under a storm of events.
				&workqueue.TypedBucketRateLimiter[string]{Limiter: rate.NewLimiter(rate.Limit(20), 5)},
			),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "speaker", MetricsProvider: m.queues}),
	}
	// A Secret that changed is applied at once, not at the next sync.
	s.secrets = newCachedSecrets(&apiSecrets{client: kube.CoreV1().Secrets(opts.Namespace)}, secretTTL, func() { s.queue.Add(syncKey) })
	return s
}

// startBGP starts the BGP back end; stop ends its sessions. It does not
// wait for anything: each peer's router ID comes with the plan.
func (s *Speaker) startBGP(ctx context.Context, opts Options) (stop func(), err error) {
	log := logr.FromContextOrDiscard(ctx)
	s.routerID = opts.RouterID
	srv, err := bgp.New(ctx, bgp.Config{RouterID: opts.RouterID})
	if err != nil {
		return nil, fmt.Errorf("start BGP: %w", err)
	}
	s.bgp = srv
	s.linkLocal, s.announceLinkLocal = bgp.LinkLocalNeighbor, bgp.AnnounceLinkLocal
	return func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := srv.Stop(stopCtx); err != nil {
			log.Error(err, "Stop BGP")
		}
	}, nil
}

// startForwarding opens the nftables back end; stop removes the table if
// opts.CleanupOnExit says so. Without forwarding but with layer 2 the table
// only restricts the membership port (nodeport.NewMembersOnly).
func (s *Speaker) startForwarding(ctx context.Context, opts Options, reg prometheus.Registerer) (stop func(), err error) {
	nft, err := nodeport.NewNFT(nodeport.NFTOptions{Table: opts.Table})
	if err != nil {
		return nil, err
	}
	if opts.L2 {
		s.membersPort = nodeport.MembersPort{Port: uint16(opts.MemberlistPort), Protocols: []nodeport.Protocol{nodeport.TCP, nodeport.UDP}}
	}
	var fwd *nodeport.Forwarder
	if opts.Forwarding {
		fwd = nodeport.New(nft)
		s.fwd = fwd
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "berth_speaker_forwarding_rules_not_programmed",
			Help: "Forwarding rules of the last sync left out of the table: invalid, or refused by the kernel (retried at every sync).",
		}, func() float64 { return float64(fwd.NotProgrammed()) }))
		if opts.L2 {
			// Also without draining: the first sync removes the routes a
			// previous run left.
			s.routes = &netlinkRoutes{}
		}
	} else {
		fwd = nodeport.NewMembersOnly(nft)
		s.memberTable = fwd
	}
	return func() {
		if !opts.CleanupOnExit {
			return
		}
		log := logr.FromContextOrDiscard(ctx)
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := fwd.Cleanup(stopCtx); err != nil {
			log.Error(err, "Remove forwarding table")
		} else {
			log.Info("Removed forwarding table", "table", opts.Table)
		}
	}, nil
}

// watch sets up the informers the plan is computed from, and the
// speaker's listers; the caller starts them.
func (s *Speaker) watch(opts Options, kube kubernetes.Interface, berth versioned.Interface) (informers.SharedInformerFactory, berthinformers.SharedInformerFactory, error) {
	kubeInf := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTransform(cli.StripManagedFields))
	berthInf := berthinformers.NewSharedInformerFactoryWithOptions(berth, 0, berthinformers.WithTransform(cli.StripManagedFields))
	svcs := kubeInf.Core().V1().Services()
	eps := kubeInf.Discovery().V1().EndpointSlices()
	// Every Node: layer-2 ownership depends on which nodes are eligible.
	nodes := kubeInf.Core().V1().Nodes()
	pools := berthInf.Berth().V1alpha1().BerthIPPools()
	peers := berthInf.Berth().V1alpha1().BerthBGPPeers()
	advs := berthInf.Berth().V1alpha1().BerthBGPAdvertisements()
	// Namespaces' labels, for advertisements' namespaceSelector.
	nss := kubeInf.Core().V1().Namespaces()
	s.listers = listers{
		nodes: nodes.Lister(), services: svcs.Lister(), slices: eps.Lister(), namespaces: nss.Lister(),
		pools: pools.Lister(), peers: peers.Lister(), bgpAdvs: advs.Lister(),
	}
	infs := []cache.SharedIndexInformer{svcs.Informer(), eps.Informer(), nodes.Informer(), nss.Informer(), pools.Informer(), peers.Informer(), advs.Informer()}
	if opts.L2 {
		l2Advs := berthInf.Berth().V1alpha1().BerthL2Advertisements()
		s.listers.l2Advs = l2Advs.Lister()
		infs = append(infs, l2Advs.Informer())
		// The nodes' withheld addresses, which layer-2 ownership leaves
		// out; only changes of them make a sync.
		statuses := berthInf.Berth().V1alpha1().BerthNodeStatuses()
		s.listers.statuses = statuses.Lister()
		inf := statuses.Informer()
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: s.enqueue,
			UpdateFunc: func(old, cur any) {
				if withheldChanged(old, cur) {
					s.enqueue(cur)
				}
			},
			DeleteFunc: s.enqueue,
		}); err != nil {
			return nil, nil, fmt.Errorf("watch: %w", err)
		}
		s.synced = append(s.synced, inf.HasSynced)
	}
	for _, inf := range infs {
		if _, err := inf.AddEventHandler(s.handlers()); err != nil {
			return nil, nil, fmt.Errorf("watch: %w", err)
		}
		s.synced = append(s.synced, inf.HasSynced)
	}
	return kubeInf, berthInf, nil
}

// runL2 starts layer 2 once the caches have synced, in the background;
// wait returns once the membership has left.
func (s *Speaker) runL2(ctx context.Context, opts Options, tie l2.TieStore, record *leaseRecordStore, events *eventReporter) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
			return
		}
		nodeRef := &corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: opts.NodeName, UID: types.UID(opts.NodeName)}
		o := l2Options{port: opts.MemberlistPort, secret: opts.MemberlistSecret, handover: opts.Handover, drain: opts.Drain, tie: tie, record: record, forgetAfter: opts.L2ForgetAfter, voters: opts.L2Voters}
		s.startL2(ctx, o,
			func(reason, msg string) { events.rec.Event(nodeRef, corev1.EventTypeWarning, reason, msg) })
	}()
	return func() { <-done }
}

// stopDraining removes the drains' routes and set elements on the way out,
// once the sync loop has stopped: nothing would end them. The forwarding
// table itself stays (see Options.CleanupOnExit).
func (s *Speaker) stopDraining(ctx context.Context) {
	if s.routes == nil {
		return
	}
	log := logr.FromContextOrDiscard(ctx)
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.routes.Set(nil); err != nil {
		log.Error(err, "Remove drain routes")
	}
	if s.forwarded.Load() {
		if err := s.fwd.Drain(stopCtx, nil); err != nil {
			log.Error(err, "Clear drain sets")
		}
	}
}
