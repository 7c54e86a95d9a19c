package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/client/clientset/versioned"
	"github.com/berthlb/berth/e2e/controlplane"
	"github.com/berthlb/berth/e2e/frr"
	"github.com/berthlb/berth/e2e/netlab"
	"github.com/berthlb/berth/internal/hostdeps"
)

// The demo network's AS numbers and the client's subnet behind the router
// (documentation ranges, apart from the example pools).
const (
	routerASN = 64512
	nodeASN   = 64513
)

// berthNamespace is where the manifests put Berth's ServiceAccounts, and
// the speakers' default namespace.
const berthNamespace = "berth-system"

// network is the demo's namespaces: a router running FRR, two nodes
// running berth-speaker with BGP and forwarding, and a client behind the
// router.
type network struct {
	lab     *netlab.Lab
	router  *frr.Router
	nodes   []*netlab.Host
	client  *netlab.Host
	speaker string // berth-speaker's path
	logDir  string
	// cleanups stop the listeners and the speakers, last added first.
	cleanups []func()
}

// installNetworkTools installs, as root and after saying so, the Debian
// packages the network part needs when they are missing (those of
// internal/hostdeps/packages.txt used by "demo": FRR for the router,
// nftables, iproute2). A failure is reported and leaves the demo to skip
// the network part.
func installNetworkTools(ctx context.Context, out io.Writer) {
	if os.Geteuid() != 0 {
		return
	}
	if err := hostdeps.Install(ctx, out, "The demo's network part", hostdeps.Missing("demo")); err != nil {
		fmt.Fprintf(out, "    %v\n", err)
	}
}

// networkUnavailable says why the demo cannot build its network, "" if it
// can.
func networkUnavailable() (why, speaker string) {
	if os.Geteuid() != 0 {
		return "not running as root (network namespaces, FRR and nftables need it); run `sudo make demo` to see traffic flow", ""
	}
	if missing := hostdeps.Missing("demo"); len(missing) > 0 {
		p := missing[0].Name
		return fmt.Sprintf("the Debian package %s is not installed and could not be installed; `apt-get install %s` adds it", p, p), ""
	}
	exe, err := os.Executable()
	if err != nil {
		return "cannot find berth-speaker: " + err.Error(), ""
	}
	speaker = filepath.Join(filepath.Dir(exe), "berth-speaker")
	if _, err := os.Stat(speaker); err != nil {
		return "berth-speaker is not next to berth-demo (" + speaker + "); run `make build` first", ""
	}
	return "", speaker
}

// newNetwork makes the lab (its bridge is where the API server listens, so
// it comes before the control plane) with its router, nodes and client.
func newNetwork(ctx context.Context, speaker string) (_ *network, err error) {
	n := &network{speaker: speaker}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	if n.lab, err = netlab.Create(); err != nil {
		return nil, err
	}
	for _, name := range []string{"node1", "node2"} {
		h, err := n.lab.CreateHost(name)
		if err != nil {
			return nil, err
		}
		n.nodes = append(n.nodes, h)
	}
	var neighbors []frr.Neighbor
	for _, h := range n.nodes {
		neighbors = append(neighbors, frr.Neighbor{Addr: h.IPv4, ASN: nodeASN}, frr.Neighbor{Addr: h.IPv6, ASN: nodeASN})
	}
	if n.router, err = frr.NewRouter(ctx, n.lab, "router", frr.Config{ASN: routerASN, Neighbors: neighbors, MaximumPaths: 8}); err != nil {
		return nil, err
	}
	if err := n.wire(ctx); err != nil {
		return nil, err
	}
	return n, nil
}

