package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"

	"github.com/berthlb/berth/e2e/controlplane"
	"github.com/berthlb/berth/e2e/netlab"
	"github.com/berthlb/berth/internal/hostdeps"
)

// ServiceCIDR and ServiceCIDR6 are the Service ranges: the control plane's
// defaults (controlplane.DefaultServiceClusterIPRange). IPv4 comes first,
// so a Service that names no family is IPv4.
const (
	ServiceCIDR  = "198.18.128.0/20"
	ServiceCIDR6 = "2001:db8:ffff::/112"
)

// maxNodes is how many /25 pod ranges ClusterCIDR holds.
const maxNodes = 4

// clusterCIDR is the pods' range of the cluster on the lab whose subnet is
// 198.18.<n>.0/24: 198.19.<2(n-1)>.0/23, which no netlab lab uses (labs take
// 198.18.1-127.0/24) and no other lab's cluster shares, since the root
// namespace routes it to the nodes. Each node gets a /25 of it.
func clusterCIDR(lab netip.Prefix) netip.Prefix {
	n := lab.Addr().As4()[2]
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, 2 * (n - 1), 0}), 23)
}

// clusterCIDR6 is the pods' IPv6 range of the cluster on the lab whose
// subnet is 2001:db8:<n>::/64: 2001:db8:<n>:8000::/56, outside the lab's
// subnet and every other lab's, routed to the nodes like clusterCIDR. Each
// node gets a /64 of it.
func clusterCIDR6(lab netip.Prefix) netip.Prefix {
	a := lab.Addr().As16()
	a[6], a[7] = 0x80, 0
	return netip.PrefixFrom(netip.AddrFrom16(a), 56)
}

// Options configure New and Start. The zero value is ready to use.
type Options struct {
	// Nodes is the number of worker nodes, at most 4. Default 2.
	Nodes int
	// KubeProxyMode is kube-proxy's --proxy-mode: nftables (default) or
	// iptables.
	KubeProxyMode string
}

// Cluster is a running cluster. Start registers its Close with the test.
type Cluster struct {
	Lab          *netlab.Lab
	ControlPlane *controlplane.ControlPlane
	Nodes        []*Node
	Kube         kubernetes.Interface
	// ClusterCIDR and ClusterCIDR6 are the pods' ranges, a /25 and a
	// /64 of them per node: the cluster is dual-stack, IPv4 first.
	ClusterCIDR, ClusterCIDR6 netip.Prefix
	// BerthTag is the tag of Berth's imported images: the chart's
	// appVersion, so the chart's default values run them.
	BerthTag string
	// Timings of Start's phases.
	Timings Timings

	log       logr.Logger
	closed    bool
	dir       string
	bins      controlplane.ClusterPaths
	kcm       *controlplane.Process
	scheduler *controlplane.Process
	// podNetns are the pods' network namespaces (cni-*) that existed
	// before the cluster: teardown removes only the others.
	podNetns map[string]bool
}

// Timings are how long Start's phases took.
type Timings struct {
	// Build is building or reusing the binaries and building the images.
	Build time.Duration
	// Start is from the lab's creation until every node is Ready.
	Start time.Duration
}

// Commands are the host's commands New needs (see internal/hostdeps).
var Commands = []string{"ip", "nsenter", "containerd", "ctr", "runc", "/usr/bin/containerd-shim-runc-v2", "nft"}

// Start brings up a cluster for tb (see New) and tears it down in tb's
// cleanup. It fails tb on error, and skips it (fails under CI=true) without
// root or the Debian packages.
func Start(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	netlab.RequireRoot(tb)
	hostdeps.Require(tb, Commands...)
	c, err := New(tb.Context(), opts, ktesting.NewLogger(tb, ktesting.NewConfig()))
	if err != nil {
		tb.Fatal(err)
	}
	c.Lab.ForTest(tb)
	tb.Cleanup(func() {
		if tb.Failed() {
			for _, n := range c.Nodes {
				tb.Logf("%s", c.nodeLogs(n))
			}
			tb.Logf("control plane logs:\n%s", c.ControlPlane.LogTails(40))
		}
		if err := c.Close(); err != nil {
			tb.Errorf("cluster teardown: %v", err)
		}
	})
	return c
}

