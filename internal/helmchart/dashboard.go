package helmchart

import (
	"encoding/json"
	"fmt"
)

// DashboardQueries returns the PromQL expression of every target of
// every panel of a Grafana dashboard's JSON, in order.
func DashboardQueries(dashboard []byte) ([]string, error) {
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(dashboard, &d); err != nil {
		return nil, fmt.Errorf("read the dashboard: %w", err)
	}
	var out []string
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			out = append(out, t.Expr)
		}
	}
	return out, nil
}