// wire puts the client behind the router, lets the router spread flows
// over the nodes by port, and routes the nodes' replies back through it.
func (n *network) wire(ctx context.Context) error {
	r := n.router.Host
	c, err := n.lab.AddHostBehind(ctx, r, "client")
	if err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "ip", "netns", "exec", r.Netns, "sysctl", "-qw",
		"net.ipv4.fib_multipath_hash_policy=1", "net.ipv6.fib_multipath_hash_policy=1").CombinedOutput(); err != nil {
		return fmt.Errorf("router multipath hashing: %w: %s", err, out)
	}
	for _, h := range n.nodes {
		// Nodes have no default route: replies to the client go back
		// through the router.
		if err := netlab.RouteBehind(ctx, h, r); err != nil {
			return err
		}
	}
	n.client = c
	return nil
}

// close stops everything the network started and removes the namespaces.
func (n *network) close() {
	for i := len(n.cleanups) - 1; i >= 0; i-- {
		n.cleanups[i]()
	}
	n.cleanups = nil
	if n.router != nil {
		_ = n.router.Close()
	}
	if n.lab != nil {
		_ = n.lab.Close()
	}
	if n.logDir != "" {
		_ = os.RemoveAll(n.logDir)
	}
}

// run registers the nodes and the BGP configuration, starts the NodePort
// listeners and the speakers, and shows the router's routes and the
// client's traffic.
func (n *network) run(ctx context.Context, out io.Writer, cp *controlplane.ControlPlane, kube kubernetes.Interface, berth versioned.Interface, services []*unstructured.Unstructured) error {
	fmt.Fprintf(out, "\n==> Network: router %s (FRR, AS %d), nodes %s and %s (berth-speaker, AS %d), client %s behind the router\n",
		n.router.Host.IPv4, routerASN, n.nodes[0].IPv4, n.nodes[1].IPv4, nodeASN, n.client.IPv4)
	for _, h := range n.nodes {
		if _, err := controlplane.CreateNodeWith(ctx, kube, controlplane.NodeConfig{Name: h.Name, Addresses: []netip.Addr{h.IPv4, h.IPv6}}); err != nil {
			return fmt.Errorf("create node %s: %w", h.Name, err)
		}
	}
	for _, p := range []struct {
		name string
		addr netip.Addr
	}{{"router-v4", n.router.Host.IPv4}, {"router-v6", n.router.Host.IPv6}} {
		peer := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: p.name},
			Spec: v1alpha1.BGPPeerSpec{Address: p.addr.String(), ASN: routerASN, LocalASN: nodeASN}}
		if _, err := berth.BerthV1alpha1().BGPPeers().Create(ctx, peer, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create BGPPeer %s: %w", p.name, err)
		}
		fmt.Fprintf(out, "    created bgppeer %s (%s)\n", p.name, p.addr)
	}
	// An empty selector advertises every pool's addresses to every peer.
	adv := &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}}
	if _, err := berth.BerthV1alpha1().BGPAdvertisements().Create(ctx, adv, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create BGPAdvertisement: %w", err)
	}
	fmt.Fprintln(out, "    created bgpadvertisement all (every pool, every peer)")

	svcs, err := currentServices(ctx, kube, services)
	if err != nil {
		return err
	}
	if err := n.listen(svcs); err != nil {
		return err
	}
	// Each speaker's token is bound to its Pod on its node, as the
	// kubelet's is: the chart's admission policy lets a speaker write only
	// its own node's BerthNodeStatus.
	kubeconfigs := map[string]string{}
	for _, h := range n.nodes {
		if kubeconfigs[h.Name], err = cp.NodeServiceAccountKubeconfig(ctx, berthNamespace, "berth-speaker", h.Name); err != nil {
			return err
		}
	}
	if err := n.startSpeakers(kubeconfigs); err != nil {
		return err
	}
	fmt.Fprintf(out, "    started berth-speaker on %s and %s (logs in %s)\n", n.nodes[0].Name, n.nodes[1].Name, n.logDir)

	want := serviceAddrs(svcs)
	n.waitRoutes(ctx, want)
	fmt.Fprintf(out, "\n==> Router routes learned over BGP (ip -n %s route show proto bgp)\n", n.router.Host.Netns)
	for _, fam := range []string{"-4", "-6"} {
		o, err := exec.CommandContext(ctx, "ip", fam, "-n", n.router.Host.Netns, "route", "show", "proto", "bgp").CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip route: %w: %s", err, o)
		}
		for line := range strings.Lines(string(o)) {
			fmt.Fprintf(out, "    %s", line)
		}
	}
	return n.traffic(ctx, out, svcs)
}

