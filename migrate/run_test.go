package migrate_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthlb/berth/migrate"
)

// TestRun checks the command's plumbing: standard input and a file read
// together, the resources to standard output, the report to a file, and
// the refusal to run with nothing to read.
func TestRun(t *testing.T) {
	in, err := os.ReadFile("testdata/metallb-layer2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(t.TempDir(), "report.txt")
	var out, errOut bytes.Buffer
	err = migrate.Run(t.Context(), migrate.Options{Files: []string{"-", "testdata/cilium-pools.yaml"}, Report: report},
		migrate.Streams{In: bytes.NewReader(in), Out: &out, Err: &errOut})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := strings.Count(out.String(), "kind: BerthIPPool"); got != 5 {
		t.Errorf("%d BerthIPPools in the output, want 5 (2 MetalLB, 3 Cilium):\n%s", got, out.String())
	}
	rep, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(rep), "# berth migrate: 5 BerthIPPool, 0 BerthBGPPeer, 0 BerthBGPAdvertisement, 4 BerthL2Advertisement") {
		t.Errorf("report:\n%s", rep)
	}
	if errOut.Len() != 0 {
		t.Errorf("standard error with --report: %q", errOut.String())
	}

	if err := migrate.Run(t.Context(), migrate.Options{}, migrate.Streams{}); err == nil || !strings.Contains(err.Error(), "nothing to read") {
		t.Errorf("Run without sources: %v, want an error saying there is nothing to read", err)
	}
	err = migrate.Run(t.Context(), migrate.Options{Files: []string{"-"}}, migrate.Streams{In: strings.NewReader("a: [b"), Out: &out, Err: &errOut})
	if err == nil || !strings.Contains(err.Error(), "document 1") {
		t.Errorf("Run on broken YAML: %v, want an error naming the document", err)
	}
}

// TestReadYAMLJSONList checks that JSON and a List of any kind are read.
func TestReadYAMLJSONList(t *testing.T) {
	const in = `{"apiVersion":"v1","kind":"List","items":[
	  {"apiVersion":"metallb.io/v1beta1","kind":"IPAddressPool","metadata":{"name":"a","namespace":"m"},"spec":{"addresses":["192.0.2.0/28"]}},
	  {"apiVersion":"metallb.io/v1beta1","kind":"L2Advertisement","metadata":{"name":"b","namespace":"m"}}]}`
	objs, err := migrate.ReadYAML(strings.NewReader(in))
	if err != nil || len(objs) != 2 || objs[1].GetKind() != "L2Advertisement" {
		t.Fatalf("ReadYAML = %d objects, %v", len(objs), err)
	}
}
