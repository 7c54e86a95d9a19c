package e2e

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/controlplane"
)

var (
	waitingServices = flag.Int("waiting.services", 1000, "BenchmarkControllerWaiting: Services holding a full pool, and as many waiting")
	restartServices = flag.Int("restart.services", 10000, "BenchmarkControllerRestart: Services holding addresses across the restart")
)

// newBenchEnv is a control plane with room for many Services: cluster IP
// and NodePort ranges as BenchmarkControllerScale uses.
func newBenchEnv(b *testing.B) *env {
	e := newEnvWith(b, controlplane.Options{
		ServiceClusterIPRange: "198.19.0.0/16,2001:db8:ffff::/108",
		ExtraAPIServerArgs:    []string{"--service-node-port-range=20000-39999"},
	})
	e.namespace(b, "bench", nil)
	return e
}

// createMany creates Services prefix00000.. prefix<n-1> in ns with 8
// clients at once.
func (e *env) createMany(tb testing.TB, ns, prefix string, n int) {
	tb.Helper()
	const creators = 8
	var wg sync.WaitGroup
	for c := range creators {
		wg.Go(func() {
			for i := c; i < n; i += creators {
				name := fmt.Sprintf("%s%05d", prefix, i)
				svc := &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
					Spec: corev1.ServiceSpec{
						Type:     corev1.ServiceTypeLoadBalancer,
						Selector: map[string]string{"app": name},
						Ports:    []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}},
					},
				}
				if _, err := e.kube.CoreV1().Services(ns).Create(tb.Context(), svc, metav1.CreateOptions{}); err != nil {
					tb.Errorf("create %s: %v", name, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if tb.Failed() {
		tb.FailNow()
	}
}

// waitAll lists the Services of ns until ok accepts n of them; it returns
// the last list by name.
func (e *env) waitAll(tb testing.TB, ns string, n int, d time.Duration, what string, ok func(*corev1.Service) bool) map[string]*corev1.Service {
	tb.Helper()
	var got map[string]*corev1.Service
	count := 0
	err := wait.PollUntilContextTimeout(tb.Context(), 500*time.Millisecond, d, true, func(ctx context.Context) (bool, error) {
		list, err := e.kube.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		got, count = map[string]*corev1.Service{}, 0
		for i := range list.Items {
			s := &list.Items[i]
			got[s.Name] = s
			if ok(s) {
				count++
			}
		}
		return count >= n, nil
	})
	if err != nil {
		tb.Fatalf("only %d of %d Services of %s %s within %v", count, n, ns, what, d)
	}
	return got
}

func isPending(s *corev1.Service) bool {
	c := condition(s)
	return c != nil && c.Reason == v1alpha1.ReasonPoolExhausted && len(addrs(s)) == 0
}

func hasAddress(s *corev1.Service) bool { return len(addrs(s)) > 0 }

// BenchmarkControllerWaiting fills a pool of n addresses with n holders,
// lets n more Services wait (PoolExhausted), deletes the holders and
// measures how long each waiting Service takes to show an address: from
// the deletion of the holder whose address it got, and from the start of
// the deletions. b.N is ignored (run with -benchtime=1x).
func BenchmarkControllerWaiting(b *testing.B) {
	n := *waitingServices
	e := newBenchEnv(b)
	// n addresses from 198.18.64.0 on.
	last := nth(mustAddr("198.18.64.0"), n-1)
	e.pool(b, "waiting", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{v1alpha1.AddressRange("198.18.64.0-" + last.String())}})
	ctrl := e.startController(b)
	ctrl.waitReady(b)
	ctx := b.Context()

	e.createMany(b, "bench", "h", n)
	holders := e.waitAll(b, "bench", n, 5*time.Minute, "got an address", hasAddress)
	e.createMany(b, "bench", "w", n)
	e.waitAll(b, "bench", n, 5*time.Minute, "are PoolExhausted", isPending)

	list, err := e.kube.CoreV1().Services("bench").List(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	w, err := e.kube.CoreV1().Services("bench").Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	var mu sync.Mutex
	assigned := map[string]time.Time{}
	got := map[string]netip.Addr{}
	all := make(chan struct{})
	go func() {
		for ev := range w.ResultChan() {
			s, ok := ev.Object.(*corev1.Service)
			if !ok || ev.Type == watch.Deleted || s.Name[0] != 'w' || len(addrs(s)) == 0 {
				continue
			}
			now := time.Now()
			mu.Lock()
			if _, seen := assigned[s.Name]; !seen {
				assigned[s.Name], got[s.Name] = now, addrs(s)[0]
				if len(assigned) == n {
					close(all)
				}
			}
			mu.Unlock()
		}
	}()

	freedAt := map[netip.Addr]time.Time{}
	var fmu sync.Mutex
	start := time.Now()
	const deleters = 8
	names := sortedKeys(holders)
	var wg sync.WaitGroup
	for c := range deleters {
		wg.Go(func() {
			for i := c; i < len(names); i += deleters {
				h := holders[names[i]]
				if err := e.kube.CoreV1().Services("bench").Delete(ctx, h.Name, metav1.DeleteOptions{}); err != nil {
					b.Errorf("delete %s: %v", h.Name, err)
					return
				}
				fmu.Lock()
				freedAt[addrs(h)[0]] = time.Now()
				fmu.Unlock()
			}
		})
	}
	wg.Wait()
	deleted := time.Since(start)
	select {
	case <-all:
	case <-time.After(time.Minute):
	}
	mu.Lock()
	defer mu.Unlock()
	var fromFree, fromStart []time.Duration
	for name, t1 := range assigned {
		fromStart = append(fromStart, t1.Sub(start))
		if t0, ok := freedAt[got[name]]; ok {
			fromFree = append(fromFree, max(0, t1.Sub(t0)))
		}
	}
	slices.Sort(fromFree)
	slices.Sort(fromStart)
	b.ReportMetric(float64(len(assigned)), "served")
	b.ReportMetric(pct(fromFree, 50).Seconds()*1000, "ms-p50-from-free")
	b.ReportMetric(pct(fromFree, 99).Seconds()*1000, "ms-p99-from-free")
	b.ReportMetric(pct(fromStart, 99).Seconds()*1000, "ms-p99-from-start")
	b.Logf("%d holders deleted in %v; %d of %d waiting Services got an address; from the release of their address p50 %v p99 %v max %v; "+
		"from the first delete p50 %v p99 %v", n, deleted.Round(time.Millisecond), len(assigned), n,
		pct(fromFree, 50).Round(time.Millisecond), pct(fromFree, 99).Round(time.Millisecond), pct(fromFree, 100).Round(time.Millisecond),
		pct(fromStart, 50).Round(time.Millisecond), pct(fromStart, 99).Round(time.Millisecond))
	if len(assigned) < n {
		b.Errorf("only %d of %d waiting Services got an address within a minute of the deletes", len(assigned), n)
	}
	if p := pct(fromFree, 99); p > time.Second {
		b.Errorf("p99 from release to address %v, want < 1 s", p)
	}
}

// BenchmarkControllerRestart restarts the controller under n Services that
// hold addresses and counts what moves: addresses (want 0), status writes
// (want 0), and the time from the start of the new process to /readyz.
func BenchmarkControllerRestart(b *testing.B) {
	n := *restartServices
	e := newBenchEnv(b)
	e.pool(b, "restart", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.18.64.0/18"}})
	ctrl := e.startController(b)
	ctrl.waitReady(b)
	e.createMany(b, "bench", "s", n)
	before := e.waitAll(b, "bench", n, 10*time.Minute, "got an address", hasAddress)
	ctrl.stop(syscall.SIGTERM)

	start := time.Now()
	ctrl = e.startController(b)
	ctrl.waitReady(b) // polls every 50 ms
	ready := time.Since(start)
	// Whatever the controller would still write, it writes within a few
	// seconds of becoming ready.
	time.Sleep(5 * time.Second)
	after := e.waitAll(b, "bench", 0, time.Minute, "", hasAddress)
	moved, rewritten := 0, 0
	for name, s := range before {
		a := after[name]
		if a == nil || fmt.Sprint(addrs(a)) != fmt.Sprint(addrs(s)) {
			moved++
			if moved <= 5 {
				b.Logf("%s moved: %v -> %s", name, addrs(s), statusString(a))
			}
		}
		if a != nil && a.ResourceVersion != s.ResourceVersion {
			rewritten++
		}
	}
	writes, _ := strconv.ParseFloat(ctrl.metric(b, "berth_service_status_writes_total"), 64)
	b.ReportMetric(ready.Seconds(), "s-to-ready")
	b.ReportMetric(float64(moved), "moved")
	b.ReportMetric(writes, "status-writes")
	b.Logf("%d Services: ready %v after the restart; %d addresses moved, %d status writes (%d Services rewritten)",
		n, ready.Round(time.Millisecond), moved, int(writes), rewritten)
	if moved > 0 || writes > 0 {
		b.Errorf("a restart moved %d addresses and wrote %v statuses, want 0 and 0", moved, writes)
	}
	if ready > 5*time.Second {
		b.Errorf("ready %v after the restart, want < 5 s", ready)
	}
}
