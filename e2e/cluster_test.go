package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/berthlb/berth/client/clientset/versioned"
	"github.com/berthlb/berth/e2e/cluster"
)

// TestCluster runs the scenarios on one real cluster (package cluster: three
// nodes, each with its own kubelet, containerd and kube-proxy), one after
// the other, as subtests: bringing the cluster up is the expensive part.
// Run the group with `go test ./e2e -run '^TestCluster' -timeout 20m`.
func TestCluster(t *testing.T) {
	// Three nodes: layer 2 fails over only while a majority of the
	// speakers sees each other, and one of two is no majority.
	c := cluster.Start(t, cluster.Options{Nodes: 3})
	if !t.Run("PodNetwork", func(t *testing.T) { testClusterPodNetwork(t, c) }) {
		return
	}
	if !t.Run("HelmInstall", func(t *testing.T) { testClusterHelmInstall(t, c) }) {
		return
	}
	e := &env{t: t, cp: c.ControlPlane, kube: c.Kube, berth: versioned.NewForConfigOrDie(c.ControlPlane.RESTConfig())}
	b := setupClusterBGP(t, c, e)
	l2client := setupClusterL2(t, c, e)
	t.Run("BGP", func(t *testing.T) { testClusterBGP(t, c, e, b) })
	t.Run("Upgrade", func(t *testing.T) { testClusterUpgrade(t, c, e, b, l2client) })
	t.Run("Forwarding", func(t *testing.T) { testClusterForwarding(t, c, e, b) })
	t.Run("DualStack", func(t *testing.T) { testClusterDualStack(t, c, e, l2client) })
	if !t.Run("Uninstall", func(t *testing.T) { testClusterUninstall(t, c, e, b) }) {
		return
	}
	if !t.Run("Reinstall", func(t *testing.T) { testClusterReinstall(t, c, e, b) }) {
		return
	}
	// Last: it stops a node for good.
	t.Run("Layer2NodeFailure", func(t *testing.T) { testClusterL2NodeFailure(t, c, e, l2client) })
}

// testClusterPodNetwork: a Pod on each node serves HTTP to a Pod on the
// next, over IPv4 and over IPv6, and sees the client Pod's own address of
// that family (no translation between nodes).
func testClusterPodNetwork(t *testing.T, c *cluster.Cluster) {
	ctx := t.Context()
	pods := c.Kube.CoreV1().Pods("default")
	servers := map[string]*corev1.Pod{}
	for _, n := range c.Nodes {
		p, err := pods.Create(ctx, cluster.EchoPod("echo-"+n.Name, n.Name, nil), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		servers[n.Name] = p
	}
	for name, p := range servers {
		servers[name] = waitPodReady(t, c, "default", p.Name)
	}
	for i, n := range c.Nodes {
		other := c.Nodes[(i+1)%len(c.Nodes)]
		srv := servers[other.Name]
		if len(srv.Status.PodIPs) != 2 {
			t.Fatalf("pod %s has addresses %v, want an IPv4 and an IPv6 one", srv.Name, srv.Status.PodIPs)
		}
		for f, ip := range srv.Status.PodIPs {
			addr := netip.MustParseAddr(ip.IP)
			url := fmt.Sprintf("http://%s/", netip.AddrPortFrom(addr, cluster.EchoPort))
			get, err := pods.Create(ctx, cluster.GetPod(fmt.Sprintf("get-from-%s-%d", n.Name, f), n.Name, url), metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			get = waitPodDone(t, c, "default", get.Name)
			// The API server asks the node's kubelet, which may refuse
			// for a moment on a busy machine.
			var log string
			poll(t, 10*time.Second, "log of "+get.Name, func() error {
				var err error
				log, err = c.PodLog(ctx, "default", get.Name)
				return err
			})
			var from netip.Addr
			for _, gip := range get.Status.PodIPs {
				if a := netip.MustParseAddr(gip.IP); a.Is4() == addr.Is4() {
					from = a
				}
			}
			want := fmt.Sprintf("pod=%s node=%s client=%s", srv.Name, other.Name, netip.AddrPortFrom(from, 0))
			want = strings.TrimSuffix(want, ":0") + ":"
			if get.Status.Phase != corev1.PodSucceeded || !strings.HasPrefix(log, want) {
				t.Fatalf("pod on %s GET %s: phase %s, log %q; want %q...", n.Name, url, get.Status.Phase, log, want)
			}
			t.Logf("%s (%s) -> %s: %s", get.Name, from, url, strings.TrimSpace(log))
		}
	}
}

// waitPodReady waits until the pod is Ready and returns it.
func waitPodReady(t *testing.T, c *cluster.Cluster, ns, name string) *corev1.Pod {
	t.Helper()
	return waitPod(t, c, ns, name, podReady)
}

// waitPodDone waits until the pod has succeeded or failed and returns it.
func waitPodDone(t *testing.T, c *cluster.Cluster, ns, name string) *corev1.Pod {
	t.Helper()
	return waitPod(t, c, ns, name, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
}

func waitPod(t *testing.T, c *cluster.Cluster, ns, name string, done func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	var last *corev1.Pod
	err := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		p, err := c.Kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		return done(p), nil
	})
	if err != nil {
		t.Fatalf("wait for pod %s/%s: %v; last status %+v", ns, name, err, last)
	}
	return last
}

// deployEcho creates an echo Deployment of replicas pods (labelled
// app=name) in ns and waits until all are Ready.
func deployEcho(t *testing.T, c *cluster.Cluster, ns, name string, replicas int32) []corev1.Pod {
	t.Helper()
	d := cluster.EchoDeployment(name, replicas)
	if _, err := c.Kube.AppsV1().Deployments(ns).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return waitEchoReady(t, c, ns, name, int(replicas))
}

// scaleEcho sets the echo Deployment's replicas.
func scaleEcho(t *testing.T, c *cluster.Cluster, ns, name string, replicas int32) {
	t.Helper()
	s, err := c.Kube.AppsV1().Deployments(ns).GetScale(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Spec.Replicas = replicas
	if _, err := c.Kube.AppsV1().Deployments(ns).UpdateScale(t.Context(), name, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitEchoReady waits until exactly n pods labelled app=name that are not
// terminating exist in ns, all Ready and none on the nodes to avoid, and
// returns them.
func waitEchoReady(t *testing.T, c *cluster.Cluster, ns, name string, n int, avoid ...string) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	poll(t, 90*time.Second, fmt.Sprintf("%d Ready %s pods", n, name), func() error {
		list, err := c.Kube.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return err
		}
		// Pods of a dead node stay Terminating: they do not count.
		pods = slices.DeleteFunc(list.Items, func(p corev1.Pod) bool { return p.DeletionTimestamp != nil })
		for _, p := range pods {
			if slices.Contains(avoid, p.Spec.NodeName) {
				return fmt.Errorf("pod %s still on %s", p.Name, p.Spec.NodeName)
			}
		}
		ready := 0
		for i := range pods {
			if podReady(&pods[i]) {
				ready++
			}
		}
		if ready != n || len(pods) != n {
			return fmt.Errorf("%d pods, %d Ready", len(pods), ready)
		}
		return nil
	})
	return pods
}
