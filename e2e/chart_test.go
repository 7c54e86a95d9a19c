package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	chart "helm.sh/helm/v4/pkg/chart/v2"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/berthlb/berth/e2e/controlplane"
	"github.com/berthlb/berth/internal/helmchart"
)

// TestChartDryRun renders the Helm chart with each of helmchart.ValueSets
// and has the real API server accept every object: the Namespace is
// created with the chart's Pod Security labels, then every other object is
// created with server-side dry-run and strict field validation, and so is a
// Pod made from each Deployment's and DaemonSet's template, which is what
// Pod Security admission enforces on (it only warns on workloads). The test
// also shows that admission is on: the speaker's Pod is refused in a
// namespace labelled "restricted".
func TestChartDryRun(t *testing.T) {
	cp := controlplane.StartForTest(t, controlplane.Options{})
	cfg := cp.RESTConfig()
	ctx := t.Context()
	installMonitoringCRDs(t, cfg)
	ch := loadBerthChart(t)
	d := newDryRunner(t, cfg)

	for name, vals := range helmchart.ValueSets() {
		t.Run(name, func(t *testing.T) {
			objs := renderObjects(t, ch, helmchart.Options{Namespace: "berth-" + name, Values: vals})
			kinds := d.apply(ctx, t, objs)
			t.Logf("accepted %d objects: %s", len(kinds), strings.Join(kinds, ", "))
		})
	}

	t.Run("restricted namespace refuses the speaker", func(t *testing.T) {
		objs := renderObjects(t, ch, helmchart.Options{Namespace: "berth-restricted",
			Values: map[string]any{"namespace": map[string]any{"podSecurityEnforce": "restricted"}}})
		for _, o := range objs {
			if o.GetKind() == "Namespace" {
				d.create(ctx, t, o, false)
			}
		}
		for _, o := range objs {
			if o.GetKind() != "DaemonSet" {
				continue
			}
			err := d.createErr(ctx, podFromTemplate(t, o), true)
			if err == nil || !strings.Contains(err.Error(), "violates PodSecurity") {
				t.Fatalf("the speaker's Pod in a restricted namespace: got %v, want a PodSecurity refusal", err)
			}
			t.Logf("refused as expected: %v", err)
			return
		}
		t.Fatal("no DaemonSet rendered")
	})
}

// TestChartKeepsMemberlistKey installs the chart's memberlist Secret, then
// renders the chart again as `helm upgrade` does (its lookup reads the
// real API server) and checks that the key is kept, including a second key
// an operator added for a rotation.
func TestChartKeepsMemberlistKey(t *testing.T) {
	cp := controlplane.StartForTest(t, controlplane.Options{SkipCRDs: true})
	cfg := cp.RESTConfig()
	ctx := t.Context()
	ch := loadBerthChart(t)
	kube := kubernetes.NewForConfigOrDie(cfg)
	const ns = "berth-system"
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secret := func(upgrade bool, vals map[string]any) *corev1.Secret {
		t.Helper()
		for _, o := range renderObjects(t, ch, helmchart.Options{Namespace: ns, Values: vals, Cluster: cfg, Upgrade: upgrade}) {
			if o.GetKind() == "Secret" && o.GetName() == "berth-memberlist" {
				var s corev1.Secret
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &s); err != nil {
					t.Fatal(err)
				}
				return &s
			}
		}
		t.Fatal("no memberlist Secret rendered")
		return nil
	}

	first := secret(false, nil)
	if n := len(first.Data["secretkey"]); n != 32 {
		t.Fatalf("generated key has %d bytes, want 32", n)
	}
	if again := secret(false, nil); string(again.Data["secretkey"]) == string(first.Data["secretkey"]) {
		t.Fatal("two renders without a cluster Secret generated the same key")
	}
	first.Data["secretkey-accept"] = []byte(strings.Repeat("r", 16))
	if _, err := kube.CoreV1().Secrets(ns).Create(ctx, first, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	upgraded := secret(true, nil)
	if string(upgraded.Data["secretkey"]) != string(first.Data["secretkey"]) ||
		string(upgraded.Data["secretkey-accept"]) != string(first.Data["secretkey-accept"]) {
		t.Errorf("upgrade changed the membership keys: %q, %q", upgraded.Data["secretkey"], upgraded.Data["secretkey-accept"])
	}
	given := strings.Repeat("k", 24)
	set := secret(true, map[string]any{"speaker": map[string]any{"layer2": map[string]any{"memberlist": map[string]any{"key": given}}}})
	if string(set.Data["secretkey"]) != given {
		t.Errorf("speaker.layer2.memberlist.key was not used: %q", set.Data["secretkey"])
	}
}

