package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/client/clientset/versioned"
	"github.com/berthlb/berth/controller"
	"github.com/berthlb/berth/e2e/controlplane"
)

// Options configure the demo.
type Options struct {
	// ExamplesDir holds the YAML applied to the cluster. Default:
	// manifests/examples in the repository.
	ExamplesDir string
	// Once prints the result and exits instead of waiting for Ctrl-C.
	Once bool
	// Out receives the demo's report; logs go to the logger in ctx.
	Out io.Writer
	// Cluster runs the demo on a real cluster (kubelets, containerd,
	// pods; root only) with Berth installed by its chart, instead of
	// Berth's processes against an API server alone. ExamplesDir is not
	// used then.
	Cluster bool
}

// Run runs the demo until ctx is done (or, with Once, until it has printed
// its report).
func Run(ctx context.Context, opts Options) error {
	out := opts.Out
	if out == nil {
		out = os.Stdout
	}
	if opts.Cluster {
		return runCluster(ctx, opts, out)
	}
	if opts.ExamplesDir == "" {
		root, err := controlplane.RepoRoot()
		if err != nil {
			return err
		}
		opts.ExamplesDir = filepath.Join(root, "manifests", "examples")
	}

	// The network comes first: its bridge is where the API server must
	// listen for the speakers in the node namespaces to reach it. Its
	// stop is deferred twice: here in case the control plane does not
	// start, and below so that it runs before the control plane stops,
	// while the speakers can still reach it.
	nw, skipped, stopNetwork := startNetwork(ctx, out)
	defer stopNetwork()
	cpOpts := controlplane.Options{}
	if nw != nil {
		cpOpts.BindAddress = nw.lab.Gateway4
	}
	fmt.Fprintln(out, "==> Starting a local kube-apiserver and etcd (the first run builds them: about 10 minutes)")
	cp, err := controlplane.Start(ctx, cpOpts)
	if err != nil {
		return fmt.Errorf("start control plane: %w", err)
	}
	defer func() {
		fmt.Fprintln(out, "==> Stopping the control plane and removing its data")
		_ = cp.Stop()
	}()
	defer stopNetwork()
	cfg := cp.RESTConfig()
	kube := kubernetes.NewForConfigOrDie(cfg)
	berth := versioned.NewForConfigOrDie(cfg)

	fmt.Fprintln(out, "==> Starting berth-controller")
	ctrlDone, stopCtrl, err := startController(ctx, cp)
	if err != nil {
		return err
	}
	defer stopCtrl()

	fmt.Fprintf(out, "==> Applying %s\n", opts.ExamplesDir)
	services, err := apply(ctx, cp, opts.ExamplesDir, out)
	if err != nil {
		return err
	}
	settle(ctx, kube, services)
	if err := report(ctx, out, kube, berth, services); err != nil {
		return err
	}
	if nw != nil {
		if err := nw.run(ctx, out, cp, kube, berth, services); err != nil {
			return fmt.Errorf("network: %w", err)
		}
	} else {
		fmt.Fprintf(out, "\n==> Skipped the network part (BGP to an FRR router, forwarding, traffic from a client): %s\n", skipped)
	}
	if opts.Once {
		return nil
	}
	explore(ctx, out, cp, nw)
	select {
	case <-ctx.Done():
	case err := <-ctrlDone:
		ctrlDone <- err
		return fmt.Errorf("controller stopped: %w", err)
	}
	return nil
}

// startNetwork builds the network of namespaces (a router, two nodes, a
// client) if this machine can, and returns it with a stop that may be
// called more than once; or, if it cannot, nil and why.
func startNetwork(ctx context.Context, out io.Writer) (nw *network, skipped string, stop func()) {
	installNetworkTools(ctx, out)
	skipped, speaker := networkUnavailable()
	if skipped != "" {
		return nil, skipped, func() {}
	}
	fmt.Fprintln(out, "==> Building a network of namespaces: a router running FRR, two nodes, a client")
	nw, err := newNetwork(ctx, speaker)
	if err != nil {
		return nil, "building it failed: " + err.Error(), func() {}
	}
	return nw, "", sync.OnceFunc(func() {
		fmt.Fprintln(out, "==> Stopping the speakers and FRR, removing the namespaces")
		nw.close()
	})
}

// startController runs berth-controller as its ServiceAccount, with the
// RBAC the manifests ship, as in a cluster (the demo itself acts as the
// admin). It returns the channel its end is sent on and a stop that waits
// for it.
func startController(ctx context.Context, cp *controlplane.ControlPlane) (done chan error, stop func(), err error) {
	log := logr.FromContextOrDiscard(ctx)
	kubeconfig, err := cp.ServiceAccountKubeconfig(ctx, berthNamespace, "berth-controller")
	if err != nil {
		return nil, nil, err
	}
	ctrlCtx, cancel := context.WithCancel(ctx)
	done = make(chan error, 1)
	go func() {
		o := controller.DefaultOptions()
		o.Kubeconfig = kubeconfig
		o.LeaderElect = false
		o.MetricsAddr = "127.0.0.1:0"
		o.PoolStatusDelay = 100 * time.Millisecond
		done <- controller.Run(logr.NewContext(ctrlCtx, log.WithName("berth-controller")), o)
	}()
	return done, func() {
		cancel()
		if err := <-done; err != nil {
			log.Error(err, "Controller stopped")
		}
	}, nil
}

