package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/kubectl/pkg/drain"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/cluster"
	"github.com/berthlb/berth/e2e/frr"
	"github.com/berthlb/berth/e2e/netlab"
)

// clusterBGPPool is the BGP scenario's pool; only the client routes it
// (through the router), so it touches nothing outside the lab.
var clusterBGPPool = netip.MustParsePrefix("203.0.113.0/28")

// clusterBGPLab is what the BGP scenarios share: an FRR router peering
// with the speakers the chart runs on every node (BerthBGPPeer "router"), the
// pool "bgp" and its advertisement, and a client outside the cluster that
// routes clusterBGPRoutes through the router.
type clusterBGPLab struct {
	router  *frr.Router
	client  *netlab.Host
	nodeIPs []netip.Addr
}

// clusterBGPRoutes is what the lab's clients route through the router: the
// BGP pool and the forwarding scenario's pools.
var clusterBGPRoutes = netip.MustParsePrefix("203.0.113.0/24")

// setupClusterBGP starts the router and the client, creates the BGP pool,
// peer and advertisement, and waits for a session with every node.
func setupClusterBGP(t *testing.T, c *cluster.Cluster, e *env) *clusterBGPLab {
	ctx := t.Context()
	b := &clusterBGPLab{nodeIPs: clusterNodeIPs(c)}
	var neighbors []frr.Neighbor
	for _, a := range b.nodeIPs {
		neighbors = append(neighbors, frr.Neighbor{Addr: a, ASN: nodeASN})
	}
	// Graceful restart on the router changes nothing for sessions that do
	// not negotiate it; the upgrade scenario turns it on for its peer.
	b.router = frr.Start(t, c.Lab, "router", frr.Config{ASN: routerASN, Neighbors: neighbors, MaximumPaths: 8, GracefulRestart: true})
	// Forward for the client, hashing connections (not just addresses)
	// over the ECMP next hops, and send no ICMP redirects: the client
	// shares the nodes' segment, and a redirect pins it to the one node it
	// names for minutes, past ECMP and past any withdrawal (a drained
	// node's last pod gone, the client's requests were refused until the
	// end: the drain scenario's 17 lost requests).
	if _, err := b.router.Host.Exec(ctx, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1",
		"net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.eth0.send_redirects=0"); err != nil {
		t.Fatal(err)
	}
	b.client = b.addClient(t, c, "client")

	e.pool(t, "bgp", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{v1alpha1.AddressRange(clusterBGPPool.String())}})
	if _, err := e.berth.BerthV1alpha1().BerthBGPPeers().Create(ctx, &v1alpha1.BerthBGPPeer{
		ObjectMeta: metav1.ObjectMeta{Name: "router"},
		Spec:       v1alpha1.BerthBGPPeerSpec{Address: b.router.Host.IPv4.String(), ASN: routerASN, LocalASN: nodeASN},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.berth.BerthV1alpha1().BerthBGPAdvertisements().Create(ctx, &v1alpha1.BerthBGPAdvertisement{
		ObjectMeta: metav1.ObjectMeta{Name: "bgp"},
		Spec:       v1alpha1.BerthBGPAdvertisementSpec{AdvertisementSelector: v1alpha1.AdvertisementSelector{IPPools: []string{"bgp"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSessions(t, b.router, b.nodeIPs)
	return b
}

// addClient adds a host to the lab that routes clusterBGPRoutes through
// the router.
func (b *clusterBGPLab) addClient(t *testing.T, c *cluster.Cluster, name string) *netlab.Host {
	h := c.Lab.AddHost(name)
	if _, err := h.Exec(t.Context(), "ip", "route", "add", clusterBGPRoutes.String(), "via", b.router.Host.IPv4.String()); err != nil {
		t.Fatal(err)
	}
	return h
}

// testClusterBGP is scenario 1: a Deployment of 3 echo pods spread over the
// nodes sits behind a LoadBalancer Service from the BGP pool, and the
// client reaches the pods through the Service's address over the router's
// ECMP route through every node. With externalTrafficPolicy Local the pods
// see the client's own address, and only nodes with a ready pod are next
// hops.
func testClusterBGP(t *testing.T, c *cluster.Cluster, e *env, b *clusterBGPLab) {
	router, client, nodeIPs := b.router, b.client, b.nodeIPs
	const ns = "bgp"
	e.namespace(t, ns, nil)
	deployEcho(t, c, ns, "echo", 3)
	created := time.Now()
	e.service(t, ns, "echo", echoTarget, fromPool("bgp"))
	addr := e.waitAllocated(t, ns, "echo", 1)[0]
	allocated := time.Since(created)
	waitNextHops(t, router.Host, hostRoute(addr), nodeIPs, settle)
	routed := time.Since(created)
	url := fmt.Sprintf("http://%s/", addr)
	first := firstAnswer(t, client, url, settle)
	t.Logf("MEASURED: BGP Service created to address %v, to ECMP route via %d nodes %v, to first answer through %s %v",
		allocated.Round(time.Millisecond), len(nodeIPs), routed.Round(time.Millisecond), addr, (routed + first).Round(time.Millisecond))
	checkBGPNextHops(t, router, hostRoute(addr), nodeIPs)

	answers := askMany(t, client, url, 60)
	if nodes := answers.nodes(); len(nodes) != len(c.Nodes) {
		t.Errorf("60 requests answered by pods on nodes %v (pods %v), want every node", nodes, answers.pods())
	}
	t.Logf("60 requests through %s answered by pods %v", addr, answers.pods())

	e.updateService(t, ns, "echo", func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	poll(t, settle, "pods see the client's own address", func() error {
		a := askMany(t, client, url, 10)
		if hosts := a.clients(); !slices.Equal(hosts, []string{client.IPv4.String()}) {
			return fmt.Errorf("pods saw clients %v", hosts)
		}
		return nil
	})
	scaleEcho(t, c, ns, "echo", 1)
	pods := waitEchoReady(t, c, ns, "echo", 1)
	only := clusterNodeIP(c, pods[0].Spec.NodeName)
	d := waitNextHops(t, router.Host, hostRoute(addr), []netip.Addr{only}, settle)
	t.Logf("externalTrafficPolicy Local, one pod left on %s: the other node's next hop left %v after its pod was gone", pods[0].Spec.NodeName, d)
	// The next hops left; connections already hashed to them may still
	// be refused for a moment (kube-proxy rejects on a node without a
	// local endpoint).
	t.Logf("answers steady %v after the route settled", steadyAnswers(t, client, url, 5))
	a := askMany(t, client, url, 20)
	if hosts := a.clients(); !slices.Equal(hosts, []string{client.IPv4.String()}) {
		t.Errorf("pods saw clients %v, want only %s", hosts, client.IPv4)
	}

	t.Run("Drain", func(t *testing.T) {
		eps := logEndpoints(t, c, ns, "echo")
		scaleEcho(t, c, ns, "echo", 3)
		waitEchoReady(t, c, ns, "echo", 3)
		waitNextHops(t, router.Host, hostRoute(addr), nodeIPs, settle)
		// The pods the scale to one stopped serve on for
		// EchoShutdownDelay, and a node whose new pod is Ready (so
		// that Berth announces it) may still send to its old one until
		// its kube-proxy's next sync (at most --min-sync-period, 1 s,
		// later): should the old pod stop listening in that second,
		// the node refuses (seen: 3 of 216 requests, from the node
		// whose new pod had been Ready for 0.8 s). That is the previous
		// step's tail, not the drain's: wait until the old pods are
		// gone.
		waitEndpointsReady(t, c, ns, "echo", 3)
		t.Logf("answers steady %v after the route to every node", steadyAnswers(t, client, url, 20))
		testClusterDrain(t, c, client, url, eps, func(victim string) error {
			if hops := frr.KernelNextHops(t, router.Host, hostRoute(addr)); slices.Contains(hops, clusterNodeIP(c, victim)) {
				return fmt.Errorf("the router's next hops %v still include it", hops)
			}
			return nil
		})
	})
}

// testClusterDrain is scenario 3: `kubectl drain` (the same library) of a
// node while a client sends a request every 50 ms through the Service: no
// request fails, and the router no longer sends to the node by the time its
// pods are gone (withdrawn says why not). The
// echo pods serve on for EchoShutdownDelay after SIGTERM, as applications
// behind a load balancer should: kubectl evicts them right after the
// cordon, and the withdrawal needs a moment to reach the router. The node
// is uncordoned afterwards.
func testClusterDrain(t *testing.T, c *cluster.Cluster, client *netlab.Host, url string, eps *endpointLog, withdrawn func(victim string) error) {
	victim := c.Nodes[0].Name
	h := &drain.Helper{
		Ctx: t.Context(), Client: c.Kube, Force: true, IgnoreAllDaemonSets: true, DeleteEmptyDirData: true,
		GracePeriodSeconds: -1, Timeout: 90 * time.Second, Out: io.Discard, ErrOut: io.Discard,
	}
	t.Cleanup(func() {
		// t's context has ended by now.
		h.Ctx = context.Background()
		if err := drain.RunCordonOrUncordon(h, nodeObject(t, c, victim), false); err != nil {
			t.Errorf("uncordon %s: %v", victim, err)
		}
	})
	host := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")
	routeBefore, _ := client.Exec(t.Context(), "ip", "route", "get", host)
	t.Logf("client's route to %s before the drain: %s", host, strings.TrimSpace(routeBefore))
	refused := countRefusals(t, c, client)
	p := startProbe(client, url)
	t.Logf("EndpointSlice changes before the probe (time since the Drain subtest began), the probe began at %v:\n%s", time.Since(eps.began).Round(time.Millisecond), eps)
	time.Sleep(time.Second)
	began := time.Now()
	if err := drain.RunCordonOrUncordon(h, nodeObject(t, c, victim), true); err != nil {
		t.Fatal(err)
	}
	if err := drain.RunNodeDrain(h, victim); err != nil {
		t.Fatal(err)
	}
	drained := time.Since(began)
	if err := withdrawn(victim); err != nil {
		t.Errorf("drained %s, whose pods are gone, is still announced: %v", victim, err)
	}
	time.Sleep(2 * time.Second)
	gap, failed, total := p.stop()
	t.Logf("MEASURED: drain of %s (BGP, ECMP, externalTrafficPolicy Local) took %v: %d of %d requests (every 50 ms) failed, longest gap %v; refusals the client received: %v",
		victim, drained.Round(time.Millisecond), failed, total, gap.Round(time.Millisecond), refused)
	if failed > 0 {
		t.Errorf("%d requests failed during the drain of %s (began at %v, the first failures: %q; refusals the client received: %v); EndpointSlice changes:\n%s", failed, victim, time.Second, p.failures(), refused, eps)
	}
}

// steadyAnswers waits until n requests in a row from h to url are
// answered and returns how long that took.
func steadyAnswers(t *testing.T, h *netlab.Host, url string, n int) time.Duration {
	t.Helper()
	return poll(t, settle, fmt.Sprintf("%d answers in a row", n), func() error {
		hc := httpFrom(h)
		for range n {
			if _, err := ask(t.Context(), hc, url); err != nil {
				return err
			}
		}
		return nil
	})
}

// nodeObject returns the named Node.
func nodeObject(t *testing.T, c *cluster.Cluster, name string) *corev1.Node {
	t.Helper()
	n, err := c.Kube.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// echoTarget points a Service's port at the echo pods' named port.
func echoTarget(s *corev1.Service) {
	s.Spec.Ports[0].TargetPort = intstr.FromString("http")
}

// fromPool asks for an address from the named pool.
func fromPool(pool string) svcOpt {
	return func(s *corev1.Service) {
		s.Annotations = map[string]string{v1alpha1.AnnotationPool: pool}
	}
}

// clusterNodeIPs returns the nodes' InternalIPs.
func clusterNodeIPs(c *cluster.Cluster) []netip.Addr {
	var out []netip.Addr
	for _, n := range c.Nodes {
		out = append(out, n.Host.IPv4)
	}
	return out
}

// clusterNodeIP returns the named node's InternalIP.
func clusterNodeIP(c *cluster.Cluster, name string) netip.Addr {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n.Host.IPv4
		}
	}
	return netip.Addr{}
}

// httpFrom is an HTTP client whose every request is a new connection from
// h's namespace (so ECMP hashes each one afresh).
func httpFrom(h *netlab.Host) *http.Client {
	return &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return h.DialContext(ctx, network, addr)
			},
		},
	}
}

// echoAnswer is one line from an echo pod.
type echoAnswer struct{ pod, node, client string }

// ask GETs url from h and parses the echo pod's answer.
func ask(ctx context.Context, hc *http.Client, url string) (echoAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return echoAnswer{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return echoAnswer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return echoAnswer{}, err
	}
	var a echoAnswer
	for _, f := range strings.Fields(string(body)) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "pod":
			a.pod = v
		case "node":
			a.node = v
		case "client":
			if host, _, err := net.SplitHostPort(v); err == nil {
				a.client = host
			}
		}
	}
	if a.pod == "" {
		return a, fmt.Errorf("%s: %s: %q", url, resp.Status, body)
	}
	return a, nil
}

// firstAnswer polls url from h until it answers and returns how long that
// took.
func firstAnswer(t *testing.T, h *netlab.Host, url string, d time.Duration) time.Duration {
	t.Helper()
	hc := httpFrom(h)
	hc.Timeout = 500 * time.Millisecond
	return poll(t, d, "first answer from "+url, func() error {
		_, err := ask(t.Context(), hc, url)
		return err
	})
}

// answers are the echo pods' answers to a series of requests.
type answers []echoAnswer

func (as answers) set(f func(echoAnswer) string) []string {
	var out []string
	for _, a := range as {
		if v := f(a); !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

func (as answers) nodes() []string   { return as.set(func(a echoAnswer) string { return a.node }) }
func (as answers) pods() []string    { return as.set(func(a echoAnswer) string { return a.pod }) }
func (as answers) clients() []string { return as.set(func(a echoAnswer) string { return a.client }) }

// askMany sends n requests, each on a new connection, and fails t if any
// goes unanswered.
func askMany(t *testing.T, h *netlab.Host, url string, n int) answers {
	t.Helper()
	hc := httpFrom(h)
	var out answers
	for i := range n {
		a, err := ask(t.Context(), hc, url)
		if err != nil {
			t.Fatalf("request %d of %d to %s: %v", i+1, n, url, err)
		}
		out = append(out, a)
	}
	return out
}
