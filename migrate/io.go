package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/berthlb/berth/api/v1alpha1"
)

// ReadYAML reads every object of a multi-document YAML (or JSON) stream,
// flattening a "kind: List" (or any *List with items) into its items.
func ReadYAML(r io.Reader) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	var out []*unstructured.Unstructured
	for i := 0; ; i++ {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("read document %d: %w", i+1, err)
		}
		if len(obj) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.IsList() {
			err := u.EachListItem(func(o runtime.Object) error {
				out = append(out, o.(*unstructured.Unstructured))
				return nil
			})
			if err != nil {
				return out, fmt.Errorf("read document %d: %w", i+1, err)
			}
			continue
		}
		out = append(out, u)
	}
}

// sourceResources are what ReadCluster lists: for each, the versions to try
// in order, newest first.
var sourceResources = []struct {
	group, resource string
	versions        []string
}{
	{"", "services", []string{"v1"}}, // for the pre-flight, see checkServices
	{"metallb.io", "communities", []string{"v1beta1"}},
	{"metallb.io", "ipaddresspools", []string{"v1beta1"}},
	{"metallb.io", "bgppeers", []string{"v1beta2", "v1beta1"}},
	{"metallb.io", "bgpadvertisements", []string{"v1beta1"}},
	{"metallb.io", "l2advertisements", []string{"v1beta1"}},
	{"cilium.io", "ciliumloadbalancerippools", []string{"v2", "v2alpha1"}},
	{"cilium.io", "ciliumbgpclusterconfigs", []string{"v2", "v2alpha1"}},
	{"cilium.io", "ciliumbgppeerconfigs", []string{"v2", "v2alpha1"}},
	{"cilium.io", "ciliumbgpadvertisements", []string{"v2", "v2alpha1"}},
}

// ReadCluster lists MetalLB's and Cilium's resources from a live cluster,
// and its Services for the pre-flight check of a takeover.
// A resource whose CRD is not installed (in none of the versions tried) is
// skipped; any other error ends the read.
func ReadCluster(ctx context.Context, dyn dynamic.Interface) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, r := range sourceResources {
		for _, v := range r.versions {
			gvr := schema.GroupVersionResource{Group: r.group, Version: v, Resource: r.resource}
			list, err := dyn.Resource(gvr).List(ctx, metav1.ListOptions{})
			if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
				continue
			}
			if err != nil {
				return out, fmt.Errorf("list %s: %w", gvr, err)
			}
			for i := range list.Items {
				out = append(out, &list.Items[i])
			}
			break
		}
	}
	return out, nil
}

// WriteYAML writes the converted objects as a multi-document YAML stream:
// pools, peers, BGP advertisements, layer-2 advertisements, each without
// status or server-set metadata, ready for kubectl apply.
func WriteYAML(w io.Writer, res *Result) error {
	var objs []runtime.Object
	for _, p := range res.Pools {
		objs = append(objs, typed(p, "BerthIPPool"))
	}
	for _, p := range res.Peers {
		objs = append(objs, typed(p, "BerthBGPPeer"))
	}
	for _, a := range res.BGPAdvs {
		objs = append(objs, typed(a, "BerthBGPAdvertisement"))
	}
	for _, a := range res.L2Advs {
		objs = append(objs, typed(a, "BerthL2Advertisement"))
	}
	var buf bytes.Buffer
	for i, o := range objs {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		delete(m, "status")
		unstructured.RemoveNestedField(m, "metadata", "creationTimestamp")
		b, err := yaml.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(b)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

func typed(o runtime.Object, kind string) runtime.Object {
	o = o.DeepCopyObject()
	o.GetObjectKind().SetGroupVersionKind(v1alpha1.SchemeGroupVersion.WithKind(kind))
	return o
}

// WriteReport writes the report: what was converted, then one line per
// note, the fields not carried over first.
func WriteReport(w io.Writer, res *Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# berth migrate: %d BerthIPPool, %d BerthBGPPeer, %d BerthBGPAdvertisement, %d BerthL2Advertisement\n",
		len(res.Pools), len(res.Peers), len(res.BGPAdvs), len(res.L2Advs))
	for _, lvl := range []Level{Lost, Changed} {
		for _, n := range res.Notes {
			if n.Level == lvl {
				fmt.Fprintln(&b, n)
			}
		}
	}
	if len(res.Notes) == 0 {
		fmt.Fprintln(&b, "# everything was carried over")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
