package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/berthlb/berth/migrate"
)

// migrateCorpus is the converter's golden corpus.
const migrateCorpus = "../migrate/testdata/*.yaml"

// TestMigrateDryRun proves that everything `berth migrate` writes for its
// corpus of MetalLB and Cilium configurations is accepted by the real API
// server with Berth's CRDs: every object of the YAML output goes through a
// server-side dry-run create with strict field validation, so a field the
// schema does not know fails the test as well as a value it refuses.
func TestMigrateDryRun(t *testing.T) {
	e := newEnv(t)
	dyn := dynamic.NewForConfigOrDie(e.cp.RESTConfig())
	inputs, err := filepath.Glob(migrateCorpus)
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	total := 0
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			objs := readYAMLFile(t, in)
			var out bytes.Buffer
			if err := migrate.WriteYAML(&out, migrate.Convert(objs)); err != nil {
				t.Fatal(err)
			}
			emitted, err := migrate.ReadYAML(&out)
			if err != nil {
				t.Fatalf("read the output back: %v", err)
			}
			if len(emitted) == 0 {
				t.Fatal("nothing emitted")
			}
			for _, o := range emitted {
				gvr := berthResource(t, o)
				_, err := dyn.Resource(gvr).Create(t.Context(), o, metav1.CreateOptions{
					DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict",
				})
				if err != nil {
					t.Errorf("%s %s refused: %v", o.GetKind(), o.GetName(), err)
				}
				total++
			}
		})
	}
	t.Logf("%d emitted objects accepted by server-side dry-run", total)
}

// TestMigrateFromCluster reads the same corpus from a live API server,
// where MetalLB's and Cilium's CRDs are installed and their objects
// created, and checks that the conversion equals the one from the files.
func TestMigrateFromCluster(t *testing.T) {
	e := newEnv(t)
	cfg := e.cp.RESTConfig()
	dyn := dynamic.NewForConfigOrDie(cfg)
	installForeignCRDs(t, cfg)
	for _, ns := range []string{"metallb-system", "other-metallb"} {
		e.namespace(t, ns, nil)
	}
	inputs, err := filepath.Glob(migrateCorpus)
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	var created []*unstructured.Unstructured
	for _, in := range inputs {
		for _, o := range readYAMLFile(t, in) {
			gvr, ok := foreignResource(o)
			if !ok {
				continue // a kind whose CRD is not installed (ConfigMap, AddressPool, BFDProfile)
			}
			o = o.DeepCopy()
			o.SetResourceVersion("")
			o.SetUID("")
			o.SetCreationTimestamp(metav1.Time{})
			var err error
			if o.GetNamespace() != "" {
				_, err = dyn.Resource(gvr).Namespace(o.GetNamespace()).Create(t.Context(), o, metav1.CreateOptions{})
			} else {
				_, err = dyn.Resource(gvr).Create(t.Context(), o, metav1.CreateOptions{})
			}
			if err != nil {
				t.Fatalf("create %s %s: %v", o.GetKind(), o.GetName(), err)
			}
			created = append(created, o)
		}
	}
	live, err := migrate.ReadCluster(t.Context(), dyn)
	if err != nil {
		t.Fatalf("ReadCluster: %v", err)
	}
	foreign := 0
	for _, o := range live {
		if o.GetKind() != "Service" { // ReadCluster lists Services too, for the pre-flight
			foreign++
		}
	}
	if foreign != len(created) {
		t.Errorf("ReadCluster returned %d of MetalLB's and Cilium's objects, %d were created", foreign, len(created))
	}
	want, got := byName(t, migrate.Convert(created)), byName(t, migrate.Convert(live))
	if len(want) == 0 {
		t.Fatal("nothing converted")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("conversion from the cluster differs from the one from files (-files +cluster):\n%s", diff)
	}
}

