package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/controlplane"
	"github.com/berthlb/berth/e2e/frr"
)

// BenchmarkSpeakerBGP10k runs the whole chain at scale: 10,000 Services are
// created against the real API server, the controller assigns their
// addresses, one berth-speaker plans and announces them, and an FRR router
// installs them in its kernel. It reports the time from the last address
// assigned until all 10,000 routes are in the router's kernel table, and the
// speaker's peak RSS. b.N is ignored; run with -benchtime=1x.
func BenchmarkSpeakerBGP10k(b *testing.B) {
	for range b.N {
		speakerScaleRun(b, 10000)
	}
}

func speakerScaleRun(b *testing.B, n int) {
	sl := newSpeakerLabWith(b, 1, controlplane.Options{ServiceClusterIPRange: "198.19.0.0/17,2001:db8:ffff::/108"})
	r := frr.Start(b, sl.lab, "r1", frr.Config{ASN: routerASN, Neighbors: sl.neighbors(nodeASN, "")})
	sl.e.namespace(b, "scale", nil)
	sl.e.pool(b, "scale", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.19.128.0/18"}})
	sl.bgpPeer("r1", r.Host.IPv4, routerASN, nodeASN)
	sl.advertise("all", v1alpha1.BerthBGPAdvertisementSpec{})
	sl.startSpeakers()
	sp := sl.nodes[0].speaker
	poll(b, settle, "session established", func() error {
		if v := sp.metric(b, "berth_speaker_bgp_session_up", `peer="r1"`); v != "1" {
			return fmt.Errorf("berth_speaker_bgp_session_up = %q", v)
		}
		return nil
	})

	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	w, err := sl.e.kube.CoreV1().Services("scale").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	var mu sync.Mutex
	assigned := map[string]bool{}
	var lastAssigned time.Time
	allAssigned := make(chan struct{})
	go func() {
		for ev := range w.ResultChan() {
			s, ok := ev.Object.(*corev1.Service)
			if !ok || ev.Type == watch.Deleted || len(s.Status.LoadBalancer.Ingress) == 0 {
				continue
			}
			mu.Lock()
			if !assigned[s.Name] {
				assigned[s.Name] = true
				lastAssigned = time.Now()
				if len(assigned) == n {
					close(allAssigned)
				}
			}
			mu.Unlock()
		}
	}()

	start := time.Now()
	var wg sync.WaitGroup
	const creators = 8
	for c := range creators {
		wg.Go(func() {
			for i := c; i < n; i += creators {
				svc := &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Namespace: "scale", Name: fmt.Sprintf("s%05d", i)},
					Spec: corev1.ServiceSpec{
						Type:                          corev1.ServiceTypeLoadBalancer,
						AllocateLoadBalancerNodePorts: ptr.To(false),
						Ports:                         []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}},
					},
				}
				if _, err := sl.e.kube.CoreV1().Services("scale").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
					b.Errorf("create %s: %v", svc.Name, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	select {
	case <-allAssigned:
	case <-time.After(5 * time.Minute):
		b.Fatalf("not all %d Services got addresses within 5 minutes", n)
	}
	mu.Lock()
	last := lastAssigned
	mu.Unlock()

	var routes int
	err = func() error {
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			out, err := exec.Command("ip", "-n", r.Host.Netns, "route", "show", "proto", "bgp").Output()
			if err != nil {
				return err
			}
			if routes = strings.Count(string(out), "\n"); routes >= n {
				return nil
			}
			time.Sleep(50 * time.Millisecond)
		}
		return fmt.Errorf("only %d of %d routes in the router's kernel after 2 minutes", routes, n)
	}()
	if err != nil {
		b.Fatal(err)
	}
	inKernel := time.Now()
	rss := procPeakRSS(b, sp.pid)
	lag := inKernel.Sub(last)
	writes, size, took := nodeStatusCost(b, sl, sp, n, start)
	b.ReportMetric(lag.Seconds(), "s-last-assigned-to-all-routes")
	b.ReportMetric(rss/(1<<20), "MiB-speaker-peak-RSS")
	b.ReportMetric(writes, "node-status-writes")
	b.ReportMetric(writes/took.Seconds(), "node-status-writes/s")
	b.ReportMetric(float64(size), "bytes-node-status")
	b.Logf("%d Services created and assigned in %v; all %d routes in the router's kernel %v after the last address was assigned; speaker peak RSS %.1f MiB",
		n, last.Sub(start).Round(time.Millisecond), routes, lag.Round(time.Millisecond), rss/(1<<20))
}

// nodeStatusCost waits until the speaker's BerthNodeStatus shows all n
// addresses and returns how many times the speaker wrote it since it
// started, the object's size as the API server serves it (JSON), and the
// time from start until it showed them.
func nodeStatusCost(b *testing.B, sl *speakerLab, sp *speakerProc, n int, start time.Time) (writes float64, size int, took time.Duration) {
	b.Helper()
	node := sl.nodes[0].name
	poll(b, time.Minute, "the BerthNodeStatus shows every address", func() error {
		ns, err := sl.e.berth.BerthV1alpha1().BerthNodeStatuses().Get(b.Context(), node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if int(ns.Status.BGPAddresses) != n {
			return fmt.Errorf("%d addresses", ns.Status.BGPAddresses)
		}
		return nil
	})
	took = time.Since(start)
	raw, err := sl.e.berth.BerthV1alpha1().RESTClient().Get().AbsPath("/apis/berth.dev/v1alpha1/berthnodestatuses", node).DoRaw(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	writes = counter(b, sp, "berth_speaker_node_status_writes_total")
	b.Logf("BerthNodeStatus: %.0f writes in %v (%.2f/s) while the %d Services were created and announced; %d bytes with %d addresses",
		writes, took.Round(time.Millisecond), writes/took.Seconds(), n, len(raw), n)
	return writes, len(raw), took
}
