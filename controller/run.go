package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/informers"
	networkinginformers "k8s.io/client-go/informers/networking/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/client/clientset/versioned"
	berthinformers "github.com/berthlb/berth/client/informers/externalversions"
	"github.com/berthlb/berth/internal/cli"
	"github.com/berthlb/berth/internal/lifecycle"
	"github.com/berthlb/berth/internal/serve"
)

// Options configure a controller process. cmd/berth-controller fills them
// from flags.
type Options struct {
	// Kubeconfig is the path of a kubeconfig file; empty means in-cluster.
	Kubeconfig string
	// QPS and Burst bound the controller's requests to the API server.
	QPS   float32
	Burst int
	Config
	// LeaderElect runs the controller only while it holds a Lease, so that
	// several replicas never allocate at the same time.
	LeaderElect bool
	// LeaderElectionNamespace and LeaderElectionName name the Lease.
	LeaderElectionNamespace string
	LeaderElectionName      string
	// LeaseDuration, RenewDeadline and RetryPeriod tune the election.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// MetricsAddr serves /metrics, /healthz and /readyz; empty disables.
	MetricsAddr string
	// LifecycleConfigMap names the ConfigMap, in LeaderElectionNamespace,
	// that marks an uninstall (package internal/lifecycle); empty ignores
	// uninstalls.
	LifecycleConfigMap string
}

// reconcileStallLimit is how long one reconcile may run before /healthz
// fails and the kubelet restarts the controller: a reconcile is a few API
// writes, each bounded by client-go's timeouts and retries; minutes mean
// it is stuck (a deadlock, a write that never returns).
const reconcileStallLimit = 3 * time.Minute

// DefaultOptions returns the options a production deployment starts from.
func DefaultOptions() Options {
	return Options{
		QPS:   200,
		Burst: 400,
		Config: Config{
			LoadBalancerClass: "berth.dev/lb",
			HandleUnclassed:   true,
			Workers:           8,
			PoolStatusDelay:   time.Second,
		},
		LeaderElect:             true,
		LeaderElectionNamespace: "berth-system",
		LeaderElectionName:      "berth-controller",
		LeaseDuration:           15 * time.Second,
		RenewDeadline:           10 * time.Second,
		RetryPeriod:             2 * time.Second,
		MetricsAddr:             ":9630",
	}
}

// Run runs a controller process until ctx is done or it loses leadership.
func Run(ctx context.Context, opts Options) error {
	log := logr.FromContextOrDiscard(ctx).WithName("controller")
	ctx = logr.NewContext(ctx, log)

	restCfg, kube, berth, err := cli.Clients(opts.Kubeconfig, opts.QPS, opts.Burst, FieldManager)
	if err != nil {
		return err
	}
	reg := serve.NewRegistry()
	p := &process{opts: opts, restCfg: restCfg, kube: kube, berth: berth,
		stall: serve.NewStall("reconcile", reconcileStallLimit), leading: make(chan struct{})}
	if opts.MetricsAddr != "" {
		stop, err := serve.Serve(ctx, serve.Config{Addr: opts.MetricsAddr, Registry: reg, Ready: p.ready,
			Healthy: func(context.Context) error { return p.stall.Check() }})
		if err != nil {
			return err
		}
		defer stop()
	}
	p.metrics = NewMetrics(reg)
	if !opts.LeaderElect {
		return p.lead(ctx)
	}
	return elect(ctx, kube, opts, p.lead)
}

// process is one controller process: what outlives a term as leader
// (clients, metrics, the stall detector) and the controller of the current
// term.
type process struct {
	opts    Options
	restCfg *rest.Config
	kube    kubernetes.Interface
	berth   versioned.Interface
	stall   *serve.Stall
	metrics *Metrics
	// leading is closed once the process leads.
	leading chan struct{}
	current atomic.Pointer[Controller]
}

// ready is /readyz: a standby replica is ready to take over; the leader is
// ready once it has rebuilt its allocations from the Services' status.
func (p *process) ready(context.Context) error {
	select {
	case <-p.leading:
		if c := p.current.Load(); c == nil || !c.Ready() {
			return errors.New("leading, still rebuilding allocations from Service status")
		}
		return nil
	default:
		return nil
	}
}

