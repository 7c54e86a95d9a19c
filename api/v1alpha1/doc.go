// Package v1alpha1 holds the Go types of Berth's custom resources in the API
// group berth.dev, version v1alpha1.
//
// The types carry kubebuilder markers from which controller-gen writes the
// CRD manifests in manifests/crds, including the OpenAPI schema and the CEL
// rules that reject invalid objects at admission. Deep-copy functions, the
// typed clientset, listers, informers and apply configurations are generated
// from these types by `make generate`; never edit zz_generated files by hand.
//
// This package holds types and constants only: no logic that needs a client,
// and nothing that parses addresses beyond what the schema declares.
//
// +k8s:deepcopy-gen=package
// +groupName=berth.dev
// +groupGoName=Berth
package v1alpha1
