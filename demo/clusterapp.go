package demo

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/cluster"
)

// clusterBGPPool is the cluster demo's BGP pool: only the client routes it
// (through the router), so it touches nothing outside the lab.
var clusterBGPPool = netip.MustParsePrefix("203.0.113.0/28")

// The cluster demo's application: echo pods in their own namespace behind
// two LoadBalancer Services, one per pool.
const (
	appNamespace = "demo"
	echoApp      = "echo"
	bgpService   = "echo-bgp"
	l2Service    = "echo-l2"
	// requestsPerService is how many requests the client sends to each
	// address, each on a new connection.
	requestsPerService = 6
)

// l2Pool is the layer-2 pool: addresses on the lab's own segment, above
// the hosts'.
func (d *clusterDemo) l2Pool() netip.Prefix {
	base := d.c.Lab.Prefix4.Addr().As4()
	base[3] = 240
	return netip.PrefixFrom(netip.AddrFrom4(base), 29)
}

// configure creates the pools, the BGP peer and the advertisements, as an
// operator would after installing the chart.
func (d *clusterDemo) configure(ctx context.Context) error {
	fmt.Fprintln(d.out, "\n==> Berth's configuration (custom resources)")
	b := d.berth.BerthV1alpha1()
	steps := []struct {
		what   string
		create func() error
	}{
		{"berthippool bgp " + clusterBGPPool.String(), func() error {
			_, err := b.BerthIPPools().Create(ctx, &v1alpha1.BerthIPPool{ObjectMeta: metav1.ObjectMeta{Name: "bgp"},
				Spec: v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{v1alpha1.AddressRange(clusterBGPPool.String())}}}, metav1.CreateOptions{})
			return err
		}},
		{"berthippool l2 " + d.l2Pool().String(), func() error {
			_, err := b.BerthIPPools().Create(ctx, &v1alpha1.BerthIPPool{ObjectMeta: metav1.ObjectMeta{Name: "l2"},
				Spec: v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{v1alpha1.AddressRange(d.l2Pool().String())}}}, metav1.CreateOptions{})
			return err
		}},
		{fmt.Sprintf("berthbgppeer router (%s, AS %d; the nodes are AS %d)", d.router.Host.IPv4, routerASN, nodeASN), func() error {
			_, err := b.BerthBGPPeers().Create(ctx, &v1alpha1.BerthBGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "router"},
				Spec: v1alpha1.BerthBGPPeerSpec{Address: d.router.Host.IPv4.String(), ASN: routerASN, LocalASN: nodeASN}}, metav1.CreateOptions{})
			return err
		}},
		{"berthbgpadvertisement bgp (pool bgp, every peer)", func() error {
			_, err := b.BerthBGPAdvertisements().Create(ctx, &v1alpha1.BerthBGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "bgp"},
				Spec: v1alpha1.BerthBGPAdvertisementSpec{AdvertisementSelector: v1alpha1.AdvertisementSelector{IPPools: []string{"bgp"}}}}, metav1.CreateOptions{})
			return err
		}},
		{"berthl2advertisement l2 (pool l2, ARP on eth0)", func() error {
			_, err := b.BerthL2Advertisements().Create(ctx, &v1alpha1.BerthL2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "l2"},
				Spec: v1alpha1.BerthL2AdvertisementSpec{AdvertisementSelector: v1alpha1.AdvertisementSelector{IPPools: []string{"l2"}},
					Interfaces: []string{"eth0"}}}, metav1.CreateOptions{})
			return err
		}},
	}
	for _, s := range steps {
		if err := s.create(); err != nil {
			return fmt.Errorf("create %s: %w", s.what, err)
		}
		fmt.Fprintf(d.out, "    created %s\n", s.what)
	}
	return nil
}

// deploy runs the echo pods, one per node, and the two Services, and
// returns each Service's address.
func (d *clusterDemo) deploy(ctx context.Context) (map[string]netip.Addr, error) {
	kube := d.c.Kube
	fmt.Fprintf(d.out, "\n==> Application: namespace %s, Deployment %s (%d pods of a tiny HTTP echo server, one per node)\n", appNamespace, echoApp, len(d.c.Nodes))
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNamespace}}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", appNamespace, err)
	}
	if _, err := kube.AppsV1().Deployments(appNamespace).Create(ctx, cluster.EchoDeployment(echoApp, int32(len(d.c.Nodes))), metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create deployment %s: %w", echoApp, err)
	}
	pods, err := d.waitPods(ctx, appNamespace, "app="+echoApp, len(d.c.Nodes))
	if err != nil {
		return nil, err
	}
	tw := table(d.out, "    POD", "NODE", "POD-IP")
	for _, p := range pods {
		row(tw, "    "+p.Name, p.Spec.NodeName, p.Status.PodIP)
	}
	if err := tw.Flush(); err != nil {
		return nil, err
	}

	fmt.Fprintf(d.out, "\n==> Services of type LoadBalancer (kubectl get svc -n %s)\n", appNamespace)
	addrs := map[string]netip.Addr{}
	tw = table(d.out, "    SERVICE", "POOL", "EXTERNAL-IP", "PORT", "ANNOUNCED BY")
	for _, s := range []struct{ name, pool, how string }{
		{bgpService, "bgp", "BGP to the router, from every node"},
		{l2Service, "l2", "ARP, from one node"},
	} {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: s.name, Annotations: map[string]string{v1alpha1.AnnotationPool: s.pool}},
			Spec: corev1.ServiceSpec{
				Type:     corev1.ServiceTypeLoadBalancer,
				Selector: map[string]string{"app": echoApp},
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")}},
			},
		}
		if _, err := kube.CoreV1().Services(appNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("create service %s: %w", s.name, err)
		}
		a, err := d.waitAddress(ctx, s.name)
		if err != nil {
			return nil, err
		}
		addrs[s.name] = a
		row(tw, "    "+appNamespace+"/"+s.name, s.pool, a.String(), "TCP/80", s.how)
	}
	return addrs, tw.Flush()
}

