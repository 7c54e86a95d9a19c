package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/controlplane"
	"github.com/berthlb/berth/e2e/frr"
	"github.com/berthlb/berth/e2e/netlab"
)

// The AS numbers of the BGP e2e tests: the routers' and the nodes'.
const (
	routerASN = 64512
	nodeASN   = 64513
	// berthNS is Berth's namespace, as the manifests install it: its
	// ServiceAccounts, Leases and the speaker's Secrets live there.
	berthNS = "berth-system"
	// speakerNS is where BGP password Secrets live.
	speakerNS = berthNS
	// nodeLabel carries the node's name, for selectors.
	nodeLabel = "e2e.berth.dev/node"
)

// speakerLab is a control plane reachable from a netlab bridge, a
// berth-controller, and nodes: each a namespace on the bridge with a Node
// object and, once started, a berth-speaker.
type speakerLab struct {
	t     testing.TB
	lab   *netlab.Lab
	e     *env
	ctrl  *controllerProc
	nodes []*labNode
}

// labNode is one node of a speakerLab.
type labNode struct {
	name    string
	host    *netlab.Host
	speaker *speakerProc
}

// newSpeakerLab builds a lab with n nodes and starts the controller; the
// speakers are started by startSpeakers, once the routers run.
func newSpeakerLab(t testing.TB, n int) *speakerLab {
	t.Helper()
	return newSpeakerLabWith(t, n, controlplane.Options{})
}

// newSpeakerLabWith is newSpeakerLab with control plane options and extra
// controller args; the bind address is always the lab's gateway.
func newSpeakerLabWith(t testing.TB, n int, opts controlplane.Options, ctrlArgs ...string) *speakerLab {
	t.Helper()
	lab := netlab.New(t)
	opts.BindAddress = lab.Gateway4
	e := newEnvWith(t, opts)
	sl := &speakerLab{t: t, lab: lab, e: e}
	e.namespace(t, speakerNS, nil)
	ctrl := e.startController(t, ctrlArgs...)
	sl.ctrl = ctrl
	for i := range n {
		name := fmt.Sprintf("node%d", i+1)
		h := lab.AddHost(name)
		if _, err := controlplane.CreateNodeWith(t.Context(), e.kube, controlplane.NodeConfig{
			Name: name, Addresses: []netip.Addr{h.IPv4, h.IPv6}, Labels: map[string]string{nodeLabel: name},
		}); err != nil {
			t.Fatal(err)
		}
		sl.nodes = append(sl.nodes, &labNode{name: name, host: h})
	}
	ctrl.waitReady(t)
	return sl
}