// New brings up a cluster: binaries (cached, see
// controlplane.ClusterBinaryPaths), images, a lab, the control plane,
// kube-controller-manager, kube-scheduler and opts.Nodes Ready nodes. It
// needs root and the Commands. The cluster runs until Close, whatever
// becomes of ctx; on error New removes what it made.
func New(ctx context.Context, opts Options, log logr.Logger) (_ *Cluster, err error) {
	if opts.Nodes == 0 {
		opts.Nodes = 2
	}
	if opts.Nodes > maxNodes {
		return nil, fmt.Errorf("cluster: %d nodes, at most %d", opts.Nodes, maxNodes)
	}
	if opts.KubeProxyMode == "" {
		opts.KubeProxyMode = "nftables"
	}
	ctx = klog.NewContext(ctx, log)
	c := &Cluster{log: log, podNetns: podNetnsNames()}
	defer func() {
		if err != nil {
			cerr := c.Close()
			if cerr != nil {
				log.Error(cerr, "Cleaning up after a failed start")
			}
			err = errors.Join(fmt.Errorf("cluster: %w", err), cerr)
		}
	}()

	began := time.Now()
	root, err := controlplane.RepoRoot()
	if err != nil {
		return nil, err
	}
	c.dir, err = os.MkdirTemp("", "berth-cluster-")
	if err != nil {
		return nil, err
	}
	c.bins, err = controlplane.ClusterBinaryPaths(ctx)
	if err != nil {
		return nil, err
	}
	archives, tag, err := buildImages(ctx, root, c.dir)
	if err != nil {
		return nil, err
	}
	c.BerthTag = tag
	c.Timings.Build = time.Since(began)

	began = time.Now()
	if c.Lab, err = netlab.Create(); err != nil {
		return nil, err
	}
	c.ClusterCIDR = clusterCIDR(c.Lab.Prefix4)
	c.ClusterCIDR6 = clusterCIDR6(c.Lab.Prefix6)
	for i := range opts.Nodes {
		name := "node" + strconv.Itoa(i+1)
		h, err := c.Lab.CreateHost(name)
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, &Node{
			Name:       name,
			Host:       h,
			dir:        filepath.Join(c.dir, name),
			cgroupRoot: "/berth-" + c.Lab.ID + "-" + name,
		})
	}
	c.ControlPlane, err = controlplane.Start(ctx, controlplane.Options{
		BindAddress:           c.Lab.Gateway4,
		SkipCRDs:              true, // the chart installs them, as for an operator
		ServiceClusterIPRange: ServiceCIDR + "," + ServiceCIDR6,
		ControllerManager:     true,
		APIServerBinary:       c.bins.APIServer,
		EtcdBinary:            c.bins.Etcd,
		ExtraAPIServerArgs:    []string{"--allow-privileged=true", "--kubelet-preferred-address-types=InternalIP"},
	})
	if err != nil {
		return nil, err
	}
	c.Kube = kubernetes.NewForConfigOrDie(c.ControlPlane.RESTConfig())
	if err := c.startControllers(); err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(c.Nodes))
	for i, n := range c.Nodes {
		wg.Go(func() { errs[i] = c.startNode(ctx, n, archives) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := c.connectNodes(ctx, opts.KubeProxyMode); err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	c.Timings.Start = time.Since(began)
	log.Info("Cluster ready", "nodes", len(c.Nodes), "build", c.Timings.Build.Round(time.Millisecond),
		"start", c.Timings.Start.Round(time.Millisecond), "dir", c.dir, "lab", c.Lab.ID)
	return c, nil
}

// Dir is the cluster's directory: the nodes' state, the images, the
// daemons' logs. Close removes it.
func (c *Cluster) Dir() string { return c.dir }

// startControllers starts kube-controller-manager and kube-scheduler in the
// root namespace.
func (c *Cluster) startControllers() error {
	cp := c.ControlPlane
	flags, err := controllerFlags(cp.Kubeconfig())
	if err != nil {
		return err
	}
	c.kcm, err = startProc(c.dir, "kube-controller-manager", "", append(append([]string{c.bins.ControllerManager}, flags...),
		"--use-service-account-credentials=false",
		"--service-account-private-key-file="+cp.ServiceAccountKeyFile(),
		"--root-ca-file="+cp.CAFile(),
		"--allocate-node-cidrs=true",
		"--cluster-cidr="+c.ClusterCIDR.String()+","+c.ClusterCIDR6.String(),
		"--node-cidr-mask-size-ipv4=25",
		"--node-cidr-mask-size-ipv6=64",
		"--service-cluster-ip-range="+ServiceCIDR+","+ServiceCIDR6,
		// A stopped node goes NotReady within seconds, not the default
		// 50: the layer-2 failover scenario waits for it.
		"--node-monitor-period=2s",
		"--node-monitor-grace-period=16s",
		"--controllers=*,-bootstrapsigner,-tokencleaner",
	)...)
	if err != nil {
		return err
	}
	if flags, err = controllerFlags(cp.Kubeconfig()); err != nil {
		return err
	}
	c.scheduler, err = startProc(c.dir, "kube-scheduler", "", append([]string{c.bins.Scheduler}, flags...)...)
	return err
}

// controllerFlags are the flags kube-controller-manager and kube-scheduler
// share: the admin kubeconfig, no leader election, and serving on a free
// loopback port.
func controllerFlags(kubeconfig string) ([]string, error) {
	port, err := controlplane.FreePort(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		return nil, err
	}
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--leader-elect=false",
	}, nil
}

// startNode starts the node's containerd, imports the images and starts its
// kubelet.
func (c *Cluster) startNode(ctx context.Context, n *Node, archives []string) error {
	for _, d := range []string{"containerd", "kubelet", "cni/net.d", "cni/state", "pod-logs", "manifests"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := n.makeCgroupRoot(); err != nil {
		return err
	}
	if _, err := n.Host.Exec(ctx, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"); err != nil {
		return err
	}
	cfg := filepath.Join(n.dir, "containerd", "config.toml")
	if err := os.WriteFile(cfg, []byte(n.containerdConfig(c.bins.CNIPlugins)), 0o644); err != nil {
		return err
	}
	var err error
	n.containerd, err = startProc(n.dir, "containerd", n.Host.Netns, "containerd", "--config", cfg)
	if err != nil {
		return err
	}
	if err := waitSocket(ctx, n.containerd, n.socket()); err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	for _, a := range archives {
		if _, err := n.ctr(ctx, "images", "import", a); err != nil {
			return fmt.Errorf("%s: %w", n.Name, err)
		}
	}
	kcfg := filepath.Join(n.dir, "kubelet", "config.yaml")
	if err := os.WriteFile(kcfg, []byte(n.kubeletConfig(c.ControlPlane.CAFile())), 0o644); err != nil {
		return err
	}
	n.kubeletArgs = []string{c.bins.Kubelet,
		"--config=" + kcfg,
		"--kubeconfig=" + c.ControlPlane.Kubeconfig(),
		"--root-dir=" + filepath.Join(n.dir, "kubelet"),
		"--cert-dir=" + filepath.Join(n.dir, "kubelet", "pki"),
		"--hostname-override=" + n.Name,
		"--node-ip=" + n.Host.IPv4.String() + "," + n.Host.IPv6.String(),
	}
	return n.startKubelet()
}

// startKubelet starts (or restarts) the node's kubelet.
func (n *Node) startKubelet() error {
	var err error
	n.kubelet, err = startProc(n.dir, "kubelet", n.Host.Netns, n.kubeletArgs...)
	return err
}
