package helmchart

import (
	"path/filepath"
	"slices"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// TestKustomizeBuilds builds manifests/ and each of its directories with
// kustomize (what `kubectl apply -k` runs) and checks that they hold
// exactly the CRDs plus the objects the chart renders for them.
func TestKustomizeBuilds(t *testing.T) {
	ch, _ := loadChart(t)
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ids := func(vals map[string]any, crds bool, keep func(kind, name string) bool) []string {
		ms, err := Render(ch, Options{Values: vals})
		if err != nil {
			t.Fatal(err)
		}
		if crds {
			ms = append(ms, CRDs(ch)...)
		}
		objs, err := Objects(ms)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, o := range objs {
			if keep(o.GetKind(), o.GetName()) {
				out = append(out, o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName())
			}
		}
		slices.Sort(out)
		return out
	}
	// The uninstall hook's objects are only in manifests/uninstall.
	hook := func(_, name string) bool { return name == "berth-uninstall" }
	all := func(kind, name string) bool { return !hook(kind, name) }
	speakerOnly := ManifestValues()
	speakerOnly["controller"] = map[string]any{"enabled": false}
	for _, tc := range []struct {
		dir  string
		want []string
	}{
		{"manifests", ids(ManifestValues(), true, all)},
		{"manifests/controller", ids(map[string]any{"speaker": map[string]any{"enabled": false}}, true, all)},
		// Without the namespace: manifests/controller creates it.
		// and the ConfigMap berth-lifecycle.
		{"manifests/speaker", ids(speakerOnly, false, func(k, n string) bool { return all(k, n) && k != "Namespace" && k != "ConfigMap" })},
		{"manifests/ccm", ids(ccmManifestValues(), true, all)},
		{"manifests/uninstall", ids(ManifestValues(), false, hook)},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(root, tc.dir))
			if err != nil {
				t.Fatalf("kustomize build %s: %v", tc.dir, err)
			}
			var got []string
			for _, r := range resMap.Resources() {
				got = append(got, r.GetKind()+" "+r.GetNamespace()+"/"+r.GetName())
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("kustomize build %s:\n got  %v\n want %v", tc.dir, got, tc.want)
			}
		})
	}
}
