package helmchart

import (
	"fmt"
	"time"

	"github.com/Masterminds/semver/v3"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
)

// SetVersion stamps a release onto a loaded chart: version becomes the
// chart's version and appVersion (so the default image tag), and every file
// gets modTime, so that the same commit packages to the same bytes.
func SetVersion(ch *chart.Chart, version string, modTime time.Time) error {
	if _, err := semver.StrictNewVersion(version); err != nil {
		return fmt.Errorf("version %q is not semantic versioning (such as 0.2.0): %w", version, err)
	}
	ch.Metadata.Version = version
	ch.Metadata.AppVersion = version
	ch.ModTime, ch.SchemaModTime = modTime, modTime
	for _, f := range ch.Raw {
		f.ModTime = modTime
	}
	for _, f := range ch.Files {
		f.ModTime = modTime
	}
	for _, f := range ch.Templates {
		f.ModTime = modTime
	}
	return nil
}

// Package writes ch as <name>-<version>.tgz into dir, as `helm package`
// does, and returns the file's path.
func Package(ch *chart.Chart, dir string) (string, error) {
	if err := ch.Validate(); err != nil {
		return "", fmt.Errorf("package chart: %w", err)
	}
	path, err := chartutil.Save(ch, dir)
	if err != nil {
		return "", fmt.Errorf("package chart: %w", err)
	}
	return path, nil
}
