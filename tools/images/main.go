// Command images builds Berth's container images into OCI image-layout
// tarballs, and pushes them. `make images` and `make push` run it; see
// docs/development.md.
//
//	images build -binaries DIR -out DIR -repository R -version V -revision C -source URL -epoch N
//	images push -registry HOST[/PATH] ARCHIVE...
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berthlb/berth/tools/images/oci"
)

// berthImages are the images `make images` builds.
func berthImages() []oci.Image {
	return []oci.Image{
		{Name: "berth-controller", NonRoot: true},
		{Name: "berth-speaker"}, // root: it programs nftables, routes and raw sockets
		{Name: "berth-ccm", NonRoot: true},
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: images build|push [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "build":
		err = build(os.Args[2:])
	case "push":
		err = push(context.Background(), os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q; want build or push", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "images: %v\n", err)
		os.Exit(1)
	}
}

func build(args []string) error {
	fs := flag.NewFlagSet("build", flag.ExitOnError)
	var o oci.Options
	fs.StringVar(&o.Binaries, "binaries", "dist/bin", "directory with one <os>_<arch> directory of static binaries per platform")
	out := fs.String("out", "dist/images", "directory for the <image>.oci.tar archives and digests.txt")
	platforms := fs.String("platforms", "linux/amd64,linux/arm64", "comma-separated platforms of each index")
	repo := fs.String("repository", "ghcr.io/berthlb", "repository prefix of the images' names in the archives")
	fs.StringVar(&o.Version, "version", "devel", "version: image tag and org.opencontainers.image.version")
	fs.StringVar(&o.Revision, "revision", "", "git commit: org.opencontainers.image.revision")
	fs.StringVar(&o.Source, "source", "https://github.com/berthlb/berth", "org.opencontainers.image.source")
	epoch := fs.Int64("epoch", 0, "creation time in seconds since 1970 (SOURCE_DATE_EPOCH: the commit's time)")
	only := fs.String("nonroot-images", "", "comma-separated names of other images to build instead of Berth's, each running its binary of the same name as uid 65532 (the test images of e2e/cluster)")
	_ = fs.Parse(args)
	images := berthImages()
	if *only != "" {
		images = nil
		for _, n := range strings.Split(*only, ",") {
			images = append(images, oci.Image{Name: n, NonRoot: true})
		}
	}
	o.Created = time.Unix(*epoch, 0).UTC()
	for _, s := range strings.Split(*platforms, ",") {
		p, err := v1.ParsePlatform(s)
		if err != nil {
			return fmt.Errorf("-platforms: %w", err)
		}
		o.Platforms = append(o.Platforms, *p)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	var digests strings.Builder
	for _, img := range images {
		start := time.Now()
		ref, err := name.NewTag(*repo + "/" + img.Name + ":" + o.Version)
		if err != nil {
			return fmt.Errorf("image name: %w", err)
		}
		idx, err := oci.Build(img, o)
		if err != nil {
			return err
		}
		dst := filepath.Join(*out, img.Name+".oci.tar")
		if err := oci.WriteArchive(dst, idx, ref); err != nil {
			return fmt.Errorf("%s: %w", dst, err)
		}
		d, err := idx.Digest()
		if err != nil {
			return err
		}
		st, err := os.Stat(dst)
		if err != nil {
			return err
		}
		fmt.Printf("%s  %s@%s  (%.1f MB archive, %s)\n", dst, ref, d, float64(st.Size())/1e6, time.Since(start).Round(time.Millisecond))
		fmt.Fprintf(&digests, "%s@%s\n", ref, d)
	}
	return os.WriteFile(filepath.Join(*out, "digests.txt"), []byte(digests.String()), 0o644)
}

func push(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("push", flag.ExitOnError)
	registry := fs.String("registry", "", "registry host and optional path to push to (required), e.g. ghcr.io/berthlb")
	insecure := fs.Bool("insecure", false, "allow plain HTTP (localhost registries use it anyway)")
	_ = fs.Parse(args)
	if *registry == "" {
		return errors.New("push: -registry is required")
	}
	if fs.NArg() == 0 {
		return errors.New("push: no archives given")
	}
	var opts []name.Option
	if *insecure {
		opts = append(opts, name.Insecure)
	}
	for _, src := range fs.Args() {
		ref, d, err := oci.Push(ctx, src, strings.TrimSuffix(*registry, "/"), opts...)
		if err != nil {
			return err
		}
		fmt.Printf("pushed %s@%s\n", ref, d)
	}
	return nil
}
