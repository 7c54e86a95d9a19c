package oci

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BinDir is where, in every image, the binary lives; the entrypoint is
// BinDir/<image name>.
const BinDir = "/usr/local/bin"

// Image describes one of Berth's images.
type Image struct {
	// Name is the image's repository name and its binary's name
	// (berth-controller).
	Name string
	// NonRoot runs the image as uid/gid 65532. Without it the image runs as
	// root, which the speaker needs (with capabilities the chart grants).
	NonRoot bool
}

// Options are what all images of one build share.
type Options struct {
	// Binaries holds the static binaries, one directory per platform:
	// Binaries/<os>_<arch>/<image name>.
	Binaries string
	// Platforms to build, each becoming one manifest of the index.
	Platforms []v1.Platform
	// Created is the time written into configs, layer entries and the
	// org.opencontainers.image.created annotation: the commit's time
	// (SOURCE_DATE_EPOCH) for reproducible builds.
	Created time.Time
	// Version, Revision and Source become the org.opencontainers.image
	// version, revision and source labels and annotations.
	Version, Revision, Source string
}

// Build returns the multi-platform index of img.
func Build(img Image, o Options) (v1.ImageIndex, error) {
	base, err := baseLayer(o.Created)
	if err != nil {
		return nil, fmt.Errorf("%s: base layer: %w", img.Name, err)
	}
	ann := o.annotations(img)
	var adds []mutate.IndexAddendum
	for _, p := range o.Platforms {
		im, err := o.platformImage(img, p, base, ann)
		if err != nil {
			return nil, fmt.Errorf("%s for %s: %w", img.Name, p, err)
		}
		adds = append(adds, mutate.IndexAddendum{
			Add:        im,
			Descriptor: v1.Descriptor{Platform: &p},
		})
	}
	idx := mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex)
	return mutate.Annotations(idx, ann).(v1.ImageIndex), nil
}

// annotations are the OCI annotations of img, also used as config labels.
func (o Options) annotations(img Image) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":    img.Name,
		"org.opencontainers.image.source":   o.Source,
		"org.opencontainers.image.revision": o.Revision,
		"org.opencontainers.image.version":  o.Version,
		"org.opencontainers.image.created":  o.Created.UTC().Format(time.RFC3339),
		"org.opencontainers.image.licenses": "Apache-2.0",
	}
}

func (o Options) platformImage(img Image, p v1.Platform, base v1.Layer, ann map[string]string) (v1.Image, error) {
	binPath := filepath.Join(o.Binaries, p.OS+"_"+p.Architecture, img.Name)
	bin, err := os.ReadFile(binPath)
	if err != nil {
		return nil, fmt.Errorf("read binary: %w", err)
	}
	app, err := layer([]file{{Path: BinDir + "/" + img.Name, Mode: 0o755, Data: bin}}, o.Created)
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: o.Created.UTC()}
	user := ""
	if img.NonRoot {
		user = strconv.Itoa(NonRoot) + ":" + strconv.Itoa(NonRoot)
	}
	cfg := &v1.ConfigFile{
		Architecture: p.Architecture,
		OS:           p.OS,
		Variant:      p.Variant,
		Created:      created,
		Config: v1.Config{
			Entrypoint: []string{BinDir + "/" + img.Name},
			Env:        []string{"PATH=" + BinDir + ":/usr/bin:/bin"},
			User:       user,
			WorkingDir: "/",
			Labels:     ann,
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	im, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, err
	}
	im = mutate.ConfigMediaType(mutate.MediaType(im, types.OCIManifestSchema1), types.OCIConfigJSON)
	im, err = mutate.Append(im,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{Created: created, CreatedBy: "berth base: passwd, group, CA certificates, /tmp"}},
		mutate.Addendum{Layer: app, MediaType: types.OCILayer, History: v1.History{Created: created, CreatedBy: "berth: " + BinDir + "/" + img.Name}},
	)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(im, ann).(v1.Image), nil
}
