package config_test

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/config"
)

// TestMessagesHideOtherPoolsAllowLists: what a Service is told about pools
// it may not use never lists the namespaces, namespace labels or Service
// labels those pools admit, nor an invalid pool's problems (which may
// quote its selectors).
func TestMessagesHideOtherPoolsAllowLists(t *testing.T) {
	secret := "secret-team"
	cfg := config.For([]*v1alpha1.BerthIPPool{
		ippool("by-list", []string{"203.0.113.0/28"}, allocation(v1alpha1.ServiceAllocation{Namespaces: []string{"team-a", secret}})),
		ippool("by-ns-label", []string{"203.0.113.16/28"}, allocation(v1alpha1.ServiceAllocation{NamespaceSelector: matchLabels("tenant", secret)})),
		ippool("by-svc-label", []string{"203.0.113.32/28"}, allocation(v1alpha1.ServiceAllocation{ServiceSelector: matchLabels("tier", secret)})),
		ippool("broken", []string{"203.0.113.48/28"}, allocation(v1alpha1.ServiceAllocation{NamespaceSelector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: secret, Operator: "Bogus"}}}})),
	})
	for _, svc := range []struct{ name, annotation, value string }{
		{"automatic", "", ""},
		{"named pools", v1alpha1.AnnotationPool, "by-list,by-ns-label,by-svc-label,broken"},
		{"address of by-list", v1alpha1.AnnotationAddresses, "203.0.113.1"},
		{"address of by-ns-label", v1alpha1.AnnotationAddresses, "203.0.113.17"},
		{"address of by-svc-label", v1alpha1.AnnotationAddresses, "203.0.113.33"},
		{"address of broken", v1alpha1.AnnotationAddresses, "203.0.113.49"},
	} {
		t.Run(svc.name, func(t *testing.T) {
			s := service()
			if svc.annotation != "" {
				s = service(annotate(svc.annotation, svc.value))
			}
			_, err := cfg.Request(s, nil)
			if err == nil {
				t.Fatal("no refusal")
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "team-a") {
				t.Errorf("message %q reveals another pool's allow-list", err)
			}
		})
	}
}
