package cli

import (
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
)

// ServesServiceCIDRs reports whether the API server serves ServiceCIDR
// objects in networking.k8s.io/v1 (Kubernetes 1.33 and later). An older
// one has none, and an informer on them would never sync.
func ServesServiceCIDRs(d discovery.DiscoveryInterface) (bool, error) {
	list, err := d.ServerResourcesForGroupVersion("networking.k8s.io/v1")
	if err != nil {
		return false, fmt.Errorf("discover networking.k8s.io/v1: %w", err)
	}
	return slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == "servicecidrs" }), nil
}
