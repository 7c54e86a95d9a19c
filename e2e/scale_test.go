package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/controlplane"
)

// BenchmarkControllerScale creates 1,000 and then 10,000 LoadBalancer
// Services against a real API server with berth-controller running, and
// reports how fast and how cheaply they all get addresses. Each size runs
// on a fresh control plane; b.N is ignored (run with -benchtime=1x).
func BenchmarkControllerScale(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for range b.N {
				scaleRun(b, n)
			}
		})
	}
}

func scaleRun(b *testing.B, n int) {
	// Every Service needs a cluster IP and a NodePort too: give the API
	// server ranges larger than the defaults (a /20, 2,768 ports).
	e := newEnvWith(b, controlplane.Options{
		ServiceClusterIPRange: "198.19.0.0/16,2001:db8:ffff::/108",
		ExtraAPIServerArgs:    []string{"--service-node-port-range=20000-39999"},
	})
	e.namespace(b, "scale", nil)
	e.pool(b, "scale", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.18.64.0/18"}})
	ctrl := e.startController(b)
	ctrl.waitReady(b)
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()

	list, err := e.kube.CoreV1().Services("scale").List(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	w, err := e.kube.CoreV1().Services("scale").Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()

	var mu sync.Mutex
	created := make(map[string]time.Time, n)
	assigned := make(map[string]time.Time, n)
	done := make(chan struct{})
	go func() {
		for ev := range w.ResultChan() {
			s, ok := ev.Object.(*corev1.Service)
			if !ok || ev.Type == watch.Deleted || len(s.Status.LoadBalancer.Ingress) == 0 {
				continue
			}
			now := time.Now()
			mu.Lock()
			if _, seen := assigned[s.Name]; !seen {
				assigned[s.Name] = now
				if len(assigned) == n {
					close(done)
				}
			}
			mu.Unlock()
		}
	}()

	cpu0 := procCPU(b, ctrl.cmd.Process.Pid)
	start := time.Now()
	const creators = 8
	var wg sync.WaitGroup
	for c := range creators {
		wg.Go(func() {
			for i := c; i < n; i += creators {
				name := fmt.Sprintf("s%05d", i)
				svc := &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Namespace: "scale", Name: name},
					Spec: corev1.ServiceSpec{
						Type:     corev1.ServiceTypeLoadBalancer,
						Selector: map[string]string{"app": name},
						Ports:    []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}},
					},
				}
				t0 := time.Now()
				mu.Lock()
				created[name] = t0
				mu.Unlock()
				if _, err := e.kube.CoreV1().Services("scale").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
					b.Errorf("create %s: %v", name, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	lastCreate := time.Since(start)
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		mu.Lock()
		b.Fatalf("only %d of %d Services got addresses within 5 minutes", len(assigned), n)
	}
	total := time.Since(start)
	cpu := procCPU(b, ctrl.cmd.Process.Pid) - cpu0

	mu.Lock()
	lat := make([]time.Duration, 0, n)
	var lastAssigned time.Time
	for name, t1 := range assigned {
		lat = append(lat, t1.Sub(created[name]))
		if t1.After(lastAssigned) {
			lastAssigned = t1
		}
	}
	mu.Unlock()
	slices.Sort(lat)
	writes, _ := strconv.ParseFloat(ctrl.metric(b, "berth_service_status_writes_total"), 64)
	rss := procPeakRSS(b, ctrl.cmd.Process.Pid)
	afterLast := lastAssigned.Sub(start) - lastCreate

	b.ReportMetric(total.Seconds(), "s-all-assigned")
	b.ReportMetric(afterLast.Seconds(), "s-after-last-create")
	b.ReportMetric(pct(lat, 50).Seconds()*1000, "ms-p50")
	b.ReportMetric(pct(lat, 99).Seconds()*1000, "ms-p99")
	b.ReportMetric(writes/float64(n), "writes/svc")
	b.ReportMetric(rss/(1<<20), "MiB-peak-RSS")
	b.ReportMetric(cpu, "cpu-s")
	b.Logf("%d Services: created in %v (%.0f/s); all assigned %v after the first create, %v after the last; "+
		"create-to-address p50 %v p99 %v max %v; %.3f status writes per Service; controller peak RSS %.1f MiB, %.1f CPU s",
		n, lastCreate.Round(time.Millisecond), float64(n)/lastCreate.Seconds(), total.Round(time.Millisecond), afterLast.Round(time.Millisecond),
		pct(lat, 50).Round(time.Millisecond), pct(lat, 99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond),
		writes/float64(n), rss/(1<<20), cpu)
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, len(sorted)*p/100)]
}

// procPeakRSS returns a process's peak resident set size in bytes.
func procPeakRSS(tb testing.TB, pid int) float64 {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb * 1024
		}
	}
	tb.Fatal("no VmHWM in /proc status")
	return 0
}

// loadAverage returns the machine's 1-minute load average, as text.
func loadAverage(tb testing.TB) string {
	tb.Helper()
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		tb.Fatal(err)
	}
	return strings.Fields(string(data))[0]
}

// procCPU returns a process's user+system CPU time in seconds.
func procCPU(tb testing.TB, pid int) float64 {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ is 100 on Linux
}
