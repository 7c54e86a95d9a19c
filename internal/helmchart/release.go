package helmchart

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
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
