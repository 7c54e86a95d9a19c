package helmchart

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/berthlb/berth/cloud"
)

// TestCloudConfigParses checks that the cloud config the chart renders for
// berth-ccm is one berth-ccm accepts (its parser refuses unknown fields).
func TestCloudConfigParses(t *testing.T) {
	ch, _ := loadChart(t)
	for _, tc := range []struct {
		name    string
		vals    map[string]any
		backend string
	}{
		{"pools", map[string]any{"ccm": map[string]any{"enabled": true}}, cloud.BackendPools},
		{"aws", ValueSets()["ccm-aws"], cloud.BackendAWS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := Render(ch, Options{Values: tc.vals})
			if err != nil {
				t.Fatal(err)
			}
			objs, err := Objects(ms)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range objs {
				if o.GetKind() != "ConfigMap" || o.GetName() != "berth-ccm-cloud-config" {
					continue
				}
				data, _, _ := unstructured.NestedString(o.Object, "data", "cloud.yaml")
				cfg, err := cloud.ParseConfig(strings.NewReader(data))
				if err != nil {
					t.Fatalf("berth-ccm refuses the rendered cloud config: %v\n%s", err, data)
				}
				if cfg.Backend != tc.backend {
					t.Errorf("backend %q, want %q", cfg.Backend, tc.backend)
				}
				if tc.backend == cloud.BackendAWS && (cfg.AWS.ClusterName != "prod" || len(cfg.AWS.EIP.AllocationIDs) != 1) {
					t.Errorf("aws section not carried over: %+v", cfg.AWS)
				}
				return
			}
			t.Fatal("no cloud config rendered")
		})
	}
}
