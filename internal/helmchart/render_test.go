package helmchart

import (
	"encoding/base64"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func loadChart(t *testing.T) (*chart.Chart, string) {
	t.Helper()
	dir, err := ChartDir()
	if err != nil {
		t.Fatal(err)
	}
	ch, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ch, dir
}

// generatedKey matches the data of a memberlist Secret the chart made up.
var generatedKey = regexp.MustCompile(`(?m)^  secretkey: (\S+)$`)

func TestRenderGolden(t *testing.T) {
	ch, _ := loadChart(t)
	for name, vals := range ValueSets() {
		t.Run(name, func(t *testing.T) {
			ms, err := Render(ch, Options{Values: vals})
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for _, m := range ms {
				b.WriteString("# Source: " + m.Template + "\n" + m.Content)
			}
			got := b.String()
			// A generated key differs on every render: check it, then
			// replace it.
			got = generatedKey.ReplaceAllStringFunc(got, func(line string) string {
				key := generatedKey.FindStringSubmatch(line)[1]
				raw, err := base64.StdEncoding.DecodeString(key)
				if err != nil || !regexp.MustCompile(`^[A-Za-z0-9]{32}$`).Match(raw) {
					t.Errorf("generated memberlist key %q is not 32 random letters and digits (%v)", raw, err)
				}
				return "  secretkey: GENERATED"
			})
			golden := filepath.Join("testdata", name+".yaml")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/helmchart -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("rendering differs from %s (-want +got; run with -update if intended):\n%s", golden, diff)
			}
		})
	}
}

func TestLint(t *testing.T) {
	_, dir := loadChart(t)
	for name, vals := range ValueSets() {
		t.Run(name, func(t *testing.T) {
			for _, m := range Lint(dir, vals) {
				if m.Severity > support.InfoSev {
					t.Errorf("helm lint: %s", m)
				} else {
					t.Logf("helm lint: %s", m)
				}
			}
		})
	}
}

// TestLintFails makes sure the lint above can fail: a value the schema
// refuses is an error.
func TestLintFails(t *testing.T) {
	_, dir := loadChart(t)
	for _, m := range Lint(dir, map[string]any{"ccm": map[string]any{"backend": "gcp"}}) {
		if m.Severity == support.ErrorSev {
			return
		}
	}
	t.Error("helm lint passed a value the schema refuses")
}

func TestSchemaRejectsBadValues(t *testing.T) {
	ch, _ := loadChart(t)
	for _, tc := range []struct {
		name string
		vals map[string]any
		want string // in the error
	}{
		{"unknown key", map[string]any{"speaker": map[string]any{"bgpp": map[string]any{}}}, "additional properties 'bgpp' not allowed"},
		{"wrong type", map[string]any{"controller": map[string]any{"replicas": "two"}}, "/controller/replicas"},
		{"unknown backend", map[string]any{"ccm": map[string]any{"backend": "gcp"}}, "value must be one of 'pools', 'aws'"},
		{"aws without cluster name", map[string]any{"ccm": map[string]any{"enabled": true, "backend": "aws"}}, "/ccm/aws/clusterName"},
		{"a class with the pools backend", map[string]any{"ccm": map[string]any{"enabled": true, "loadBalancerClass": "berth.dev/aws"}}, "/ccm/backend"},
		{"short memberlist key", map[string]any{"speaker": map[string]any{"layer2": map[string]any{"memberlist": map[string]any{"key": "too-short"}}}}, "/speaker/layer2/memberlist/key"},
		{"bad duration", map[string]any{"speaker": map[string]any{"forwarding": map[string]any{"driftCheckInterval": "10 seconds"}}}, "/speaker/forwarding/driftCheckInterval"},
		{"bad router ID", map[string]any{"speaker": map[string]any{"bgp": map[string]any{"routerID": "2001:db8::1"}}}, "/speaker/bgp/routerID"},
		{"bad digest", map[string]any{"speaker": map[string]any{"image": map[string]any{"digest": "latest"}}}, "/speaker/image/digest"},
		{"bad pod security level", map[string]any{"namespace": map[string]any{"podSecurityEnforce": "strict"}}, "/namespace/podSecurityEnforce"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Render(ch, Options{Values: tc.vals})
			if err == nil {
				t.Fatal("rendered; want the schema to reject the values")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			t.Logf("%v", err)
		})
	}
}

// TestManifestsUpToDate fails when manifests/ is not what the chart
// renders (make generate fixes it); hack/verify.sh checks the same.
func TestManifestsUpToDate(t *testing.T) {
	ch, _ := loadChart(t)
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	if err := WriteManifests(ch, tmp); err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(filepath.Join(tmp, "manifests"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(tmp, path)
		want, _ := os.ReadFile(path)
		got, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil || string(got) != string(want) {
			t.Errorf("%s is not what the chart renders; run make generate", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestVotersValue: speaker.layer2.voters (true by default) is passed to
// the speakers as --l2-voters, also without the membership record (the
// speaker then names no voters, as there is no record).
func TestVotersValue(t *testing.T) {
	ch, _ := loadChart(t)
	tests := []struct {
		name   string
		layer2 map[string]any
		want   string
	}{
		{name: "default", layer2: map[string]any{}, want: "- --l2-voters=true\n"},
		{name: "off", layer2: map[string]any{"voters": false}, want: "- --l2-voters=false\n"},
		{name: "without the record", layer2: map[string]any{"membersLease": ""}, want: "- --l2-voters=true\n"},
	}
	for _, tc := range tests {
		ms, err := Render(ch, Options{Values: map[string]any{"speaker": map[string]any{"layer2": tc.layer2}}})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		found := false
		for _, m := range ms {
			if strings.HasSuffix(m.Template, "speaker/daemonset.yaml") {
				found = true
				if !strings.Contains(m.Content, tc.want) {
					t.Errorf("%s: the DaemonSet lacks %q", tc.name, strings.TrimSpace(tc.want))
				}
			}
		}
		if !found {
			t.Fatal("no speaker DaemonSet rendered")
		}
	}
}