// waitAddress waits until Berth gives the Service an address.
func (d *clusterDemo) waitAddress(ctx context.Context, name string) (netip.Addr, error) {
	var addr netip.Addr
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, clusterWait, true, func(ctx context.Context) (bool, error) {
		s, err := d.c.Kube.CoreV1().Services(appNamespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) == 0 {
			return false, nil
		}
		addr, err = netip.ParseAddr(s.Status.LoadBalancer.Ingress[0].IP)
		return err == nil, nil
	})
	if err != nil {
		return addr, fmt.Errorf("wait for an address for service %s: %w", name, err)
	}
	return addr, nil
}

// traffic shows the router's ECMP route for the BGP address and the
// client's requests to both addresses, curl-style, then which node
// answers ARP for the layer-2 address.
func (d *clusterDemo) traffic(ctx context.Context, addrs map[string]netip.Addr) error {
	bgp, l2 := addrs[bgpService], addrs[l2Service]
	var nodeIPs []string
	for _, n := range d.c.Nodes {
		nodeIPs = append(nodeIPs, n.Host.IPv4.String())
	}
	var route string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, clusterWait, true, func(ctx context.Context) (bool, error) {
		out, err := d.router.Host.Exec(ctx, "ip", "route", "show", "exact", bgp.String()+"/32")
		route = out
		return err == nil && slices.IndexFunc(nodeIPs, func(ip string) bool { return !strings.Contains(out, "via "+ip+" ") }) < 0, nil
	})
	if err != nil {
		return fmt.Errorf("wait for the router's route to %s via %v: %w; it has %q", bgp, nodeIPs, err, route)
	}
	fmt.Fprintf(d.out, "\n==> The router's route to %s, learnt over BGP (ip -n %s route show %s)\n", bgp, d.router.Host.Netns, bgp)
	for line := range strings.Lines(route) {
		fmt.Fprintf(d.out, "    %s", line)
	}

	fmt.Fprintf(d.out, "\n==> Requests from the client namespace %s (%s), each on a new connection; the Services'\n"+
		"    externalTrafficPolicy is Cluster, so kube-proxy may send a request on to the other node and the pod\n"+
		"    sees a node's address as the client\n", d.client.Netns, d.client.IPv4)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.client.DialContext(ctx, network, addr)
		},
	}}
	failed := 0
	for _, s := range []struct {
		addr netip.Addr
		path string
	}{
		{bgp, "client -> router -> ECMP over the nodes -> kube-proxy -> a pod"},
		{l2, "client -> the node answering ARP -> kube-proxy -> a pod"},
	} {
		url := "http://" + s.addr.String() + "/"
		fmt.Fprintf(d.out, "$ curl %s    # %s\n", url, s.path)
		// The first request waits for the announcement and the
		// forwarding to be in place.
		var first string
		err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, clusterWait, true, func(ctx context.Context) (bool, error) {
			body, err := get(ctx, hc, url)
			first = body
			return err == nil, nil
		})
		if err != nil {
			return fmt.Errorf("no answer from %s: %w", url, err)
		}
		fmt.Fprint(d.out, first)
		for range requestsPerService - 1 {
			body, err := get(ctx, hc, url)
			if err != nil {
				failed++
				body = "curl: FAILED: " + err.Error() + "\n"
			}
			fmt.Fprint(d.out, body)
		}
	}
	if err := d.arpOwner(ctx, l2); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d requests failed", failed)
	}
	return nil
}

// get GETs url and returns the body.
func get(ctx context.Context, hc *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(body), err
}

// arpOwner prints which node's MAC the client learnt for the layer-2
// address.
func (d *clusterDemo) arpOwner(ctx context.Context, addr netip.Addr) error {
	neigh, err := d.client.Exec(ctx, "ip", "neigh", "show", addr.String())
	if err != nil {
		return err
	}
	f := strings.Fields(neigh)
	i := slices.Index(f, "lladdr")
	if i < 0 || i+1 >= len(f) {
		return fmt.Errorf("the client has no neighbor entry for %s: %q", addr, neigh)
	}
	mac, owner := f[i+1], "no node"
	for _, n := range d.c.Nodes {
		m, err := n.Host.Exec(ctx, "cat", "/sys/class/net/eth0/address")
		if err == nil && strings.EqualFold(strings.TrimSpace(m), mac) {
			owner = n.Name
		}
	}
	fmt.Fprintf(d.out, "\n==> %s answers ARP for %s: the client's neighbor entry is %s (%s's eth0)\n", owner, addr, mac, owner)
	return nil
}

// table starts a tab-aligned table with its header.
func table(out io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	row(tw, header...)
	return tw
}

func row(tw *tabwriter.Writer, cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")) }
