// Command render keeps what is generated from the Helm chart charts/berth
// in step with it, and builds the chart's release artifacts.
//
//	go run ./hack/render                 # copy manifests/crds into the chart, render manifests/
//	go run ./hack/render -release 0.2.0 -out dist/release
//	go run ./hack/render -verify 0.2.0 -out dist/release -images berth-controller,berth-speaker,berth-ccm
//
// -release packages the chart as version 0.2.0 (images tagged 0.2.0), writes
// the berth.yaml install bundle and SHA256SUMS; file times in the package
// come from $SOURCE_DATE_EPOCH (default: 0) so that a commit always packages
// to the same bytes. -verify checks a built release (helmchart.VerifyRelease):
// the package, the bundle's image tags, every image archive and SHA256SUMS.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berthlb/berth/internal/helmchart"
)

func main() {
	release := flag.String("release", "", "build the release artifacts of this version instead of rendering manifests/")
	out := flag.String("out", "dist/release", "directory of the release artifacts")
	verify := flag.String("verify", "", "check the release artifacts of this version in -out instead")
	images := flag.String("images", "berth-controller,berth-speaker,berth-ccm", "with -verify, the images whose archives must be there")
	flag.Parse()
	if *verify != "" {
		if err := helmchart.VerifyRelease(*out, *verify, strings.Split(*images, ",")); err != nil {
			fmt.Fprintf(os.Stderr, "render: release %s in %s: %v\n", *verify, *out, err)
			os.Exit(1)
		}
		fmt.Printf("release %s in %s: chart package, image archives, %s and SHA256SUMS check out\n", *verify, *out, helmchart.BundleName)
		return
	}
	if err := run(*release, *out); err != nil {
		fmt.Fprintf(os.Stderr, "render: %v\n", err)
		os.Exit(1)
	}
}

func run(release, out string) error {
	root, err := helmchart.RepoRoot()
	if err != nil {
		return err
	}
	chartDir := filepath.Join(root, "charts", "berth")
	if release != "" {
		epoch, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH")+"0", 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		files, err := helmchart.Release(chartDir, release, out, time.Unix(epoch/10, 0).UTC())
		if err != nil {
			return err
		}
		for _, f := range files {
			fmt.Println(f)
		}
		return nil
	}
	if err := helmchart.SyncCRDs(root); err != nil {
		return err
	}
	ch, err := helmchart.Load(chartDir)
	if err != nil {
		return err
	}
	return helmchart.WriteManifests(ch, root)
}
