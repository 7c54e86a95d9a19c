package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"helm.sh/helm/v4/pkg/action"
	helmkube "helm.sh/helm/v4/pkg/kube"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/berthlb/berth/client/clientset/versioned"
	"github.com/berthlb/berth/e2e/cluster"
	"github.com/berthlb/berth/e2e/frr"
	"github.com/berthlb/berth/e2e/netlab"
	"github.com/berthlb/berth/internal/helmchart"
	"github.com/berthlb/berth/internal/hostdeps"
)

// clusterNodes is how many worker nodes the cluster demo runs.
const clusterNodes = 2

// clusterWait bounds each wait of the cluster demo once the cluster is up:
// Berth's pods Ready, the echo pods Ready, an address, a route, an answer.
const clusterWait = 2 * time.Minute

// clusterDemo is what the cluster demo made, for its report and cleanup.
type clusterDemo struct {
	out    io.Writer
	c      *cluster.Cluster
	berth  versioned.Interface
	router *frr.Router
	// client is the namespace the requests come from.
	client *netlab.Host
}

// runCluster is the demo on a real cluster (package e2e/cluster): it brings
// the cluster up, installs Berth's chart with the Helm SDK, peers an FRR
// router with the speakers, runs echo pods behind a BGP Service and a
// layer-2 Service, and has a client namespace request both addresses. It
// removes everything it made when it returns, Ctrl-C included.
func runCluster(ctx context.Context, opts Options, out io.Writer) (err error) {
	log := logr.FromContextOrDiscard(ctx)
	if err := clusterPrerequisites(ctx, out); err != nil {
		return err
	}
	fmt.Fprintf(out, "==> Starting a real cluster: kube-apiserver, etcd, kube-controller-manager, kube-scheduler and %d nodes,\n"+
		"    each a network namespace running containerd, kubelet and kube-proxy. It builds Berth's images first;\n"+
		"    the very first run also builds the Kubernetes binaries (about 15 minutes, then cached).\n", clusterNodes)
	c, err := cluster.New(ctx, cluster.Options{Nodes: clusterNodes}, log.WithName("cluster"))
	if err != nil {
		if ctx.Err() != nil {
			// New removed what it had made, and logged any failure to.
			fmt.Fprintln(out, "\n==> Interrupted while starting the cluster; what had started is removed")
			return nil
		}
		return err
	}
	d := &clusterDemo{out: out, c: c, berth: versioned.NewForConfigOrDie(c.ControlPlane.RESTConfig())}
	defer func() {
		if ctx.Err() != nil && err != nil {
			// Whatever failed, failed because of the interruption.
			fmt.Fprintln(out, "\n==> Interrupted")
			err = nil
		}
		err = errors.Join(err, d.close())
	}()
	fmt.Fprintf(out, "    cluster up: lab %s, directory %s; images built in %v, nodes Ready %v later\n",
		c.Lab.ID, c.Dir(), c.Timings.Build.Round(time.Second), c.Timings.Start.Round(time.Second))
	if err := d.printNodes(ctx); err != nil {
		return err
	}
	if err := d.network(ctx); err != nil {
		return err
	}
	if err := d.installBerth(ctx); err != nil {
		return err
	}
	if err := d.configure(ctx); err != nil {
		return err
	}
	addrs, err := d.deploy(ctx)
	if err != nil {
		return err
	}
	if err := d.traffic(ctx, addrs); err != nil {
		return err
	}
	d.explore(addrs)
	if opts.Once {
		return nil
	}
	fmt.Fprintln(out, "\nThe cluster stays up until you press Ctrl-C; then the demo removes everything it made.")
	<-ctx.Done()
	return nil
}

