package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/cluster"
	"github.com/berthlb/berth/e2e/netlab"
	"github.com/berthlb/berth/internal/hostdeps"
)

// clusterL2Gap bounds the client's longest gap when the announcing node
// dies: the layer-2 target is p99 2 s (docs/layer2.md); the cluster shares
// two busy cores with everything else, so allow some slack.
const clusterL2Gap = 5 * time.Second

// setupClusterL2 creates the layer-2 pool "l2" (addresses on the lab's own
// segment, above the hosts') and its advertisement on eth0, and adds the
// client on that segment.
func setupClusterL2(t *testing.T, c *cluster.Cluster, e *env) (client *netlab.Host) {
	base := c.Lab.Prefix4.Addr().As4()
	base[3] = 240
	pool := netip.PrefixFrom(netip.AddrFrom4(base), 29)
	e.pool(t, "l2", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{v1alpha1.AddressRange(pool.String())}})
	if _, err := e.berth.BerthV1alpha1().BerthL2Advertisements().Create(t.Context(), &v1alpha1.BerthL2Advertisement{
		ObjectMeta: metav1.ObjectMeta{Name: "l2"},
		Spec: v1alpha1.BerthL2AdvertisementSpec{
			AdvertisementSelector: v1alpha1.AdvertisementSelector{IPPools: []string{"l2"}},
			Interfaces:            []string{"eth0"},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return c.Lab.AddHost("l2client")
}

// testClusterL2NodeFailure is scenario 2: the same echo app over ARP from
// the pool "l2" (setupClusterL2), with externalTrafficPolicy Local and a
// pod on each node. The node answering for the address dies (its link
// freezes, its kubelet and containerd are killed): the client's requests
// move to the other node within the layer-2 failover bound,
// kube-controller-manager marks the node NotReady, its pod is rescheduled
// onto the survivor, and only one MAC answers for the address.
func testClusterL2NodeFailure(t *testing.T, c *cluster.Cluster, e *env, client *netlab.Host) {
	hostdeps.Require(t, "arping")
	ctx := t.Context()
	const ns = "l2"
	e.namespace(t, ns, nil)
	deployEcho(t, c, ns, "echo", int32(len(c.Nodes)))
	created := time.Now()
	e.service(t, ns, "echo", echoTarget, fromPool("l2"), func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	addr := e.waitAllocated(t, ns, "echo", 1)[0]
	url := fmt.Sprintf("http://%s/", addr)
	firstAnswer(t, client, url, settle)
	t.Logf("MEASURED: layer-2 Service created to first answer through %s: %v", addr, time.Since(created).Round(time.Millisecond))

	macs := nodeMACs(t, c)
	var owner *cluster.Node
	poll(t, settle, "one node answers ARP for "+addr.String(), func() error {
		got := slices.Compact(arpingFrom(client, addr))
		if len(got) != 1 || macs[got[0]] == nil {
			return fmt.Errorf("ARP replies from %v", got)
		}
		owner = macs[got[0]]
		return nil
	})
	isSurvivor := func(name string) bool { return name != "" && name != owner.Name }
	t.Logf("%s answers for %s; stopping it", owner.Name, addr)

	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.Nodes {
				if n != owner {
					logBerthPods(t, c, n.Name)
				}
			}
			out, _ := client.Exec(context.Background(), "ip", "neigh")
			t.Logf("client's neighbors:\n%s", out)
		}
	})
	probe := startProbe(client, url)
	time.Sleep(time.Second)
	stopped := time.Now()
	if err := owner.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	var moved time.Duration
	poll(t, 30*time.Second, "the client answered from another node", func() error {
		if n := probe.lastNode(); !isSurvivor(n) {
			return fmt.Errorf("last answer from %q", n)
		}
		moved = time.Since(stopped)
		return nil
	})
	if err := c.WaitNodeReady(ctx, owner.Name, false); err != nil {
		t.Fatal(err)
	}
	notReady := time.Since(stopped)
	pods := waitEchoReady(t, c, ns, "echo", len(c.Nodes), owner.Name)
	rescheduled := time.Since(stopped)
	for _, p := range pods {
		if !isSurvivor(p.Spec.NodeName) {
			t.Errorf("pod %s on %s after %s died", p.Name, p.Spec.NodeName, owner.Name)
		}
	}
	time.Sleep(time.Second)
	gap, failed, total := probe.stop()
	t.Logf("MEASURED: layer-2 node failure: answers from another node %v after the stop; longest gap in the client's answers %v (%d of %d requests every 50 ms failed); node NotReady after %v; pods rescheduled and Ready after %v",
		moved.Round(time.Millisecond), gap.Round(time.Millisecond), failed, total, notReady.Round(time.Millisecond), rescheduled.Round(time.Millisecond))
	if gap > clusterL2Gap {
		t.Errorf("longest gap %v, want at most %v", gap, clusterL2Gap)
	}
	got := slices.Compact(arpingFrom(client, addr))
	if len(got) != 1 || macs[got[0]] == nil || macs[got[0]] == owner {
		t.Errorf("after the failure ARP replies for %s came from %v, want one surviving node's MAC", addr, got)
	}
}

// nodeMACs maps each node's eth0 MAC (lower case) to the node.
func nodeMACs(t *testing.T, c *cluster.Cluster) map[string]*cluster.Node {
	t.Helper()
	out := map[string]*cluster.Node{}
	for _, n := range c.Nodes {
		s, err := n.Host.Exec(t.Context(), "cat", "/sys/class/net/eth0/address")
		if err != nil {
			t.Fatal(err)
		}
		out[strings.ToLower(strings.TrimSpace(s))] = n
	}
	return out
}

// arpingFrom asks twice from h who has addr and returns the replies' MACs.
func arpingFrom(h *netlab.Host, addr netip.Addr) []string {
	out, _ := h.Command(context.Background(), "arping", "-b", "-c", "2", "-w", "3", "-I", "eth0", addr.String()).CombinedOutput()
	var macs []string
	for _, m := range arpingReply.FindAllStringSubmatch(string(out), -1) {
		macs = append(macs, strings.ToLower(m[1]))
	}
	return macs
}

// probe sends a request every 50 ms, each on a new connection with a 300 ms
// timeout, and records the longest time between two answers.
type probe struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	lastOK time.Time
	gap    time.Duration
	node   string
	failed int
	total  int
	// errs are the first failures, with their time since the start.
	errs []string
}

func startProbe(h *netlab.Host, url string) *probe {
	ctx, cancel := context.WithCancel(context.Background())
	began := time.Now()
	p := &probe{cancel: cancel, done: make(chan struct{}), lastOK: began}
	hc := httpFrom(h)
	hc.Timeout = 300 * time.Millisecond
	go func() {
		defer close(p.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			a, err := ask(ctx, hc, url)
			now := time.Now()
			p.mu.Lock()
			if ctx.Err() == nil {
				p.total++
				if err != nil {
					p.failed++
					if len(p.errs) < 10 {
						p.errs = append(p.errs, fmt.Sprintf("%v: %v", now.Sub(began).Round(time.Millisecond), err))
					}
				} else {
					p.gap = max(p.gap, now.Sub(p.lastOK))
					p.lastOK, p.node = now, a.node
				}
			}
			p.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

// failures returns the first failures, each with its time since the start.
func (p *probe) failures() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.errs)
}

func (p *probe) lastNode() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.node
}

// stop ends the probe and returns the longest gap, the failed requests and
// all requests.
func (p *probe) stop() (gap time.Duration, failed, total int) {
	p.cancel()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(p.gap, time.Since(p.lastOK)), p.failed, p.total
}
