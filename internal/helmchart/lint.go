package helmchart

import (
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
)

// Lint runs `helm lint` on the chart in dir with values overriding
// values.yaml, and returns every message (support.InfoSev and up).
func Lint(dir string, values map[string]any) []support.Message {
	return lint.RunAll(dir, values, DefaultNamespace).Messages
}
