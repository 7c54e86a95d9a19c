package e2e

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/controlplane"
)

var updateDoctor = flag.Bool("update-doctor", false, "TestDoctor: rewrite the golden files in testdata/doctor")

// TestDoctor runs `berth doctor` (the built binary, as kubectl runs the
// plugin) against a real API server with a real berth-controller, first
// healthy, then broken one way after another, and compares its report
// and exit code with testdata/doctor/<step>.txt. The nodes and the
// speaker pods are API objects only (no kubelet): their status is what
// the doctor reads.
func TestDoctor(t *testing.T) {
	t.Run("NoCRDs", func(t *testing.T) {
		e := newEnvWith(t, controlplane.Options{SkipCRDs: true})
		checkDoctor(t, e, "no-crds", 1)
	})
	e := newEnv(t)
	ctl := e.startController(t, "--leader-elect=true", "--leader-election-namespace="+berthNS)
	ctl.waitReady(t)
	setupHealthy(t, e)
	e.waitAllocated(t, "apps", "web", 2)
	e.waitAllocated(t, "apps", "restricted", 1)
	checkDoctor(t, e, "healthy", 0)

	steps := []struct {
		name   string
		break_ func(t *testing.T)
		code   int
	}{
		{"speakers", func(t *testing.T) {
			doctorSpeakerPod(t, e, "node-b", false)
			doctorNode(t, e, "node-c", nil)
			// Not eligible: the DaemonSet does not tolerate its taint.
			doctorNode(t, e, "node-d", []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}})
		}, 1},
		{"memberlist", func(t *testing.T) {
			must(t, e.kube.CoreV1().Secrets(berthNS).Delete(t.Context(), "berth-memberlist", metav1.DeleteOptions{}))
		}, 1},
		{"pools", func(t *testing.T) {
			e.pool(t, "shared", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"192.0.2.8-192.0.2.20"}})
		}, 1},
		{"pending", func(t *testing.T) {
			e.service(t, "apps", "no-pool", withClass(v1alpha1.DefaultLoadBalancerClass), withAnnotation(v1alpha1.AnnotationPool, "missing"))
			e.waitPending(t, "apps", "no-pool", v1alpha1.ReasonNoMatchingPool)
		}, 1},
		{"kube-proxy", func(t *testing.T) {
			kubeProxy(t, e, "mode: ipvs\nipvs:\n  strictARP: false\n")
			// A dual-stack Service restricted to IPv4 clients: its IPv6
			// address refuses everyone.
			svc, err := e.kube.CoreV1().Services("apps").Get(t.Context(), "web", metav1.GetOptions{})
			must(t, err)
			svc.Spec.LoadBalancerSourceRanges = []string{"198.51.100.0/24"}
			_, err = e.kube.CoreV1().Services("apps").Update(t.Context(), svc, metav1.UpdateOptions{})
			must(t, err)
		}, 1},
		{"controller-down", func(t *testing.T) {
			ctl.stop(syscall.SIGTERM)
		}, 1},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.break_(t)
			checkDoctor(t, e, s.name, s.code)
		})
	}
}

