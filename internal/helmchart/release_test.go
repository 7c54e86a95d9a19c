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
		if ch.Metadata.Version != "1.2.3" || ch.Metadata.AppVersion != "1.2.3" || len(ch.CRDObjects()) != 5 {
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

// TestVerifyRelease checks that VerifyRelease accepts what Release writes
// next to the image archives, and names each way a bundle can be wrong.
func TestVerifyRelease(t *testing.T) {
	_, dir := loadChart(t)
	images := []string{"berth-controller", "berth-speaker", "berth-ccm"}
	build := func(t *testing.T) string {
		out := filepath.Join(t.TempDir(), "release")
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, img := range images {
			if err := os.WriteFile(filepath.Join(out, img+".oci.tar"), []byte(img), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := Release(dir, "1.2.3", out, time.Unix(1_700_000_000, 0)); err != nil {
			t.Fatal(err)
		}
		return out
	}
	tests := []struct {
		name    string
		version string
		damage  func(out string) error
		want    string // "" passes
	}{
		{name: "as built", version: "1.2.3"},
		{name: "another version", version: "1.2.4", want: "berth-1.2.4.tgz"},
		{name: "an archive changed", version: "1.2.3", want: "berth-speaker.oci.tar has sum",
			damage: func(out string) error {
				return os.WriteFile(filepath.Join(out, "berth-speaker.oci.tar"), []byte("other"), 0o644)
			}},
		{name: "an archive missing", version: "1.2.3", want: "berth-ccm.oci.tar",
			damage: func(out string) error { return os.Remove(filepath.Join(out, "berth-ccm.oci.tar")) }},
		{name: "a file not summed", version: "1.2.3", want: "leaves out notes.txt",
			damage: func(out string) error { return os.WriteFile(filepath.Join(out, "notes.txt"), nil, 0o644) }},
		{name: "the bundle with a dev image", version: "1.2.3", want: "not tagged 1.2.3",
			damage: func(out string) error {
				b, err := os.ReadFile(filepath.Join(out, BundleName))
				if err != nil {
					return err
				}
				b = []byte(strings.Replace(string(b), "berth-speaker:1.2.3", "berth-speaker:dev", 1))
				if err := os.WriteFile(filepath.Join(out, BundleName), b, 0o644); err != nil {
					return err
				}
				_, err = WriteChecksums(out)
				return err
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := build(t)
			if tc.damage != nil {
				if err := tc.damage(out); err != nil {
					t.Fatal(err)
				}
			}
			err := VerifyRelease(out, tc.version, images)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("VerifyRelease: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("VerifyRelease = %v, want an error with %q", err, tc.want)
			}
		})
	}
}
