package helmchart

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/berthlb/berth/controller"
	"github.com/berthlb/berth/internal/metrics"
	"github.com/berthlb/berth/speaker"
)

// TestGrafanaDashboard renders the chart with the dashboard on and checks
// that the ConfigMap carries dashboards/berth.json unchanged, and that
// every metric a panel queries is one Berth registers (e2e
// TestDashboardQueries then runs each query against a real Prometheus).
func TestGrafanaDashboard(t *testing.T) {
	ch, dir := loadChart(t)
	ms, err := Render(ch, Options{Values: map[string]any{"metrics": map[string]any{"grafanaDashboard": map[string]any{"enabled": true}}}})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Objects(ms)
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(filepath.Join(dir, "dashboards", "berth.json"))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, o := range objs {
		if o.GetKind() != "ConfigMap" || o.GetName() != "berth-dashboard" {
			continue
		}
		found = true
		if o.GetLabels()["grafana_dashboard"] != "1" {
			t.Errorf("labels %v lack grafana_dashboard: \"1\"", o.GetLabels())
		}
		data, _ := o.Object["data"].(map[string]any)
		if got, _ := data["berth.json"].(string); got+"\n" != string(file) {
			t.Errorf("the ConfigMap's berth.json differs from dashboards/berth.json")
		}
	}
	if !found {
		t.Fatal("no ConfigMap berth-dashboard rendered")
	}
	reg := &describing{}
	controller.NewMetrics(reg)
	speaker.NewMetrics(reg)
	metrics.NewWorkqueueProvider(reg)
	exprs, err := DashboardQueries(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) < 15 {
		t.Fatalf("only %d queries in the dashboard", len(exprs))
	}
	name := regexp.MustCompile(`\b(berth_[a-z0-9_]+|workqueue_[a-z_]+)`)
	for _, e := range exprs {
		for _, m := range name.FindAllString(e, -1) {
			base := regexp.MustCompile(`_(bucket|sum|count)$`).ReplaceAllString(m, "")
			if !slices.Contains(reg.names, m) && !slices.Contains(reg.names, base) {
				t.Errorf("query %q uses %s, which no Berth component exports", e, m)
			}
		}
	}
}

func TestDashboardQueriesParse(t *testing.T) {
	got, err := DashboardQueries([]byte(`{"panels":[{"type":"row"},{"targets":[{"expr":"a"},{"expr":"b"}]}]}`))
	if err != nil || !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("DashboardQueries = %v, %v", got, err)
	}
	if _, err := DashboardQueries([]byte(`{`)); err == nil {
		t.Error("no error for broken JSON")
	}
}
