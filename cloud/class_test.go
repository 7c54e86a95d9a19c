package cloud

import (
	"strings"
	"testing"

	"k8s.io/klog/v2/ktesting"
)

// TestNewClassNeedsAWS: the pools backend refuses a class, so berth-ccm
// never serves classed Services from the BerthIPPools berth-controller serves
// classed Services from.
func TestNewClassNeedsAWS(t *testing.T) {
	logger, _ := ktesting.NewTestContext(t)
	_, err := New(Config{Backend: BackendPools}, "berth.dev/aws", logger)
	if err == nil || !strings.Contains(err.Error(), "needs backend") {
		t.Fatalf("New(pools, berth.dev/aws) = %v; want a refusal", err)
	}
}