// clusterPrerequisites checks that the demo runs as root and installs the
// Debian packages of the commands the cluster and the router need, after
// saying so.
func clusterPrerequisites(ctx context.Context, out io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("the real cluster needs root (network namespaces, cgroups, containerd); run `sudo make demo`, or `make demo-local` (berth-demo without --cluster) for the demo without kubelets")
	}
	need := append(slices.Clone(cluster.Commands), frr.Dir+"/bgpd", frr.Dir+"/zebra", "vtysh")
	var missing []hostdeps.Package
	for _, p := range hostdeps.Packages() {
		if slices.ContainsFunc(p.Commands, func(c string) bool { return slices.Contains(need, c) && !installed(c) }) {
			missing = append(missing, p)
		}
	}
	if err := hostdeps.Install(ctx, out, "The cluster demo", missing); err != nil {
		return err
	}
	for _, c := range need {
		if !installed(c) {
			return fmt.Errorf("%s is not installed (Debian package %s)", c, hostdeps.PackageOf(c))
		}
	}
	return nil
}

// installed reports whether command (a path, or a name looked up in PATH)
// is there.
func installed(command string) bool {
	if strings.HasPrefix(command, "/") {
		_, err := os.Stat(command)
		return err == nil
	}
	_, err := exec.LookPath(command)
	return err == nil
}

// close stops the router and the cluster and removes their namespaces,
// links, processes, cgroups and files.
func (d *clusterDemo) close() error {
	fmt.Fprintf(d.out, "\n==> Cleaning up: stopping the pods, kubelets, containerd, kube-proxy, the control plane and FRR;\n"+
		"    removing lab %s's namespaces and links, the nodes' cgroups and %s\n", d.c.Lab.ID, d.c.Dir())
	var errs []error
	if d.router != nil {
		errs = append(errs, d.router.Close())
	}
	errs = append(errs, d.c.Close())
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(d.out, "    cleanup failed: %v\n", err)
		return fmt.Errorf("clean up: %w", err)
	}
	fmt.Fprintln(d.out, "    done: nothing of the demo is left")
	return nil
}

// printNodes shows the Nodes as kubectl get nodes -o wide would.
func (d *clusterDemo) printNodes(ctx context.Context) error {
	nodes, err := d.c.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintln(d.out, "\n==> Nodes (kubectl get nodes -o wide)")
	tw := table(d.out, "NAME", "STATUS", "INTERNAL-IP", "POD-CIDR", "KUBELET", "RUNTIME")
	for _, n := range nodes.Items {
		status := "NotReady"
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				status = "Ready"
			}
		}
		var ips []string
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				ips = append(ips, a.Address)
			}
		}
		row(tw, n.Name, status, strings.Join(ips, ","), strings.Join(n.Spec.PodCIDRs, ","), n.Status.NodeInfo.KubeletVersion, n.Status.NodeInfo.ContainerRuntimeVersion)
	}
	return tw.Flush()
}

// network starts the FRR router peering with every node and the client,
// which reaches the BGP pool through the router and the layer-2 pool on
// the lab's segment.
func (d *clusterDemo) network(ctx context.Context) error {
	var neighbors []frr.Neighbor
	var nodeIPs []string
	for _, n := range d.c.Nodes {
		neighbors = append(neighbors, frr.Neighbor{Addr: n.Host.IPv4, ASN: nodeASN})
		nodeIPs = append(nodeIPs, n.Host.IPv4.String())
	}
	var err error
	d.router, err = frr.NewRouter(ctx, d.c.Lab, "router", frr.Config{ASN: routerASN, Neighbors: neighbors, MaximumPaths: 8})
	if err != nil {
		return err
	}
	// Forward for the client, hashing connections (not just addresses)
	// over the ECMP next hops.
	if _, err := d.router.Host.Exec(ctx, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1"); err != nil {
		return err
	}
	client, err := d.c.Lab.CreateHost("client")
	if err != nil {
		return err
	}
	if _, err := client.Exec(ctx, "ip", "route", "add", clusterBGPPool.String(), "via", d.router.Host.IPv4.String()); err != nil {
		return err
	}
	d.client = client
	fmt.Fprintf(d.out, "\n==> Network: FRR router %s (AS %d) peering with the nodes %s (AS %d);\n"+
		"    client %s (namespace %s) routes %s through the router and shares the nodes' segment %s\n",
		d.router.Host.IPv4, routerASN, strings.Join(nodeIPs, ", "), nodeASN, client.IPv4, client.Netns, clusterBGPPool, d.c.Lab.Prefix4)
	return nil
}

