package oci

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestPush pushes an archive to go-containerregistry's in-process registry,
// pulls it back and compares: the index digest, both platforms, and every
// image's digest and layers.
func TestPush(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}

	img := Image{Name: "berth-speaker"}
	idx, err := Build(img, testOptions(t, img.Name))
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "berth-speaker.oci.tar")
	if err := WriteArchive(src, idx, name.MustParseReference("ghcr.io/berthlb/berth-speaker:v0.1.0").(name.Tag)); err != nil {
		t.Fatal(err)
	}

	ref, digest, err := Push(context.Background(), src, u.Host+"/berthlb")
	if err != nil {
		t.Fatal(err)
	}
	if want := u.Host + "/berthlb/berth-speaker:v0.1.0"; ref.String() != want {
		t.Errorf("pushed to %s, want %s", ref, want)
	}
	if want, _ := idx.Digest(); digest != want {
		t.Errorf("Push returned digest %s, want %s", digest, want)
	}

	pulled, err := remote.Index(ref)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	if d, _ := pulled.Digest(); d != digest {
		t.Errorf("pulled index %s, pushed %s", d, digest)
	}
	local, _ := idx.IndexManifest()
	remoteM, err := pulled.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(remoteM.Manifests) != 2 {
		t.Fatalf("pulled index has %d manifests, want 2", len(remoteM.Manifests))
	}
	for i, d := range remoteM.Manifests {
		if d.Platform == nil || d.Platform.String() != local.Manifests[i].Platform.String() || d.Digest != local.Manifests[i].Digest {
			t.Errorf("manifest %d: pulled %s for %v, want %s for %v", i, d.Digest, d.Platform, local.Manifests[i].Digest, local.Manifests[i].Platform)
		}
		// Pull the image by tag and platform, as a node would.
		im, err := remote.Image(ref, remote.WithPlatform(*d.Platform))
		if err != nil {
			t.Fatalf("pull %s for %s: %v", ref, d.Platform, err)
		}
		if got, _ := im.Digest(); got != d.Digest {
			t.Errorf("%s: pulled image %s, want %s", d.Platform, got, d.Digest)
		}
		cfg, err := im.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Architecture != d.Platform.Architecture {
			t.Errorf("%s: pulled config for %s", d.Platform, cfg.Architecture)
		}
		layers, err := im.Layers()
		if err != nil || len(layers) != 2 {
			t.Fatalf("%s: %d layers (%v), want 2", d.Platform, len(layers), err)
		}
		for _, l := range layers {
			rc, err := l.Compressed()
			if err != nil {
				t.Fatalf("%s: fetch layer: %v", d.Platform, err)
			}
			_, err = io.Copy(io.Discard, rc) // verifies the digest while reading
			rc.Close()
			if err != nil {
				t.Errorf("%s: layer: %v", d.Platform, err)
			}
		}
	}
}
