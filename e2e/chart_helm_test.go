package e2e

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	helmkube "helm.sh/helm/v4/pkg/kube"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"

	"github.com/berthlb/berth/e2e/controlplane"
)

// TestChartHelmLifecycle runs the Helm SDK's own install, upgrade and
// uninstall of the chart against the test control plane, as `helm install
// berth charts/berth -n berth-system --create-namespace` would: Helm
// installs the CRDs from crds/, the Namespace gets its Pod Security labels,
// the generated memberlist key survives an upgrade, a bad value fails the
// install with the schema's message, and uninstall runs the pre-delete hook
// and then leaves exactly what docs/install.md says it leaves (the
// Namespace and the CRDs). No controller runs here, so no Pod is created:
// the test plays the Job controller and the kubelet for the hook's Job
// (runUninstallHook).
func TestChartHelmLifecycle(t *testing.T) {
	cp := controlplane.StartForTest(t, controlplane.Options{SkipCRDs: true})
	ctx := t.Context()
	kube := kubernetes.NewForConfigOrDie(cp.RESTConfig())
	ch := loadBerthChart(t)
	const ns = "berth-system"

	kubeconfig, namespace := cp.Kubeconfig(), ns
	getter := genericclioptions.NewConfigFlags(false)
	getter.KubeConfig, getter.Namespace = &kubeconfig, &namespace
	cfg := action.NewConfiguration()
	if err := cfg.Init(getter, ns, "secret"); err != nil {
		t.Fatal(err)
	}

	bad := action.NewInstall(cfg)
	bad.ReleaseName, bad.Namespace, bad.CreateNamespace = "berth", ns, true
	bad.WaitStrategy = helmkube.HookOnlyStrategy
	if _, err := bad.RunWithContext(ctx, ch, map[string]any{"speaker": map[string]any{"layer2": map[string]any{"memberlistPort": 0}}}); err == nil ||
		!strings.Contains(err.Error(), "/speaker/layer2/memberlistPort") {
		t.Fatalf("install with memberlistPort 0: %v, want a schema error naming the value", err)
	} else {
		t.Logf("bad value refused: %v", err)
	}

	install := action.NewInstall(cfg)
	install.ReleaseName, install.Namespace, install.CreateNamespace = "berth", ns, true
	install.WaitStrategy, install.Timeout = helmkube.HookOnlyStrategy, time.Minute
	if _, err := install.RunWithContext(ctx, ch, nil); err != nil {
		t.Fatalf("helm install: %v", err)
	}
	nsObj, err := kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := nsObj.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
		t.Errorf("namespace enforces %q, want privileged for the speaker", got)
	}
	crds, err := kube.Discovery().ServerResourcesForGroupVersion("berth.dev/v1alpha1")
	if err != nil || len(crds.APIResources) == 0 {
		t.Fatalf("Helm did not install the CRDs: %v", err)
	}
	key := func() string {
		t.Helper()
		s, err := kube.CoreV1().Secrets(ns).Get(ctx, "berth-memberlist", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(s.Data["secretkey"])
	}
	installed := key()
	if len(installed) != 32 {
		t.Fatalf("generated memberlist key has %d bytes", len(installed))
	}

	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace, upgrade.WaitStrategy, upgrade.Timeout = ns, helmkube.HookOnlyStrategy, time.Minute
	if _, err := upgrade.RunWithContext(ctx, "berth", ch, map[string]any{"controller": map[string]any{"workers": 4}}); err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	if got := key(); got != installed {
		t.Error("helm upgrade replaced the memberlist key; the speakers' membership would split")
	}
	dep, err := kube.AppsV1().Deployments(ns).Get(ctx, "berth-controller", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if args := strings.Join(dep.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "--workers=4") {
		t.Errorf("upgrade did not apply: %s", args)
	}

	uninstall := action.NewUninstall(cfg)
	uninstall.WaitStrategy, uninstall.Timeout = helmkube.HookOnlyStrategy, time.Minute
	hook := runUninstallHook(t, cp, kube, ns)
	if _, err := uninstall.Run("berth"); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	if out := <-hook; !strings.Contains(out, "Marked the uninstall") {
		t.Errorf("the pre-delete hook's command did not mark the uninstall:\n%s", out)
	}
	for _, o := range []struct {
		kind string
		get  func() error
	}{
		{"Job berth-uninstall", func() error {
			_, err := kube.BatchV1().Jobs(ns).Get(ctx, "berth-uninstall", metav1.GetOptions{})
			return err
		}},
		{"ServiceAccount berth-uninstall", func() error {
			_, err := kube.CoreV1().ServiceAccounts(ns).Get(ctx, "berth-uninstall", metav1.GetOptions{})
			return err
		}},
		{"ClusterRole berth-uninstall", func() error {
			_, err := kube.RbacV1().ClusterRoles().Get(ctx, "berth-uninstall", metav1.GetOptions{})
			return err
		}},
		{"ConfigMap berth-lifecycle", func() error {
			_, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, "berth-lifecycle", metav1.GetOptions{})
			return err
		}},
	} {
		if err := o.get(); !apierrors.IsNotFound(err) {
			t.Errorf("%s after uninstall: %v", o.kind, err)
		}
	}
	if _, err := kube.AppsV1().DaemonSets(ns).Get(ctx, "berth-speaker", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("DaemonSet after uninstall: %v", err)
	}
	if _, err := kube.RbacV1().ClusterRoles().Get(ctx, "berth-speaker", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ClusterRole after uninstall: %v", err)
	}
	if _, err := kube.CoreV1().Secrets(ns).Get(ctx, "berth-memberlist", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("memberlist Secret after uninstall: %v", err)
	}
	if _, err := kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		t.Errorf("the Namespace (resource policy keep) is gone after uninstall: %v", err)
	}
	if _, err := kube.Discovery().ServerResourcesForGroupVersion("berth.dev/v1alpha1"); err != nil {
		t.Errorf("the CRDs are gone after uninstall (Helm keeps crds/): %v", err)
	}
}