// installBerth installs Berth's chart with its default values, as `helm
// install berth charts/berth -n berth-system --create-namespace` does, and
// waits until its pods are Ready: the controllers and a speaker per node.
func (d *clusterDemo) installBerth(ctx context.Context) error {
	fmt.Fprintf(d.out, "\n==> helm install berth charts/berth -n %s --create-namespace (Helm SDK, the chart's defaults, images tagged %s)\n", berthNamespace, d.c.BerthTag)
	began := time.Now()
	dir, err := helmchart.ChartDir()
	if err != nil {
		return err
	}
	ch, err := helmchart.Load(dir)
	if err != nil {
		return err
	}
	kubeconfig, namespace := d.c.ControlPlane.Kubeconfig(), berthNamespace
	getter := genericclioptions.NewConfigFlags(false)
	getter.KubeConfig, getter.Namespace = &kubeconfig, &namespace
	cfg := action.NewConfiguration()
	if err := cfg.Init(getter, berthNamespace, "secret"); err != nil {
		return fmt.Errorf("helm: %w", err)
	}
	install := action.NewInstall(cfg)
	install.ReleaseName, install.Namespace, install.CreateNamespace = "berth", berthNamespace, true
	install.WaitStrategy, install.Timeout = helmkube.HookOnlyStrategy, time.Minute
	if _, err := install.RunWithContext(ctx, ch, nil); err != nil {
		return fmt.Errorf("helm install: %w", err)
	}
	// The chart's defaults: two controllers and a speaker per node.
	pods, err := d.waitPods(ctx, berthNamespace, "", 2+len(d.c.Nodes))
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "    %d Berth pods Ready %v after the install (kubectl get pods -n %s -o wide)\n", len(pods), time.Since(began).Round(time.Second), berthNamespace)
	tw := table(d.out, "    POD", "NODE", "SERVICEACCOUNT", "IMAGE")
	for _, p := range pods {
		row(tw, "    "+p.Name, p.Spec.NodeName, p.Spec.ServiceAccountName, p.Spec.Containers[0].Image)
	}
	return tw.Flush()
}

// waitPods waits until want pods of ns match selector, all Running and
// Ready, none terminating, and returns them sorted by name.
func (d *clusterDemo) waitPods(ctx context.Context, ns, selector string, want int) ([]corev1.Pod, error) {
	var pods []corev1.Pod
	var status string
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, clusterWait, true, func(ctx context.Context) (bool, error) {
		list, err := d.c.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, nil
		}
		pods, status = list.Items, ""
		ready := 0
		for _, p := range pods {
			status += fmt.Sprintf(" %s:%s", p.Name, p.Status.Phase)
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && podReady(&p) {
				ready++
			}
		}
		return ready == len(pods) && ready == want, nil
	})
	if err != nil {
		return nil, fmt.Errorf("wait for the pods of %s to be Ready:%s: %w", ns, status, err)
	}
	slices.SortFunc(pods, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return pods, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// explore prints the commands to look around while the cluster is up.
func (d *clusterDemo) explore(addrs map[string]netip.Addr) {
	fmt.Fprintf(d.out, "\n==> Explore it (as root, while the demo runs)\n"+
		"  export KUBECONFIG=%s\n"+
		"  kubectl get nodes -o wide\n"+
		"  kubectl get pods -A -o wide\n"+
		"  kubectl get svc -n %s\n"+
		"  kubectl get berthippools,berthbgppeers,berthbgpadvertisements,berthl2advertisements\n"+
		"  ip netns exec %s curl -s http://%s/\n"+
		"  ip netns exec %s curl -s http://%s/\n"+
		"  vtysh --vty_socket %s -c 'show bgp ipv4 unicast'\n"+
		"  ip -n %s route show proto bgp\n",
		d.c.ControlPlane.Kubeconfig(), appNamespace,
		d.client.Netns, addrs[bgpService], d.client.Netns, addrs[l2Service],
		d.router.Dir, d.router.Host.Netns)
}