func currentServices(ctx context.Context, kube kubernetes.Interface, services []*unstructured.Unstructured) ([]*corev1.Service, error) {
	var out []*corev1.Service
	for _, s := range services {
		svc, err := kube.CoreV1().Services(s.GetNamespace()).Get(ctx, s.GetName(), metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		out = append(out, svc)
	}
	return out, nil
}

func serviceAddrs(svcs []*corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, s := range svcs {
		for _, ing := range s.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(ing.IP); err == nil && !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// listen starts, on both nodes and both of their addresses, a stand-in for
// each NodePort (there is no kube-proxy here): an HTTP server for TCP, an
// echo for UDP, answering "served by <node> (NodePort <port>, client
// <address>)".
func (n *network) listen(svcs []*corev1.Service) error {
	for _, s := range svcs {
		for _, p := range s.Spec.Ports {
			if p.NodePort == 0 {
				continue
			}
			for _, h := range n.nodes {
				for _, a := range []netip.Addr{h.IPv4, h.IPv6} {
					if err := n.listenOne(h, a, p.Protocol, int(p.NodePort)); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

func (n *network) listenOne(h *netlab.Host, a netip.Addr, proto corev1.Protocol, nodePort int) error {
	addr := netip.AddrPortFrom(a, uint16(nodePort)).String()
	kind := "tcp"
	if proto == corev1.ProtocolUDP {
		kind = "udp"
	}
	l, pc, err := h.Listen(kind, addr)
	if err != nil {
		return fmt.Errorf("%s: listen %s %s: %w", h.Name, kind, addr, err)
	}
	answer := func(client string) string {
		return fmt.Sprintf("served by %s (NodePort %d, client %s)\n", h.Name, nodePort, client)
	}
	if pc != nil {
		n.cleanups = append(n.cleanups, func() { _ = pc.Close() })
		go func() {
			buf := make([]byte, 1500)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo([]byte(answer(from.String())), from)
			}
		}()
		return nil
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, answer(r.RemoteAddr))
	})}
	n.cleanups = append(n.cleanups, func() { _ = srv.Close() })
	go func() { _ = srv.Serve(l) }()
	return nil
}

// startSpeakers runs berth-speaker in each node with its kubeconfig, BGP and
// forwarding on, removing its nftables table when stopped.
func (n *network) startSpeakers(kubeconfigs map[string]string) error {
	dir, err := os.MkdirTemp("", "berth-demo-speakers-")
	if err != nil {
		return err
	}
	n.logDir = dir
	for _, h := range n.nodes {
		logf, err := os.Create(filepath.Join(dir, h.Name+".log"))
		if err != nil {
			return err
		}
		cmd := h.Command(context.Background(), n.speaker,
			"--kubeconfig", kubeconfigs[h.Name], "--node-name", h.Name,
			"--metrics-addr", netip.AddrPortFrom(h.IPv4, 9631).String(),
			"--cleanup-on-exit", "-v=2")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			_ = logf.Close()
			return fmt.Errorf("start berth-speaker on %s: %w", h.Name, err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		n.cleanups = append(n.cleanups, func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			_ = logf.Close()
		})
	}
	return nil
}

// waitRoutes waits (at most 30 s) until the router has a route with both
// nodes as next hops for every address.
func (n *network) waitRoutes(ctx context.Context, addrs []netip.Addr) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		missing := false
		for _, a := range addrs {
			fam := "-4"
			if a.Is6() {
				fam = "-6"
			}
			o, err := exec.CommandContext(ctx, "ip", fam, "-n", n.router.Host.Netns, "route", "show", "exact", netip.PrefixFrom(a, a.BitLen()).String()).Output()
			if err != nil || strings.Count(string(o), "via") < len(n.nodes) {
				missing = true
				break
			}
		}
		if !missing {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// traffic has the client reach every port of every example Service's
// addresses, and prints what answered.
func (n *network) traffic(ctx context.Context, out io.Writer, svcs []*corev1.Service) error {
	fmt.Fprintf(out, "\n==> Traffic from the client (%s, %s) to each Service address\n", n.client.IPv4, n.client.IPv6)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tREQUEST\tANSWER")
	for _, s := range svcs {
		addrs := serviceAddrs([]*corev1.Service{s})
		if len(addrs) == 0 {
			fmt.Fprintf(tw, "%s/%s\t-\tno address, nothing to reach\n", s.Namespace, s.Name)
		}
		for _, a := range addrs {
			for _, p := range s.Spec.Ports {
				target := netip.AddrPortFrom(a, uint16(p.Port))
				var req, answer string
				var err error
				if p.Protocol == corev1.ProtocolUDP {
					req = "udp " + target.String()
					answer, err = n.udp(ctx, target)
				} else {
					req = "http://" + target.String() + "/"
					answer, err = n.get(ctx, req)
				}
				if err != nil {
					answer = "FAILED: " + err.Error()
				}
				fmt.Fprintf(tw, "%s/%s\t%s\t%s\n", s.Namespace, s.Name, req, strings.TrimSpace(answer))
			}
		}
	}
	return tw.Flush()
}

// get fetches url from the client, retrying for a few seconds while the
// speakers program their tables.
func (n *network) get(ctx context.Context, url string) (string, error) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return n.client.DialContext(ctx, network, addr)
		},
		DisableKeepAlives: true,
	}}
	return retry(ctx, func() (string, error) {
		resp, err := client.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	})
}

// udp sends a datagram from the client to target and returns the answer.
func (n *network) udp(ctx context.Context, target netip.AddrPort) (string, error) {
	return retry(ctx, func() (string, error) {
		c, err := n.client.DialContext(ctx, "udp", target.String())
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("hello")); err != nil {
			return "", err
		}
		buf := make([]byte, 1500)
		k, err := c.Read(buf)
		return string(buf[:k]), err
	})
}