// checkDoctor runs berth doctor and compares its output with the golden
// file of step.
func checkDoctor(t *testing.T, e *env, step string, wantCode int) {
	t.Helper()
	cmd := exec.Command(berthBins.path(t, "berth"), "doctor", "--kubeconfig", e.cp.Kubeconfig())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	got := holderID.ReplaceAllString(stdout.String(), "leader <holder>")
	path := filepath.Join("testdata", "doctor", step+".txt")
	if *updateDoctor {
		must(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	must(t, err)
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("berth doctor, step %s (-golden +got):\n%s\nstderr: %s", step, d, stderr.String())
	}
	if code != wantCode {
		t.Errorf("berth doctor, step %s: exit code %d, want %d; stderr: %s", step, code, wantCode, stderr.String())
	}
}

// holderID is a leader's identity (host_uuid), which changes every run.
var holderID = regexp.MustCompile(`leader [^\s]+_[0-9a-f-]{36}`)

// setupHealthy installs what a healthy Berth has besides the controller:
// the speakers' DaemonSet with a ready pod on every node, the memberlist
// Secret, pools and advertisements, kube-proxy's configuration, and
// Services that got their addresses.
func setupHealthy(t *testing.T, e *env) {
	ctx := t.Context()
	_, err := e.kube.AppsV1().Deployments(berthNS).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "berth-controller"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/component": "controller"}},
			Template: podTemplate("controller", nil),
		},
	}, metav1.CreateOptions{})
	must(t, err)
	_, err = e.kube.AppsV1().DaemonSets(berthNS).Create(ctx, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "berth-speaker"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/component": "speaker"}},
			Template: podTemplate("speaker", []string{"--l2=true", "--memberlist-secret=berth-memberlist"}),
		},
	}, metav1.CreateOptions{})
	must(t, err)
	for _, n := range []string{"node-a", "node-b"} {
		doctorNode(t, e, n, nil)
		doctorSpeakerPod(t, e, n, true)
	}
	_, err = e.kube.CoreV1().Secrets(berthNS).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "berth-memberlist"},
		Data:       map[string][]byte{"secretkey": bytes.Repeat([]byte{7}, 32)},
	}, metav1.CreateOptions{})
	must(t, err)
	e.pool(t, "v4", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"192.0.2.0/28"}})
	e.pool(t, "v6", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"2001:db8::/120"}})
	_, err = e.berth.BerthV1alpha1().BerthBGPAdvertisements().Create(ctx, &v1alpha1.BerthBGPAdvertisement{
		ObjectMeta: metav1.ObjectMeta{Name: "v6"},
		Spec:       v1alpha1.BerthBGPAdvertisementSpec{AdvertisementSelector: v1alpha1.AdvertisementSelector{IPPools: []string{"v6"}}},
	}, metav1.CreateOptions{})
	must(t, err)
	_, err = e.berth.BerthV1alpha1().BerthL2Advertisements().Create(ctx, &v1alpha1.BerthL2Advertisement{
		ObjectMeta: metav1.ObjectMeta{Name: "v4"},
		Spec:       v1alpha1.BerthL2AdvertisementSpec{AdvertisementSelector: v1alpha1.AdvertisementSelector{IPPools: []string{"v4"}}},
	}, metav1.CreateOptions{})
	must(t, err)
	e.namespace(t, "kube-system", nil)
	kubeProxy(t, e, "mode: nftables\n")
	e.namespace(t, "apps", nil)
	class := withClass(v1alpha1.DefaultLoadBalancerClass)
	e.service(t, "apps", "web", class, withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol))
	e.service(t, "apps", "restricted", class, func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = []string{"198.51.100.0/24"} })
}

func podTemplate(component string, args []string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/component": component}},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{"kubernetes.io/os": "linux"},
			Containers:   []corev1.Container{{Name: component, Image: "berth-" + component, Args: args}},
		},
	}
}

// doctorNode creates a Node object.
func doctorNode(t *testing.T, e *env, name string, taints []corev1.Taint) {
	_, err := e.kube.CoreV1().Nodes().Create(t.Context(), &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/os": "linux"}},
		Spec:       corev1.NodeSpec{Taints: taints},
	}, metav1.CreateOptions{})
	must(t, err)
}

// doctorSpeakerPod creates or replaces the speaker pod of a node, ready or
// crash-looping, as the kubelet would report it.
func doctorSpeakerPod(t *testing.T, e *env, nodeName string, ready bool) {
	ctx := t.Context()
	pods := e.kube.CoreV1().Pods(berthNS)
	name := "berth-speaker-" + nodeName
	_ = pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	tmpl := podTemplate("speaker", nil)
	p, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: tmpl.Labels},
		Spec:       func() corev1.PodSpec { s := tmpl.Spec; s.NodeName = nodeName; return s }(),
	}, metav1.CreateOptions{})
	must(t, err)
	status := corev1.ConditionTrue
	cs := corev1.ContainerStatus{Name: "speaker", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	if !ready {
		status = corev1.ConditionFalse
		cs = corev1.ContainerStatus{Name: "speaker", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}
	}
	p.Status = corev1.PodStatus{
		Phase:             corev1.PodRunning,
		Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: status, LastTransitionTime: metav1.Now()}},
		ContainerStatuses: []corev1.ContainerStatus{cs},
	}
	_, err = pods.UpdateStatus(ctx, p, metav1.UpdateOptions{})
	must(t, err)
}

// kubeProxy writes kube-proxy's configuration as kubeadm does.
func kubeProxy(t *testing.T, e *env, conf string) {
	cms := e.kube.CoreV1().ConfigMaps("kube-system")
	_ = cms.Delete(t.Context(), "kube-proxy", metav1.DeleteOptions{})
	_, err := cms.Create(t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-proxy"},
		Data:       map[string]string{"config.conf": "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n" + conf},
	}, metav1.CreateOptions{})
	must(t, err)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