func readYAMLFile(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	objs, err := migrate.ReadYAML(f)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// byName indexes a conversion's output by kind and name, as YAML.
func byName(t *testing.T, res *migrate.Result) map[string]string {
	t.Helper()
	var out bytes.Buffer
	if err := migrate.WriteYAML(&out, res); err != nil {
		t.Fatal(err)
	}
	objs, err := migrate.ReadYAML(&out)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, o := range objs {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		m[o.GetKind()+"/"+o.GetName()] = string(b)
	}
	return m
}

func berthResource(t testing.TB, o *unstructured.Unstructured) schema.GroupVersionResource {
	t.Helper()
	gv, err := schema.ParseGroupVersion(o.GetAPIVersion())
	if err != nil || gv.Group != "berth.dev" {
		t.Fatalf("emitted %s %s of group %q", o.GetKind(), o.GetName(), gv.Group)
	}
	return gv.WithResource(strings.ToLower(o.GetKind()) + "s")
}

// foreignCRD is a stand-in for one of MetalLB's or Cilium's CRDs: the same
// group, names, scope and versions, with a schema that checks only the
// object's frame (their real schemas are not this test's subject).
type foreignCRD struct {
	group, kind string
	namespaced  bool
	versions    []string // the first is stored
}

var foreignCRDs = []foreignCRD{
	{"metallb.io", "IPAddressPool", true, []string{"v1beta1"}},
	{"metallb.io", "BGPPeer", true, []string{"v1beta2", "v1beta1"}},
	{"metallb.io", "BGPAdvertisement", true, []string{"v1beta1"}},
	{"metallb.io", "L2Advertisement", true, []string{"v1beta1"}},
	{"metallb.io", "Community", true, []string{"v1beta1"}},
	{"cilium.io", "CiliumLoadBalancerIPPool", false, []string{"v2", "v2alpha1"}},
	{"cilium.io", "CiliumBGPClusterConfig", false, []string{"v2", "v2alpha1"}},
	{"cilium.io", "CiliumBGPPeerConfig", false, []string{"v2", "v2alpha1"}},
	{"cilium.io", "CiliumBGPAdvertisement", false, []string{"v2", "v2alpha1"}},
}

func plural(kind string) string {
	if strings.HasSuffix(kind, "y") {
		return strings.ToLower(strings.TrimSuffix(kind, "y")) + "ies"
	}
	return strings.ToLower(kind) + "s"
}

func foreignResource(o *unstructured.Unstructured) (schema.GroupVersionResource, bool) {
	gv, _ := schema.ParseGroupVersion(o.GetAPIVersion())
	for _, c := range foreignCRDs {
		if c.group == gv.Group && c.kind == o.GetKind() {
			return gv.WithResource(plural(c.kind)), true
		}
	}
	return schema.GroupVersionResource{}, false
}

func installForeignCRDs(t *testing.T, cfg *rest.Config) {
	t.Helper()
	ext := apiextensionsclient.NewForConfigOrDie(cfg)
	preserve := true
	for _, c := range foreignCRDs {
		crd := &apiextensionsv1.CustomResourceDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: plural(c.kind) + "." + c.group},
			Spec: apiextensionsv1.CustomResourceDefinitionSpec{
				Group: c.group,
				Names: apiextensionsv1.CustomResourceDefinitionNames{Kind: c.kind, Plural: plural(c.kind), ListKind: c.kind + "List"},
				Scope: apiextensionsv1.ClusterScoped,
			},
		}
		if c.namespaced {
			crd.Spec.Scope = apiextensionsv1.NamespaceScoped
		}
		for i, v := range c.versions {
			crd.Spec.Versions = append(crd.Spec.Versions, apiextensionsv1.CustomResourceDefinitionVersion{
				Name: v, Served: true, Storage: i == 0,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type:       "object",
					Properties: map[string]apiextensionsv1.JSONSchemaProps{"spec": {Type: "object", XPreserveUnknownFields: &preserve}},
				}},
			})
		}
		if _, err := ext.ApiextensionsV1().CustomResourceDefinitions().Create(t.Context(), crd, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, cond := range got.Status.Conditions {
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
