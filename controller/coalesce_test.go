package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2/ktesting"

	berthfake "github.com/berthlb/berth/client/clientset/versioned/fake"
)

// TestPoolStatusCoalesced checks Config.PoolStatusDelay (docs/pools.md):
// a burst of Services changes a pool's holders many times, and its status
// is written at most once per delay, ending with the final counts.
func TestPoolStatusCoalesced(t *testing.T) {
	const n, delay = 30, 2 * time.Second
	kube := kubefake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}})
	berth := berthfake.NewSimpleClientset(testPool("p", "192.0.2.0-192.0.2.63"))
	_, ctx := ktesting.NewTestContext(t)
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	c := runOnFakes(t, ctx, Config{LoadBalancerClass: testClass, Workers: 4, PoolStatusDelay: delay}, kube, berth)
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return c.Ready(), nil
	}); err != nil {
		t.Fatal("controller not ready")
	}
	statusWrites := func() int {
		w := 0
		for _, a := range berth.Actions() {
			if a.GetResource().Resource == "berthippools" && a.GetSubresource() == "status" && a.GetVerb() != "get" {
				w++
			}
		}
		return w
	}
	before := statusWrites()
	start := time.Now()
	for i := range n {
		if _, err := kube.CoreV1().Services("ns").Create(ctx, service(fmt.Sprintf("s%02d", i), ours), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var used string
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := berth.BerthV1alpha1().BerthIPPools().Get(ctx, "p", metav1.GetOptions{})
		if err != nil || p.Status.IPv4 == nil {
			return false, nil
		}
		used = p.Status.IPv4.Used
		return used == fmt.Sprint(n) && p.Status.HolderCount == n, nil
	})
	if err != nil {
		t.Fatalf("pool status never counted %d used (last %q)", n, used)
	}
	// Wait a whole delay more: a write still scheduled would come now.
	time.Sleep(delay + 200*time.Millisecond)
	writes, windows := statusWrites()-before, int(time.Since(start)/delay)+1
	t.Logf("%d Services: %d pool status writes in %v (delay %v)", n, writes, time.Since(start).Round(time.Millisecond), delay)
	if writes > windows {
		t.Errorf("%d pool status writes in %d windows of %v; want at most one a window", writes, windows, delay)
	}
}
