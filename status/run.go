package status

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/client/clientset/versioned"
	"github.com/berthlb/berth/config"
)

// Options are the settings of `berth status`.
type Options struct {
	// Kubeconfig and Context select the cluster as kubectl does
	// ($KUBECONFIG, then ~/.kube/config, when empty).
	Kubeconfig string
	Context    string
	// Namespace is the Services' namespace; empty is the kubeconfig
	// context's (default if it has none).
	Namespace string
	// AllNamespaces lists the Services of every namespace.
	AllNamespaces bool
	// Target is "svc/NAME" (or "service/NAME", or NAME) for one Service's
	// details; empty lists every LoadBalancer Service.
	Target string
	// Events is how many of the Service's last Events to show.
	Events int
	// Now is the time Event and session ages are counted from; zero is
	// the clock's.
	Now time.Time
	// View is what to report: ViewServices (the default), ViewPools or
	// ViewPeers.
	View View
}

// View is one of the reports.
type View string

// The reports: Services (`berth status`), pools (`berth pools`: usage per
// pool and family) and peers (`berth peers`: sessions per node and peer).
const (
	ViewServices View = ""
	ViewPools    View = "pools"
	ViewPeers    View = "peers"
)

// Clients are the API clients Run reads with.
type Clients struct {
	Kube  kubernetes.Interface
	Berth versioned.Interface
}

// Run reads the cluster that opts name and writes the report to out.
func Run(ctx context.Context, opts Options, out io.Writer) error {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = opts.Kubeconfig
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: opts.Context})
	cfg, err := loader.ClientConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	if opts.Namespace == "" {
		if opts.Namespace, _, err = loader.Namespace(); err != nil {
			return fmt.Errorf("namespace from kubeconfig: %w", err)
		}
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	berth, err := versioned.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return Report(ctx, Clients{Kube: kube, Berth: berth}, opts, out)
}

// Report reads the cluster through c and writes the report to out.
func Report(ctx context.Context, c Clients, opts Options, out io.Writer) error {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	snap, err := read(ctx, c)
	if err != nil {
		return err
	}
	switch opts.View {
	case ViewPools:
		return writePools(out, snap.Pools)
	case ViewPeers:
		return writePeers(out, snap.Peers, snap.Nodes, opts.Now)
	case ViewServices:
	default:
		return fmt.Errorf("unknown report %q", opts.View)
	}
	if opts.Target == "" {
		ns := opts.Namespace
		if opts.AllNamespaces {
			ns = metav1.NamespaceAll
		}
		list, err := c.Kube.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("list Services: %w", err)
		}
		var svcs []*corev1.Service
		for i := range list.Items {
			if list.Items[i].Spec.Type == corev1.ServiceTypeLoadBalancer {
				svcs = append(svcs, &list.Items[i])
			}
		}
		return writeTable(out, snap, svcs)
	}
	name, err := serviceName(opts.Target)
	if err != nil {
		return err
	}
	svc, err := c.Kube.CoreV1().Services(opts.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get Service %s/%s: %w", opts.Namespace, name, err)
	}
	events, err := c.Kube.CoreV1().Events(svc.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.uid=" + string(svc.UID),
	})
	if err != nil {
		return fmt.Errorf("list the Service's Events: %w", err)
	}
	return writeService(out, snap, svc, lastEvents(events.Items, opts.Events), opts.Now)
}

// serviceName reads "svc/NAME", "service/NAME", "services/NAME" or NAME.
func serviceName(target string) (string, error) {
	kind, name, ok := strings.Cut(target, "/")
	if !ok {
		return target, nil
	}
	if !slices.Contains([]string{"svc", "service", "services"}, strings.ToLower(kind)) || name == "" {
		return "", fmt.Errorf("%q: want svc/NAME", target)
	}
	return name, nil
}

// read lists what Analyze needs.
func read(ctx context.Context, c Clients) (Snapshot, error) {
	var snap Snapshot
	b := c.Berth.BerthV1alpha1()
	pools, err := b.BerthIPPools().List(ctx, metav1.ListOptions{})
	if err != nil {
		return snap, fmt.Errorf("list BerthIPPools (are Berth's CRDs installed?): %w", err)
	}
	peers, err1 := b.BerthBGPPeers().List(ctx, metav1.ListOptions{})
	bgpAdvs, err2 := b.BerthBGPAdvertisements().List(ctx, metav1.ListOptions{})
	l2Advs, err3 := b.BerthL2Advertisements().List(ctx, metav1.ListOptions{})
	nodes, err4 := b.BerthNodeStatuses().List(ctx, metav1.ListOptions{})
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return snap, fmt.Errorf("read Berth's resources: %w", err)
	}
	snap.Pools, snap.Peers, snap.BGPAdvs, snap.L2Advs, snap.Nodes = pools.Items, peers.Items, bgpAdvs.Items, l2Advs.Items, nodes.Items
	slices.SortFunc(snap.Nodes, func(a, b v1alpha1.BerthNodeStatus) int { return strings.Compare(a.Name, b.Name) })
	if snap.usesNamespaceSelector() {
		nss, err := c.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return snap, fmt.Errorf("list Namespaces (an advertisement selects them by label): %w", err)
		}
		snap.Namespaces = map[string]labels.Set{}
		for i := range nss.Items {
			snap.Namespaces[nss.Items[i].Name] = config.NamespaceLabels(&nss.Items[i])
		}
	}
	return snap, nil
}

// lastEvents returns the n most recent of events, oldest first.
func lastEvents(events []corev1.Event, n int) []corev1.Event {
	slices.SortStableFunc(events, func(a, b corev1.Event) int { return eventTime(a).Compare(eventTime(b)) })
	if len(events) > n {
		events = events[len(events)-n:]
	}
	return events
}

// eventTime is when an Event last happened.
func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}
