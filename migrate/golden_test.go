package migrate_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthlb/berth/migrate"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// TestGolden converts every input in testdata and compares the Berth
// resources and the report with testdata/golden/<input>.berth.yaml and
// <input>.report.txt.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			out, report := convertFile(t, in)
			golden(t, filepath.Join("testdata", "golden", name+".berth.yaml"), out)
			golden(t, filepath.Join("testdata", "golden", name+".report.txt"), report)
		})
	}
}

func convertFile(t *testing.T, path string) (out, report string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	objs, err := migrate.ReadYAML(f)
	if err != nil {
		t.Fatalf("ReadYAML: %v", err)
	}
	res := migrate.Convert(objs)
	var o, r bytes.Buffer
	if err := migrate.WriteYAML(&o, res); err != nil {
		t.Fatal(err)
	}
	if err := migrate.WriteReport(&r, res); err != nil {
		t.Fatal(err)
	}
	return o.String(), r.String()
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./migrate -run TestGolden -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}