// explore tells the user how to look around while the demo stays up, and
// shows the router's routes live.
func explore(ctx context.Context, out io.Writer, cp *controlplane.ControlPlane, nw *network) {
	fmt.Fprintf(out, "\nThe cluster stays up until you press Ctrl-C. Explore it with kubectl:\n"+
		"  export KUBECONFIG=%s\n  kubectl get berthippools\n  kubectl get svc -A\n  kubectl describe svc web\n", cp.Kubeconfig())
	if nw == nil {
		return
	}
	fmt.Fprintf(out, "and the network with ip netns (as root):\n  ip netns exec %s curl http://198.51.100.2/\n  vtysh --vty_socket %s -c 'show ip route bgp'\n  ip netns exec %s nft list table inet berth\n",
		nw.client.Netns, nw.router.Dir, nw.nodes[0].Netns)
	fmt.Fprintf(out, "\nThe router's routes, live (create or delete a Service, or cordon a node, and watch):\n")
	go nw.watchRoutes(ctx, out)
}

// apply creates every object in the YAML files of dir, Namespaces first and
// Services last, and returns the Services it created.
func apply(ctx context.Context, cp *controlplane.ControlPlane, dir string, out io.Writer) ([]*unstructured.Unstructured, error) {
	cfg := cp.RESTConfig()
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))
	objs, err := readObjects(dir)
	if err != nil {
		return nil, err
	}
	rank := map[string]int{"Namespace": 0, "BerthIPPool": 1, "Service": 3}
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int {
		return cmpRank(rank, a.GetKind()) - cmpRank(rank, b.GetKind())
	})
	var services []*unstructured.Unstructured
	var pools []dynamic.ResourceInterface
	var poolNames []string
	for _, o := range objs {
		if o.GetKind() == "Service" && len(services) == 0 {
			// As an operator would: Services once the controller has
			// loaded the pools, so that they are served in the order they
			// are created rather than all at once as the pools arrive.
			if err := waitPoolsLoaded(ctx, pools, poolNames); err != nil {
				return nil, err
			}
		}
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return nil, fmt.Errorf("map %s: %w", gvk, err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			if o.GetNamespace() == "" {
				o.SetNamespace("default")
			}
			ri = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		if _, err := ri.Create(ctx, o, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create %s %s: %w", o.GetKind(), o.GetName(), err)
		}
		fmt.Fprintf(out, "    created %s %s\n", strings.ToLower(o.GetKind()), qualified(o.GetNamespace(), o.GetName()))
		switch o.GetKind() {
		case "Service":
			services = append(services, o)
		case "BerthIPPool":
			pools, poolNames = append(pools, ri), append(poolNames, o.GetName())
		}
	}
	return services, nil
}

// waitPoolsLoaded waits until the controller reports on each pool (its
// Ready condition is there, with any reason but NotLoaded).
func waitPoolsLoaded(ctx context.Context, ris []dynamic.ResourceInterface, names []string) error {
	for i, ri := range ris {
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			u, err := ri.Get(ctx, names[i], metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, c := range conds {
				if m, ok := c.(map[string]any); ok && m["type"] == "Ready" && m["reason"] != "NotLoaded" {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("wait for the controller to load pool %s: %w", names[i], err)
		}
	}
	return nil
}

func cmpRank(rank map[string]int, kind string) int {
	if r, ok := rank[kind]; ok {
		return r
	}
	return 2
}

func readObjects(dir string) ([]*unstructured.Unstructured, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no YAML files in %s", dir)
	}
	slices.Sort(files)
	var objs []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var m map[string]any
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			if len(m) > 0 {
				objs = append(objs, &unstructured.Unstructured{Object: m})
			}
		}
	}
	return objs, nil
}

// settle waits until every Service has Berth's condition, or a few seconds.
func settle(ctx context.Context, kube kubernetes.Interface, services []*unstructured.Unstructured) {
	_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
		for _, s := range services {
			svc, err := kube.CoreV1().Services(s.GetNamespace()).Get(ctx, s.GetName(), metav1.GetOptions{})
			if err != nil || meta.FindStatusCondition(svc.Status.Conditions, v1alpha1.ServiceConditionAddressAllocated) == nil {
				return false, nil
			}
		}
		return true, nil
	})
	time.Sleep(500 * time.Millisecond) // let the batched pool status land
}

func report(ctx context.Context, out io.Writer, kube kubernetes.Interface, berth versioned.Interface, services []*unstructured.Unstructured) error {
	fmt.Fprintln(out, "\n==> Services")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tPORTS\tEXTERNAL-IP\tALLOCATED\tREASON\tMESSAGE")
	for _, s := range services {
		svc, err := kube.CoreV1().Services(s.GetNamespace()).Get(ctx, s.GetName(), metav1.GetOptions{})
		if err != nil {
			return err
		}
		var ips, ports []string
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			ips = append(ips, ing.IP)
		}
		for _, p := range svc.Spec.Ports {
			ports = append(ports, fmt.Sprintf("%s/%d", p.Protocol, p.Port))
		}
		status, reason, msg := "-", "-", "-"
		if c := meta.FindStatusCondition(svc.Status.Conditions, v1alpha1.ServiceConditionAddressAllocated); c != nil {
			status, reason, msg = string(c.Status), c.Reason, c.Message
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", qualified(svc.Namespace, svc.Name), strings.Join(ports, ","),
			orDash(strings.Join(ips, ",")), status, reason, msg)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(out, "\n==> IP pools")
	pools, err := berth.BerthV1alpha1().BerthIPPools().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tADDRESSES\tUSED/TOTAL\tREADY\tHOLDERS")
	for _, p := range pools.Items {
		var addrs []string
		for _, a := range p.Spec.Addresses {
			addrs = append(addrs, string(a))
		}
		ready := "-"
		if c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.PoolConditionReady); c != nil {
			ready = string(c.Status)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Name, strings.Join(addrs, ","), orDash(p.Status.Usage), ready, orDash(strings.Join(p.Status.Holders, ",")))
	}
	return tw.Flush()
}

func qualified(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