// applySlice creates the EndpointSlice or replaces the one of its name
// (no endpoint controller runs in this control plane).
func (e *env) applySlice(t testing.TB, es *discoveryv1.EndpointSlice) {
	t.Helper()
	slices := e.kube.DiscoveryV1().EndpointSlices(es.Namespace)
	retryUpdate(t, "EndpointSlice "+es.Name, func(ctx context.Context) error {
		cur, err := slices.Get(ctx, es.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = slices.Create(ctx, es, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		es.ResourceVersion = cur.ResourceVersion
		_, err = slices.Update(ctx, es, metav1.UpdateOptions{})
		return err
	})
}

// neighbors returns the nodes' addresses as a router's neighbors of AS asn.
func (sl *speakerLab) neighbors(asn uint32, password string) []frr.Neighbor {
	var out []frr.Neighbor
	for _, n := range sl.nodes {
		out = append(out, frr.Neighbor{Addr: n.host.IPv4, ASN: asn, Password: password}, frr.Neighbor{Addr: n.host.IPv6, ASN: asn, Password: password})
	}
	return out
}

// addrs4 and addrs6 are the nodes' addresses, sorted, for comparing next hops.
func (sl *speakerLab) addrs(v6 bool, nodes ...*labNode) []netip.Addr {
	if nodes == nil {
		nodes = sl.nodes
	}
	var out []netip.Addr
	for _, n := range nodes {
		if v6 {
			out = append(out, n.host.IPv6)
		} else {
			out = append(out, n.host.IPv4)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func (sl *speakerLab) startSpeakers(args ...string) {
	sl.t.Helper()
	for _, n := range sl.nodes {
		n.speaker = startSpeaker(sl.t, sl.t, sl.e, n, args...)
	}
}

// speakerProc is a berth-speaker running in a node's namespace.
type speakerProc struct {
	*proc
	node    *labNode
	metrics string
	pid     int
}

// startSpeaker runs berth-speaker in n's namespace, as ServiceAccount
// berth-speaker with a token bound to its Pod on n (see
// speakerKubeconfig), with forwarding off
// (tested elsewhere). It is killed at owner's cleanup unless it exited
// already: a subtest that restarts a speaker passes the whole test as owner,
// so that the speaker outlives the subtest.
func startSpeaker(t, owner testing.TB, e *env, n *labNode, args ...string) *speakerProc {
	t.Helper()
	return startSpeakerBin(t, owner, e, n, berthBins.path(t, "berth-speaker"), args...)
}

// startSpeakerBin is startSpeaker with the speaker binary bin (another
// build, say).
func startSpeakerBin(t, owner testing.TB, e *env, n *labNode, bin string, args ...string) *speakerProc {
	t.Helper()
	metrics := netip.AddrPortFrom(n.host.IPv4, 9631).String()
	all := append([]string{bin,
		"--kubeconfig", e.speakerKubeconfig(t, n.name),
		"--node-name", n.name,
		"--namespace", speakerNS,
		"--forwarding=false",
		"--metrics-addr", metrics,
		"-v=2",
	}, args...)
	// Not bound to the test's context: stopping is explicit (signal), and
	// cleanup kills whatever is left.
	cmd := n.host.Command(context.Background(), all...)
	cmd.Env = berthEnviron()
	p := startProc(owner, "berth-speaker "+n.name, cmd, syscall.SIGKILL)
	// ip netns exec execs the speaker in place, so this pid is the
	// speaker's own.
	return &speakerProc{proc: p, node: n, metrics: metrics, pid: cmd.Process.Pid}
}

// waitReadyz polls the speaker's /readyz until it answers 200 and returns
// the last body it answered before that (empty if it was ready at once).
func (p *speakerProc) waitReadyz(t testing.TB) (before string) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	err := wait.PollUntilContextTimeout(t.Context(), 25*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		resp, err := client.Get("http://" + p.metrics + "/readyz")
		if err != nil {
			return false, nil
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK {
			return true, nil
		}
		before = string(body)
		return false, nil
	})
	if err != nil {
		t.Fatalf("speaker on %s not ready: %v; last answer %q", p.node.name, err, before)
	}
	return before
}

// signal sends sig to the speaker.
func (p *speakerProc) signal(sig syscall.Signal) {
	_ = syscall.Kill(p.pid, sig)
}

// metric returns the value of the sample of name whose labels contain
// labels (`peer="r1"`), "" if there is none.
func (p *speakerProc) metric(t testing.TB, name, labels string) string {
	t.Helper()
	v, _ := scrapeMetric(p.metrics, name, labels)
	return v
}

// number is metric as a number; it fails t if the speaker does not
// expose it.
func (p *speakerProc) number(t testing.TB, name, labels string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(p.metric(t, name, labels), 64)
	if err != nil {
		t.Fatalf("%s: %s{%s}: %v", p.node.name, name, labels, err)
	}
	return v
}

// bgpPeer creates a BerthBGPPeer.
func (sl *speakerLab) bgpPeer(name string, addr netip.Addr, asn, localASN int64, mut ...func(*v1alpha1.BerthBGPPeerSpec)) {
	sl.t.Helper()
	p := &v1alpha1.BerthBGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.BerthBGPPeerSpec{
		Address: addr.String(), ASN: asn, LocalASN: localASN,
	}}
	for _, m := range mut {
		m(&p.Spec)
	}
	if _, err := sl.e.berth.BerthV1alpha1().BerthBGPPeers().Create(sl.t.Context(), p, metav1.CreateOptions{}); err != nil {
		sl.t.Fatalf("create BerthBGPPeer %s: %v", name, err)
	}
}

// updatePeer changes a BerthBGPPeer's spec, retrying on conflicts.
func (sl *speakerLab) updatePeer(name string, mut func(*v1alpha1.BerthBGPPeerSpec)) {
	sl.t.Helper()
	sl.e.updatePeer(sl.t, name, mut)
}

// updatePeer changes the BerthBGPPeer name's spec with mut.
func (e *env) updatePeer(t testing.TB, name string, mut func(*v1alpha1.BerthBGPPeerSpec)) {
	t.Helper()
	retryUpdate(t, "BerthBGPPeer "+name, func(ctx context.Context) error {
		p, err := e.berth.BerthV1alpha1().BerthBGPPeers().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		mut(&p.Spec)
		_, err = e.berth.BerthV1alpha1().BerthBGPPeers().Update(ctx, p, metav1.UpdateOptions{})
		return err
	})
}

// advertise creates a BerthBGPAdvertisement.
func (sl *speakerLab) advertise(name string, spec v1alpha1.BerthBGPAdvertisementSpec) {
	sl.t.Helper()
	a := &v1alpha1.BerthBGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	if _, err := sl.e.berth.BerthV1alpha1().BerthBGPAdvertisements().Create(sl.t.Context(), a, metav1.CreateOptions{}); err != nil {
		sl.t.Fatalf("create BerthBGPAdvertisement %s: %v", name, err)
	}
}

// secret creates a Secret in Berth's namespace.
func (sl *speakerLab) secret(name string, data map[string]string) {
	sl.t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: speakerNS, Name: name}, StringData: data}
	if _, err := sl.e.kube.CoreV1().Secrets(speakerNS).Create(sl.t.Context(), s, metav1.CreateOptions{}); err != nil {
		sl.t.Fatalf("create Secret %s: %v", name, err)
	}
}

// allowSecrets lets the speakers read Secrets names in Berth's namespace
// the way the manifests tell an operator to: by adding them to the
// resourceNames of the shipped Role that grants the speaker its Secrets.
// Without it a speaker may read only the Secrets the manifests name.
func (sl *speakerLab) allowSecrets(names ...string) {
	sl.t.Helper()
	// Applies the shipped RBAC first, so that no later start of a speaker
	// applies it again over the extension.
	sl.e.saKubeconfig(sl.t, "berth-speaker")
	dir, err := controlplane.ManifestsDir()
	if err != nil {
		sl.t.Fatal(err)
	}
	rbac, err := controlplane.LoadRBAC(dir, berthNS, "berth-speaker")
	if err != nil {
		sl.t.Fatal(err)
	}
	extended := false
	for _, role := range rbac.Roles {
		for i := range role.Rules {
			rule := &role.Rules[i]
			if slices.Contains(rule.Resources, "secrets") && len(rule.ResourceNames) > 0 {
				rule.ResourceNames = append(rule.ResourceNames, names...)
				extended = true
			}
		}
	}
	if !extended {
		sl.t.Fatal("the shipped RBAC has no Role granting the speaker Secrets by name")
	}
	if err := sl.e.cp.ApplyRBAC(sl.t.Context(), rbac); err != nil {
		sl.t.Fatal(err)
	}
}

// setUnschedulable cordons or uncordons a node.
func (sl *speakerLab) setUnschedulable(n *labNode, v bool) {
	sl.t.Helper()
	retryUpdate(sl.t, "node "+n.name, func(ctx context.Context) error {
		node, err := sl.e.kube.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		node.Spec.Unschedulable = v
		_, err = sl.e.kube.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{})
		return err
	})
}