func loadBerthChart(t *testing.T) *chart.Chart {
	t.Helper()
	dir, err := helmchart.ChartDir()
	if err != nil {
		t.Fatal(err)
	}
	ch, err := helmchart.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func renderObjects(t *testing.T, ch *chart.Chart, opts helmchart.Options) []*unstructured.Unstructured {
	t.Helper()
	ms, err := helmchart.Render(ch, opts)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := helmchart.Objects(ms)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// dryRunner creates objects through the dynamic client.
type dryRunner struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newDryRunner(t *testing.T, cfg *rest.Config) *dryRunner {
	t.Helper()
	kube := kubernetes.NewForConfigOrDie(cfg)
	return &dryRunner{
		dyn:    dynamic.NewForConfigOrDie(cfg),
		mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(kube.Discovery())),
	}
}

// apply creates the Namespaces for real and every other object, and a Pod
// of every workload, with dry-run. It returns the kinds it created.
func (d *dryRunner) apply(ctx context.Context, t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	var kinds []string
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			d.create(ctx, t, o, false)
			kinds = append(kinds, "Namespace")
		}
	}
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			continue
		}
		d.create(ctx, t, o, true)
		kinds = append(kinds, o.GetKind()+"/"+o.GetName())
		if o.GetKind() == "Deployment" || o.GetKind() == "DaemonSet" {
			d.create(ctx, t, podFromTemplate(t, o), true)
			kinds = append(kinds, "Pod(of "+o.GetName()+")")
		}
	}
	slices.Sort(kinds)
	return kinds
}

func (d *dryRunner) create(ctx context.Context, t *testing.T, o *unstructured.Unstructured, dryRun bool) {
	t.Helper()
	if err := d.createErr(ctx, o, dryRun); err != nil {
		t.Errorf("%s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
	}
}

func (d *dryRunner) createErr(ctx context.Context, o *unstructured.Unstructured, dryRun bool) error {
	gvk := o.GroupVersionKind()
	m, err := d.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return err
	}
	opts := metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	var ri dynamic.ResourceInterface = d.dyn.Resource(m.Resource)
	if m.Scope.Name() == "namespace" {
		ri = d.dyn.Resource(m.Resource).Namespace(o.GetNamespace())
	}
	_, err = ri.Create(ctx, o, opts)
	return err
}

// podFromTemplate is the Pod a Deployment's or DaemonSet's controller
// would create, on a node.
func podFromTemplate(t *testing.T, o *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	tmpl, ok, err := unstructured.NestedMap(o.Object, "spec", "template")
	if !ok || err != nil {
		t.Fatalf("%s %s has no pod template: %v", o.GetKind(), o.GetName(), err)
	}
	pod := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": tmpl["metadata"], "spec": tmpl["spec"]}}
	pod.SetName(o.GetName() + "-dryrun")
	pod.SetNamespace(o.GetNamespace())
	if err := unstructured.SetNestedField(pod.Object, "node-1", "spec", "nodeName"); err != nil {
		t.Fatal(err)
	}
	return pod
}

// installMonitoringCRDs stands in for prometheus-operator's CRDs, so that
// the ServiceMonitor and PrometheusRule the chart renders go through the
// API server too (their schemas here check only the object's frame).
func installMonitoringCRDs(t *testing.T, cfg *rest.Config) {
	t.Helper()
	ctx := t.Context()
	ext := apiextensionsclient.NewForConfigOrDie(cfg)
	preserve := true
	for _, kind := range []string{"ServiceMonitor", "PrometheusRule"} {
		plural := strings.ToLower(kind) + "s"
		crd := &apiextensionsv1.CustomResourceDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: plural + ".monitoring.coreos.com"},
			Spec: apiextensionsv1.CustomResourceDefinitionSpec{
				Group: "monitoring.coreos.com",
				Names: apiextensionsv1.CustomResourceDefinitionNames{Kind: kind, Plural: plural, ListKind: kind + "List"},
				Scope: apiextensionsv1.NamespaceScoped,
				Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
					Name: "v1", Served: true, Storage: true,
					Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
						Type: "object",
						Properties: map[string]apiextensionsv1.JSONSchemaProps{
							"spec": {Type: "object", XPreserveUnknownFields: &preserve},
						},
					}},
				}},
			},
		}
		if _, err := ext.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			c, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, cond := range c.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("CRD %s not established: %v", crd.Name, err)
		}
	}
}
