package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
)

// installCRDs creates every CustomResourceDefinition found in the YAML or
// JSON files directly in dir and waits until all are established and served.
// Other documents (a kustomization.yaml, say) are skipped. A missing dir is an
// error only if it was set explicitly. It returns how many CRDs it installed.
func installCRDs(ctx context.Context, cfg *rest.Config, dir string, mustExist bool) (int, error) {
	logger := klog.FromContext(ctx).WithName("controlplane")
	crds, err := readCRDs(dir)
	if errors.Is(err, fs.ErrNotExist) && !mustExist {
		logger.V(1).Info("No CRD directory, installing none", "dir", dir)
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("install CRDs: %w", err)
	}
	client, err := apiextensions.NewForConfig(cfg)
	if err != nil {
		return 0, fmt.Errorf("install CRDs: %w", err)
	}
	for _, crd := range crds {
		if _, err := client.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
			return 0, fmt.Errorf("install CRD %s: %w", crd.Name, err)
		}
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return 0, fmt.Errorf("install CRDs: %w", err)
	}
	var lastEstablished time.Time
	for _, crd := range crds {
		established, err := waitForCRD(ctx, client, dyn, crd)
		if err != nil {
			return 0, fmt.Errorf("install CRD %s: %w", crd.Name, err)
		}
		if established.After(lastEstablished) {
			lastEstablished = established
		}
	}
	// The API server delays every create of a custom resource by two
	// seconds while its CRD was established less than two seconds ago
	// (crdHandler's justCreated, a guard for HA servers). Sit that out here
	// so that tests and benchmarks see normal create latency.
	select {
	case <-time.After(time.Until(lastEstablished.Add(crdCreateGrace))):
	case <-ctx.Done():
		return 0, fmt.Errorf("install CRDs: %w", ctx.Err())
	}
	return len(crds), nil
}

// crdCreateGrace is crdHandler's justCreated window plus a margin.
const crdCreateGrace = 2*time.Second + 50*time.Millisecond

// readCRDs decodes the CRDs in the files directly in dir, in name order.
func readCRDs(dir string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, e := range entries {
		if e.IsDir() || !slices.Contains([]string{".yaml", ".yml", ".json"}, filepath.Ext(e.Name())) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		found, err := decodeCRDs(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		crds = append(crds, found...)
	}
	return crds, nil
}

// decodeCRDs returns the CustomResourceDefinitions in a stream of YAML or
// JSON documents.
func decodeCRDs(r io.Reader) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	dec := yaml.NewYAMLOrJSONDecoder(r, 4096)
	var crds []*apiextensionsv1.CustomResourceDefinition
	for {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		err := dec.Decode(crd)
		if errors.Is(err, io.EOF) {
			return crds, nil
		}
		if err != nil {
			return nil, err
		}
		if crd.APIVersion == apiextensionsv1.SchemeGroupVersion.String() && crd.Kind == "CustomResourceDefinition" {
			crds = append(crds, crd)
		}
	}
}

// waitForCRD waits until crd is established and every served version shows
// up in discovery and answers a list, which is when clients can use it. The
// first list also builds the server's storage for the resource, which takes
// about a second that would otherwise land on the first test request. It
// returns when the CRD became established, by the server's clock.
func waitForCRD(ctx context.Context, client apiextensions.Interface, dyn dynamic.Interface, crd *apiextensionsv1.CustomResourceDefinition) (time.Time, error) {
	var established time.Time
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		got, err := client.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil //nolint:nilerr // transient; the poll's deadline reports failure
		}
		cond := crdCondition(got, apiextensionsv1.Established)
		if cond == nil || cond.Status != apiextensionsv1.ConditionTrue {
			return false, nil
		}
		if accepted := crdCondition(got, apiextensionsv1.NamesAccepted); accepted == nil || accepted.Status != apiextensionsv1.ConditionTrue {
			return false, nil
		}
		established = cond.LastTransitionTime.Time
		for _, v := range got.Spec.Versions {
			if !v.Served {
				continue
			}
			list, err := client.Discovery().ServerResourcesForGroupVersion(got.Spec.Group + "/" + v.Name)
			if err != nil {
				return false, nil //nolint:nilerr // not served yet
			}
			if !slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == got.Spec.Names.Plural }) {
				return false, nil
			}
			gvr := schema.GroupVersionResource{Group: got.Spec.Group, Version: v.Name, Resource: got.Spec.Names.Plural}
			if _, err := dyn.Resource(gvr).List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
				return false, nil //nolint:nilerr // not served yet
			}
		}
		return true, nil
	})
	return established, err
}

func crdCondition(crd *apiextensionsv1.CustomResourceDefinition, t apiextensionsv1.CustomResourceDefinitionConditionType) *apiextensionsv1.CustomResourceDefinitionCondition {
	for i := range crd.Status.Conditions {
		if crd.Status.Conditions[i].Type == t {
			return &crd.Status.Conditions[i]
		}
	}
	return nil
}

// waitForServiceCIDR waits until the API server's default ServiceCIDR is
// Ready, so that the first Service a test creates gets a ClusterIP rather
// than a transient allocation error.
func waitForServiceCIDR(ctx context.Context, cfg *rest.Config) error {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("wait for default ServiceCIDR: %w", err)
	}
	err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		cidr, err := client.NetworkingV1().ServiceCIDRs().Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			return false, nil //nolint:nilerr // not created yet
		}
		return apimeta.IsStatusConditionTrue(cidr.Status.Conditions, networkingv1.ServiceCIDRConditionReady), nil
	})
	if err != nil {
		return fmt.Errorf("wait for default ServiceCIDR: %w", err)
	}
	return nil
}