func retry(ctx context.Context, f func() (string, error)) (string, error) {
	var last error
	for range 5 {
		s, err := f()
		if err == nil {
			return s, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return "", errors.Join(last, ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
	return "", last
}

// routerRoutes returns the router's BGP routes, one line per prefix with
// its next hops joined, sorted.
func (n *network) routerRoutes(ctx context.Context) ([]string, error) {
	var routes []string
	for _, fam := range []string{"-4", "-6"} {
		o, err := exec.CommandContext(ctx, "ip", fam, "-n", n.router.Host.Netns, "route", "show", "proto", "bgp").CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("ip route: %w: %s", err, o)
		}
		for line := range strings.Lines(string(o)) {
			line = strings.TrimRight(line, "\n")
			if strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
				if len(routes) > 0 {
					routes[len(routes)-1] += " " + strings.Join(strings.Fields(line), " ")
				}
				continue
			}
			routes = append(routes, strings.Join(strings.Fields(line), " "))
		}
	}
	slices.Sort(routes)
	return routes, nil
}

// watchRoutes prints the router's BGP routes as they change (a route that
// appears, disappears or changes its next hops) until ctx is done, so that
// a user who creates, deletes or cordons things sees the effect live.
func (n *network) watchRoutes(ctx context.Context, out io.Writer) {
	prev, _ := n.routerRoutes(ctx)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur, err := n.routerRoutes(ctx)
		if err != nil {
			continue
		}
		stamp := time.Now().Format("15:04:05")
		for _, r := range prev {
			if !slices.Contains(cur, r) {
				fmt.Fprintf(out, "%s router - %s\n", stamp, r)
			}
		}
		for _, r := range cur {
			if !slices.Contains(prev, r) {
				fmt.Fprintf(out, "%s router + %s\n", stamp, r)
			}
		}
		prev = cur
	}
}
