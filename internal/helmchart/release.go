package helmchart

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"helm.sh/helm/v4/pkg/chart/v2/loader"
)

// BundleName is the single-file install bundle of a release.
const BundleName = "berth.yaml"

// Release writes a release's chart artifacts into out: the chart package
// (berth-<version>.tgz, images tagged <version>), the install bundle
// berth.yaml (the CRDs and the chart rendered with ManifestValues), and
// SHA256SUMS over every file in out, including any put there before (the
// image archives). modTime is stamped on the package's files.
func Release(chartDir, version, out string, modTime time.Time) ([]string, error) {
	ch, err := Load(chartDir)
	if err != nil {
		return nil, err
	}
	if err := SetVersion(ch, version, modTime); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	pkg, err := Package(ch, out)
	if err != nil {
		return nil, err
	}
	ms, err := Render(ch, Options{Values: ManifestValues()})
	if err != nil {
		return nil, err
	}
	bundle, err := Bundle(CRDs(ch), ms)
	if err != nil {
		return nil, err
	}
	bundle = fmt.Sprintf("# Berth %s: kubectl apply --server-side -f %s (docs/install.md)\n", version, BundleName) + bundle
	if err := os.WriteFile(filepath.Join(out, BundleName), []byte(bundle), 0o644); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	sums, err := WriteChecksums(out)
	if err != nil {
		return nil, err
	}
	return []string{pkg, filepath.Join(out, BundleName), sums}, nil
}

// WriteChecksums writes dir/SHA256SUMS in the format of sha256sum (so
// `sha256sum -c SHA256SUMS` checks it) over the regular files of dir.
func WriteChecksums(dir string) (string, error) {
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return "", fmt.Errorf("checksums: %w", err)
	}
	var lines []string
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == "SHA256SUMS" {
			continue
		}
		sum, err := fileSHA256(filepath.Join(dir, e.Name()))
		if err != nil {
			return "", err
		}
		lines = append(lines, sum+"  "+e.Name()+"\n")
	}
	path := filepath.Join(dir, "SHA256SUMS")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o644); err != nil {
		return "", fmt.Errorf("checksums: %w", err)
	}
	return path, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("checksums: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("checksums: %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// VerifyRelease checks the release artifacts in dir for version: the chart
// package berth-<version>.tgz loads and carries the version, berth.yaml
// pins every image to it, an archive <image>.oci.tar exists for each of
// images, and SHA256SUMS lists exactly the other files of dir, each with
// its true sum.
func VerifyRelease(dir, version string, images []string) error {
	var errs []error
	pkg := filepath.Join(dir, "berth-"+version+".tgz")
	if ch, err := loader.Load(pkg); err != nil {
		errs = append(errs, fmt.Errorf("chart package: %w", err))
	} else if ch.Metadata.Version != version || ch.Metadata.AppVersion != version {
		errs = append(errs, fmt.Errorf("chart package %s has version %s, appVersion %s", pkg, ch.Metadata.Version, ch.Metadata.AppVersion))
	}
	bundle, err := os.ReadFile(filepath.Join(dir, BundleName))
	if err != nil {
		errs = append(errs, err)
	}
	if bundle != nil {
		imageRef := regexp.MustCompile(`(?m)^\s*image: (\S+)$`)
		refs := imageRef.FindAllStringSubmatch(string(bundle), -1)
		if len(refs) == 0 {
			errs = append(errs, fmt.Errorf("%s names no image", BundleName))
		}
		for _, r := range refs {
			if !strings.HasSuffix(r[1], ":"+version) {
				errs = append(errs, fmt.Errorf("%s uses image %s, not tagged %s", BundleName, r[1], version))
			}
		}
	}
	for _, img := range images {
		if _, err := os.Stat(filepath.Join(dir, img+".oci.tar")); err != nil {
			errs = append(errs, fmt.Errorf("image archive: %w", err))
		}
	}
	sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	listed := map[string]bool{}
	for line := range strings.Lines(string(sums)) {
		sum, name, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "  ")
		if !ok {
			errs = append(errs, fmt.Errorf("SHA256SUMS: bad line %q", line))
			continue
		}
		listed[name] = true
		if got, err := fileSHA256(filepath.Join(dir, name)); err != nil {
			errs = append(errs, err)
		} else if got != sum {
			errs = append(errs, fmt.Errorf("SHA256SUMS: %s has sum %s, listed %s", name, got, sum))
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, e := range entries {
		if e.Type().IsRegular() && e.Name() != "SHA256SUMS" && !listed[e.Name()] {
			errs = append(errs, fmt.Errorf("SHA256SUMS leaves out %s", e.Name()))
		}
	}
	return errors.Join(errs...)
}
