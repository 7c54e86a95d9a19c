package helmchart

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	"k8s.io/client-go/rest"
)

// DefaultNamespace is the namespace the manifests and the documentation
// install Berth into.
const DefaultNamespace = "berth-system"

// ChartDir returns charts/berth of the repository that holds the working
// directory.
func ChartDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "charts", "berth"), nil
}

// RepoRoot returns the directory of the go.mod above the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find repository root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Load reads the chart in dir.
func Load(dir string) (*chart.Chart, error) {
	ch, err := loader.LoadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", dir, err)
	}
	return ch, nil
}

// Options are a release's settings for Render.
type Options struct {
	// Namespace is the release namespace; default DefaultNamespace.
	Namespace string
	// ReleaseName defaults to "berth".
	ReleaseName string
	// Values override the chart's values.yaml, as `helm install --values`.
	Values map[string]any
	// Cluster, when set, is the cluster the chart's lookup calls read, as
	// in `helm install` or `helm upgrade`; nil renders as `helm template`
	// does, where lookup finds nothing.
	Cluster *rest.Config
	// Upgrade renders as `helm upgrade` rather than `helm install`.
	Upgrade bool
}

// Manifest is one rendered template.
type Manifest struct {
	// Template is the template's path inside the chart, such as
	// templates/controller/rbac.yaml.
	Template string
	// Content is its YAML, one or more documents.
	Content string
}

// Render renders ch as `helm install` would, without a cluster: values
// are checked against values.schema.json, and lookup reads opts.Cluster.
// It returns the non-empty manifests sorted by template path; NOTES.txt is
// left out.
func Render(ch *chart.Chart, opts Options) ([]Manifest, error) {
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if opts.ReleaseName == "" {
		opts.ReleaseName = "berth"
	}
	vals, err := chartutil.ToRenderValues(ch, opts.Values, common.ReleaseOptions{
		Name: opts.ReleaseName, Namespace: opts.Namespace, Revision: 1, IsInstall: !opts.Upgrade, IsUpgrade: opts.Upgrade,
	}, common.DefaultCapabilities)
	if err != nil {
		return nil, fmt.Errorf("render chart: %w", err)
	}
	var out map[string]string
	if opts.Cluster != nil {
		out, err = engine.RenderWithClient(ch, vals, opts.Cluster)
	} else {
		out, err = engine.Render(ch, vals)
	}
	if err != nil {
		return nil, fmt.Errorf("render chart: %w", err)
	}
	prefix := ch.Name() + "/"
	var ms []Manifest
	for name, content := range out {
		name = strings.TrimPrefix(name, prefix)
		if strings.HasSuffix(name, "NOTES.txt") || strings.TrimSpace(stripComments(content)) == "" {
			continue
		}
		ms = append(ms, Manifest{Template: name, Content: strings.TrimSpace(content) + "\n"})
	}
	slices.SortFunc(ms, func(a, b Manifest) int { return strings.Compare(a.Template, b.Template) })
	return ms, nil
}

// stripComments drops YAML comment lines and document separators, so that a
// template rendering only comments counts as empty.
func stripComments(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		t := strings.TrimSpace(line)
		if t == "" || t == "---" || strings.HasPrefix(t, "#") {
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

// CRDs returns the chart's CustomResourceDefinition files, sorted by name.
func CRDs(ch *chart.Chart) []Manifest {
	var ms []Manifest
	for _, c := range ch.CRDObjects() {
		ms = append(ms, Manifest{Template: c.Name, Content: strings.TrimSpace(string(c.File.Data)) + "\n"})
	}
	slices.SortFunc(ms, func(a, b Manifest) int { return strings.Compare(a.Template, b.Template) })
	return ms
}

// Bundle joins CRDs and rendered manifests into one multi-document YAML
// stream in Helm's install order (Namespace, then RBAC, ..., workloads),
// for `kubectl apply -f`. Helm hooks (the uninstall Job) are left out: a
// plain apply would run them at once.
func Bundle(crds, ms []Manifest) (string, error) {
	files := map[string]string{}
	for _, m := range ms {
		files[m.Template] = m.Content
	}
	_, sorted, err := releaseutil.SortManifests(files, nil, releaseutil.InstallOrder)
	if err != nil {
		return "", fmt.Errorf("sort manifests: %w", err)
	}
	var b strings.Builder
	for _, c := range crds {
		writeDoc(&b, c.Template, c.Content)
	}
	for _, m := range sorted {
		writeDoc(&b, m.Name, m.Content)
	}
	return b.String(), nil
}

func writeDoc(b *strings.Builder, source, content string) {
	b.WriteString("---\n# Source: ")
	b.WriteString(source)
	b.WriteString("\n")
	b.WriteString(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(content), "---")))
	b.WriteString("\n")
}