// lead builds the controller and runs it until ctx is done. Informers are
// created only now, so that a new leader lists the current state from the
// API server rather than trusting a cache filled while another replica was
// writing.
func (p *process) lead(ctx context.Context) error {
	log := logr.FromContextOrDiscard(ctx)
	// Leading from the first moment: not ready until the replay is done,
	// also while the controller is being built.
	close(p.leading)
	kubeInf := informers.NewSharedInformerFactoryWithOptions(p.kube, 0, informers.WithTransform(cli.StripManagedFields))
	berthInf := berthinformers.NewSharedInformerFactoryWithOptions(p.berth, 0, berthinformers.WithTransform(cli.StripManagedFields))
	rec, stopEvents, err := newRecorder(ctx, p.restCfg)
	if err != nil {
		return err
	}
	defer stopEvents()
	c, err := New(p.opts.Config, p.kube, p.berth, rec, p.metrics,
		kubeInf.Core().V1().Services(), kubeInf.Core().V1().Namespaces(), berthInf.Berth().V1alpha1().BerthIPPools())
	if err != nil {
		return err
	}
	c.stall = p.stall
	adv := berthInf.Berth().V1alpha1()
	if err := c.WatchAdvertisements(adv.BerthBGPAdvertisements(), adv.BerthL2Advertisements(), adv.BerthBGPPeers()); err != nil {
		return err
	}
	if err := c.WatchNodeStatuses(adv.BerthNodeStatuses()); err != nil {
		return err
	}
	if p.opts.LifecycleConfigMap != "" {
		mark := lifecycle.NewWatcher(p.kube, p.opts.LeaderElectionNamespace, p.opts.LifecycleConfigMap)
		if err := c.WatchUninstall(mark); err != nil {
			return err
		}
		mark.Start(ctx)
		defer mark.Shutdown()
	}
	served, err := cli.ServesServiceCIDRs(p.kube.Discovery())
	if err != nil {
		return err
	}
	var cidrInf networkinginformers.ServiceCIDRInformer
	if served {
		cidrInf = kubeInf.Networking().V1().ServiceCIDRs()
	} else {
		log.Info("The API server serves no networking.k8s.io/v1 ServiceCIDRs (Kubernetes < 1.33); pools are kept off pod ranges and node addresses only")
	}
	if err := c.WatchCluster(kubeInf.Core().V1().Nodes(), cidrInf); err != nil {
		return err
	}
	p.current.Store(c)
	kubeInf.Start(ctx.Done())
	berthInf.Start(ctx.Done())
	defer kubeInf.Shutdown()
	defer berthInf.Shutdown()
	return c.Run(ctx)
}

// newRecorder returns an event recorder for Services and BerthIPPools,
// writing through its own client (eventConfig), and the function that
// stops it.
func newRecorder(ctx context.Context, restCfg *rest.Config) (record.EventRecorder, func(), error) {
	eventsClient, err := kubernetes.NewForConfig(eventConfig(restCfg))
	if err != nil {
		return nil, nil, fmt.Errorf("events client: %w", err)
	}
	sch := runtime.NewScheme()
	if err := scheme.AddToScheme(sch); err != nil {
		return nil, nil, fmt.Errorf("event scheme: %w", err)
	}
	if err := v1alpha1.AddToScheme(sch); err != nil {
		return nil, nil, fmt.Errorf("event scheme: %w", err)
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: eventsClient.CoreV1().Events("")})
	return broadcaster.NewRecorder(sch, corev1.EventSource{Component: FieldManager}), broadcaster.Shutdown, nil
}

func elect(ctx context.Context, kube kubernetes.Interface, opts Options, run func(context.Context) error) error {
	log := logr.FromContextOrDiscard(ctx)
	host, _ := os.Hostname()
	id := host + "_" + string(uuid.NewUUID())
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: opts.LeaderElectionNamespace, Name: opts.LeaderElectionName},
		Client:     kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var runErr error
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   opts.LeaseDuration,
		RenewDeadline:   opts.RenewDeadline,
		RetryPeriod:     opts.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            opts.LeaderElectionName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				log.Info("Became leader", "identity", id)
				runErr = run(ctx)
				cancel()
			},
			OnStoppedLeading: func() { log.Info("Stopped leading", "identity", id) },
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	le.Run(ctx)
	if runErr != nil {
		return runErr
	}
	if ctx.Err() != nil && !errors.Is(context.Cause(ctx), context.Canceled) {
		return ctx.Err()
	}
	return nil
}

// eventConfig gives Events their own, smaller request budget so that a burst
// of Events never delays status writes.
func eventConfig(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = max(cfg.QPS/4, 5), max(cfg.Burst/4, 10)
	return c
}