// runUninstallHook plays the Job controller and the kubelet for the
// chart's pre-delete hook: it waits for the Job berth-uninstall, runs its
// container's command (berth-controller with the Job's args) under the
// token of the Job's ServiceAccount, which the hook's RBAC alone
// authorizes, and marks the Job complete if the command succeeded, failed
// if not. The channel yields the command's output.
func runUninstallHook(t *testing.T, cp *controlplane.ControlPlane, kube kubernetes.Interface, ns string) <-chan string {
	t.Helper()
	bin := berthBins.path(t, "berth-controller")
	done := make(chan string, 1)
	go func() {
		ctx := t.Context()
		var job *batchv1.Job
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			var err error
			job, err = kube.BatchV1().Jobs(ns).Get(ctx, "berth-uninstall", metav1.GetOptions{})
			return err == nil, nil
		})
		if err != nil {
			done <- "no Job berth-uninstall: " + err.Error()
			return
		}
		pod := job.Spec.Template.Spec
		kubeconfig, err := cp.TokenKubeconfig(ctx, ns, pod.ServiceAccountName)
		if err != nil {
			done <- err.Error()
			return
		}
		cmd := exec.CommandContext(ctx, bin, append(slices.Clone(pod.Containers[0].Args), "--kubeconfig", kubeconfig)...)
		cmd.Env = berthEnviron()
		out, runErr := cmd.CombinedOutput()
		now := metav1.Now()
		job.Status.StartTime, job.Status.CompletionTime = &now, &now
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now},
		}
		job.Status.Succeeded = 1
		if runErr != nil {
			job.Status.CompletionTime, job.Status.Succeeded = nil, 0
			job.Status.Failed = 1
			job.Status.Conditions = []batchv1.JobCondition{
				{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, LastTransitionTime: now, Reason: "BackoffLimitExceeded"},
				{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, LastTransitionTime: now, Reason: "BackoffLimitExceeded"},
			}
		}
		if _, err := kube.BatchV1().Jobs(ns).UpdateStatus(ctx, job, metav1.UpdateOptions{}); err != nil {
			out = append(out, []byte("\nupdate Job status: "+err.Error())...)
		}
		done <- string(out)
	}()
	return done
}
