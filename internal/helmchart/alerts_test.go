package helmchart

import (
	"regexp"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/berthlb/berth/controller"
	"github.com/berthlb/berth/speaker"
)

// describing is a Registerer that only collects the names of the metrics
// registered with it.
type describing struct{ names []string }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (d *describing) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		if m := fqName.FindStringSubmatch(desc.String()); m != nil {
			d.names = append(d.names, m[1])
		}
	}
	return nil
}

func (d *describing) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = d.Register(c)
	}
}

func (d *describing) Unregister(prometheus.Collector) bool { return true }

// TestAlertsUseRealMetrics renders the PrometheusRule and checks that
// every Berth metric its expressions name is one the controller or the
// speaker registers: an alert on a misspelt metric never fires.
func TestAlertsUseRealMetrics(t *testing.T) {
	reg := &describing{}
	controller.NewMetrics(reg)
	speaker.NewMetrics(reg)
	if len(reg.names) < 10 {
		t.Fatalf("collected only %v from the metrics constructors", reg.names)
	}
	ch, _ := loadChart(t)
	ms, err := Render(ch, Options{Values: map[string]any{"metrics": map[string]any{"prometheusRule": map[string]any{"enabled": true}}}})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Objects(ms)
	if err != nil {
		t.Fatal(err)
	}
	used := regexp.MustCompile(`\bberth_[a-z0-9_]+`)
	var alerts []string
	for _, o := range objs {
		if o.GetKind() != "PrometheusRule" {
			continue
		}
		groups, _, _ := unstructured.NestedSlice(o.Object, "spec", "groups")
		for _, g := range groups {
			rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
			for _, r := range rules {
				rule := r.(map[string]any)
				name, expr := rule["alert"].(string), rule["expr"].(string)
				alerts = append(alerts, name)
				summary, _, _ := unstructured.NestedString(rule, "annotations", "summary")
				if summary == "" {
					t.Errorf("alert %s has no summary", name)
				}
				for _, m := range used.FindAllString(expr, -1) {
					if !slices.Contains(reg.names, m) {
						t.Errorf("alert %s uses %s, which no Berth component exports (have %v)", name, m, reg.names)
					}
				}
			}
		}
	}
	for _, want := range []string{"BerthServiceWithoutAddress", "BerthPoolNearlyExhausted", "BerthBGPSessionDown", "BerthForwardingFailing", "BerthForwardingTableRewritten",
		"BerthServicesPending", "BerthControllerSyncErrors", "BerthSpeakerSyncErrors"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("alert %s missing; have %v", want, alerts)
		}
	}
}
