package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	helmkube "helm.sh/helm/v4/pkg/kube"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/berthlb/berth/e2e/cluster"
)

// berthNamespace is where the cluster scenarios install Berth.
const berthNamespace = "berth-system"

// clusterHelm returns a Helm SDK configuration for the cluster's
// berth-system namespace, as `helm -n berth-system` would use.
func clusterHelm(t *testing.T, c *cluster.Cluster) *action.Configuration {
	t.Helper()
	kubeconfig, namespace := c.ControlPlane.Kubeconfig(), berthNamespace
	getter := genericclioptions.NewConfigFlags(false)
	getter.KubeConfig, getter.Namespace = &kubeconfig, &namespace
	cfg := action.NewConfiguration()
	if err := cfg.Init(getter, berthNamespace, "secret"); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// testClusterHelmInstall installs Berth's chart with its defaults, as `helm
// install berth charts/berth -n berth-system --create-namespace` does, and
// waits until every Berth Pod runs, Ready, under its chart's
// ServiceAccount: two controllers and a speaker on each node.
func testClusterHelmInstall(t *testing.T, c *cluster.Cluster) {
	ctx := t.Context()
	began := time.Now()
	install := action.NewInstall(clusterHelm(t, c))
	install.ReleaseName, install.Namespace, install.CreateNamespace = "berth", berthNamespace, true
	install.WaitStrategy, install.Timeout = helmkube.HookOnlyStrategy, time.Minute
	if _, err := install.RunWithContext(ctx, loadBerthChart(t), nil); err != nil {
		t.Fatalf("helm install: %v", err)
	}
	pods := waitBerthPods(t, c, 2+len(c.Nodes))
	t.Logf("helm install to %d Berth pods Ready: %s", len(pods), time.Since(began).Round(time.Millisecond))
	speakers := map[string]bool{}
	for _, p := range pods {
		want := map[string]string{"controller": "berth-controller", "speaker": "berth-speaker"}[p.Labels["app.kubernetes.io/component"]]
		if p.Spec.ServiceAccountName != want || want == "" {
			t.Errorf("pod %s (component %q) runs as ServiceAccount %q, want %q", p.Name, p.Labels["app.kubernetes.io/component"], p.Spec.ServiceAccountName, want)
		}
		if want == "berth-speaker" {
			speakers[p.Spec.NodeName] = true
		}
		t.Logf("%s on %s: %s, ServiceAccount %s, image %s", p.Name, p.Spec.NodeName, p.Status.Phase, p.Spec.ServiceAccountName, p.Spec.Containers[0].Image)
	}
	if len(speakers) != len(c.Nodes) {
		t.Errorf("speakers on nodes %v, want one on each of %d nodes", speakers, len(c.Nodes))
	}
	ns, err := c.Kube.CoreV1().Namespaces().Get(ctx, berthNamespace, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("namespace %s enforces Pod Security level %q", berthNamespace, ns.Labels["pod-security.kubernetes.io/enforce"])
}

// waitBerthPods waits until exactly n Pods in berth-system are Running and
// Ready, and returns them.
func waitBerthPods(t *testing.T, c *cluster.Cluster, n int) []corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var last []corev1.Pod
	var status string
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		list, err := c.Kube.CoreV1().Pods(berthNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		last, status = list.Items, ""
		ready := 0
		for _, p := range list.Items {
			status += fmt.Sprintf("\n%s on %s: %s %s", p.Name, p.Spec.NodeName, p.Status.Phase, containerStates(&p))
			if p.Status.Phase == corev1.PodRunning && podReady(&p) && p.DeletionTimestamp == nil {
				ready++
			}
		}
		return ready == n && len(list.Items) == n, nil
	})
	if err != nil {
		for _, p := range last {
			if !podReady(&p) {
				log, lerr := c.PodLog(t.Context(), p.Namespace, p.Name)
				t.Logf("log of %s (%v):\n%s", p.Name, lerr, lastBytes(log, 3000))
			}
		}
		t.Fatalf("wait for %d Berth pods Ready: %v; pods:%s", n, err, status)
	}
	return last
}

func podReady(p *corev1.Pod) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// containerStates describes why a pod's containers are not running yet.
func containerStates(p *corev1.Pod) string {
	s := ""
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			s += fmt.Sprintf(" [%s waiting: %s %s]", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
		case cs.State.Terminated != nil:
			s += fmt.Sprintf(" [%s terminated: %s %s]", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.Message)
		default:
			s += fmt.Sprintf(" [%s ready=%v restarts=%d]", cs.Name, cs.Ready, cs.RestartCount)
		}
	}
	return s
}

func lastBytes(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// logBerthPods logs the ends of the logs of the Berth pods on node.
func logBerthPods(t *testing.T, c *cluster.Cluster, node string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := c.Kube.CoreV1().Pods(berthNamespace).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		t.Logf("list Berth pods on %s: %v", node, err)
		return
	}
	for _, p := range list.Items {
		log, err := c.PodLog(ctx, p.Namespace, p.Name)
		var keep []string
		for line := range strings.Lines(log) {
			if !strings.Contains(line, "no IPv4 address available") {
				keep = append(keep, line)
			}
		}
		t.Logf("log of %s on %s (%v):\n%s", p.Name, node, err, lastBytes(strings.Join(keep, ""), 8000))
	}
}