// endpoints writes the EndpointSlice of Service ns/svc with one endpoint
// per node in ready (no controller-manager runs to do it).
func (sl *speakerLab) endpoints(ns, svc string, ready map[*labNode]bool) {
	sl.t.Helper()
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svc + "-e2e", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for i, n := range sl.nodes {
		r, ok := ready[n]
		if !ok {
			continue
		}
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.244.%d.10", i)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(r)},
			NodeName:   ptr.To(n.name),
		})
	}
	sl.e.applySlice(sl.t, es)
}

// retryUpdate runs f until it succeeds, retrying conflicts, for 10 s.
func retryUpdate(t testing.TB, what string, f func(context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f(t.Context())
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) || time.Now().After(deadline) {
			t.Fatalf("update %s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// poll calls f every 20 ms until it returns nil, and fails t with f's last
// error after d. It returns how long it took.
func poll(t testing.TB, d time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := f()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v: %v", what, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// holdsFor calls f every 20 ms for the whole of d and fails t at its first
// error: a negative check that sees misbehaviour starting anywhere in the
// window, not only at its end.
func holdsFor(t testing.TB, d time.Duration, what string, f func() error) {
	t.Helper()
	for start := time.Now(); time.Since(start) < d; time.Sleep(20 * time.Millisecond) {
		if err := f(); err != nil {
			t.Fatalf("%s: broken %v into the %v window: %v", what, time.Since(start).Round(time.Millisecond), d, err)
		}
	}
}

// waitNextHops waits until host's kernel route for pfx has exactly want as
// next hops (none: no route) and returns how long that took.
func waitNextHops(t testing.TB, h *netlab.Host, pfx netip.Prefix, want []netip.Addr, d time.Duration) time.Duration {
	t.Helper()
	return poll(t, d, fmt.Sprintf("%s: kernel route %s via %v", h.Name, pfx, want), func() error {
		if got := frr.KernelNextHops(t, h, pfx); !slices.Equal(got, want) {
			return fmt.Errorf("next hops %v", got)
		}
		return nil
	})
}

// host returns the host route of a.
func hostRoute(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// split returns a Service's IPv4 and IPv6 addresses.
func split(as []netip.Addr) (v4, v6 netip.Addr) {
	for _, a := range as {
		if a.Is4() {
			v4 = a
		} else {
			v6 = a
		}
	}
	return v4, v6
}
