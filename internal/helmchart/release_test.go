package helmchart

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/chart/v2/loader"
)

// TestReleaseIsReproducible builds the release artifacts twice and checks
// that they are byte for byte the same, that the package loads back with
// the version stamped on it, and that the bundle pins the images to it.
func TestReleaseIsReproducible(t *testing.T) {
	_, dir := loadChart(t)
	when := time.Unix(1_700_000_000, 0)
	var sums []string
	for i := range 2 {
		out := filepath.Join(t.TempDir(), "release")
		if i == 0 {
			// An image archive put there first is checksummed too.
			if err := os.MkdirAll(out, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(out, "berth-speaker.tar"), []byte("image"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		files, err := Release(dir, "1.2.3", out, when)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
		if err != nil {
			t.Fatal(err)
		}
		var kept []string
		for line := range strings.Lines(string(data)) {
			if !strings.HasSuffix(line, "  berth-speaker.tar\n") {
				kept = append(kept, line)
			}
		}
		sums = append(sums, strings.Join(kept, ""))
		if i == 0 && !strings.Contains(string(data), "  berth-speaker.tar\n") {
			t.Errorf("SHA256SUMS leaves out the image archive:\n%s", data)
		}
		ch, err := loader.Load(files[0])
		if err != nil {
			t.Fatal(err)
		}
		if ch.Metadata.Version != "1.2.3" || ch.Metadata.AppVersion != "1.2.3" || len(ch.CRDObjects()) != 4 {
			t.Errorf("package %s: version %s, appVersion %s, %d CRDs", files[0], ch.Metadata.Version, ch.Metadata.AppVersion, len(ch.CRDObjects()))
		}
		bundle, err := os.ReadFile(files[1])
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"kind: CustomResourceDefinition", "image: ghcr.io/berthlb/berth-speaker:1.2.3", "image: ghcr.io/berthlb/berth-controller:1.2.3", "kind: Namespace"} {
			if !strings.Contains(string(bundle), want) {
				t.Errorf("berth.yaml lacks %q", want)
			}
		}
		if strings.Index(string(bundle), "kind: Namespace") > strings.Index(string(bundle), "kind: DaemonSet") {
			t.Error("berth.yaml creates the DaemonSet before its Namespace")
		}
	}
	if sums[0] != sums[1] {
		t.Errorf("two builds differ:\n%s\n%s", sums[0], sums[1])
	}
	if _, err := Release(dir, "v1.2", t.TempDir(), when); err == nil {
		t.Error("accepted version v1.2")
	}
}
