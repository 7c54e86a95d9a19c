package oci

import (
	"archive/tar"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

var (
	amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = v1.Platform{OS: "linux", Architecture: "arm64"}
)

// testOptions writes a tiny "binary" per platform for each image name and
// returns options that build from them.
func testOptions(t *testing.T, names ...string) Options {
	t.Helper()
	dir := t.TempDir()
	for _, p := range []v1.Platform{amd64, arm64} {
		for _, n := range names {
			pd := filepath.Join(dir, p.OS+"_"+p.Architecture)
			if err := os.MkdirAll(pd, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(pd, n), []byte("\x7fELF "+n+" for "+p.Architecture), 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	return Options{
		Binaries:  dir,
		Platforms: []v1.Platform{amd64, arm64},
		Created:   time.Date(2026, 12, 3, 9, 10, 21, 0, time.UTC),
		Version:   "v0.1.0",
		Revision:  "1e5d4115fa1c",
		Source:    "https://github.com/berthlb/berth",
	}
}

// TestReproducible builds and archives the same image twice from separate
// copies of the inputs and wants identical digests and identical files.
func TestReproducible(t *testing.T) {
	img := Image{Name: "berth-controller", NonRoot: true}
	ref := name.MustParseReference("ghcr.io/berthlb/berth-controller:v0.1.0").(name.Tag)
	var digests []v1.Hash
	var sums [][32]byte
	for range 2 {
		idx, err := Build(img, testOptions(t, img.Name))
		if err != nil {
			t.Fatal(err)
		}
		d, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(t.TempDir(), "img.oci.tar")
		if err := WriteArchive(dst, idx, ref); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		digests, sums = append(digests, d), append(sums, sha256.Sum256(b))
	}
	if digests[0] != digests[1] {
		t.Errorf("index digests differ: %s and %s", digests[0], digests[1])
	}
	if sums[0] != sums[1] {
		t.Errorf("archives differ: %x and %x", sums[0], sums[1])
	}
	// A different input must change the digest, or the comparison above
	// proves nothing.
	o := testOptions(t, img.Name)
	o.Revision = "0000000000ff"
	idx, err := Build(img, o)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := idx.Digest(); d == digests[0] {
		t.Errorf("a different revision gave the same digest %s", d)
	}
}

// entry is what the tests check of one file in an image's filesystem.
type entry struct {
	Mode     int64
	UID, GID int
	Dir      bool
	Data     string // only for small files
}

func TestBuild(t *testing.T) {
	tests := []struct {
		img      Image
		wantUser string
	}{
		{img: Image{Name: "berth-controller", NonRoot: true}, wantUser: "65532:65532"},
		{img: Image{Name: "berth-speaker"}, wantUser: ""},
	}
	for _, tt := range tests {
		t.Run(tt.img.Name, func(t *testing.T) {
			o := testOptions(t, tt.img.Name)
			idx, err := Build(tt.img, o)
			if err != nil {
				t.Fatal(err)
			}
			im, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			wantAnn := map[string]string{
				"org.opencontainers.image.title":    tt.img.Name,
				"org.opencontainers.image.source":   "https://github.com/berthlb/berth",
				"org.opencontainers.image.revision": "1e5d4115fa1c",
				"org.opencontainers.image.version":  "v0.1.0",
				"org.opencontainers.image.created":  "2026-12-03T09:10:21Z",
				"org.opencontainers.image.licenses": "Apache-2.0",
			}
			if diff := cmp.Diff(wantAnn, im.Annotations); diff != "" {
				t.Errorf("index annotations (-want +got):\n%s", diff)
			}
			if string(im.MediaType) != "application/vnd.oci.image.index.v1+json" || len(im.Manifests) != 2 {
				t.Fatalf("index: media type %s with %d manifests, want an OCI index of 2", im.MediaType, len(im.Manifests))
			}
			for i, want := range []v1.Platform{amd64, arm64} {
				d := im.Manifests[i]
				if d.Platform == nil || d.Platform.String() != want.String() {
					t.Fatalf("manifest %d: platform %v, want %v", i, d.Platform, want)
				}
				img, err := idx.Image(d.Digest)
				if err != nil {
					t.Fatal(err)
				}
				checkImage(t, img, tt.img.Name, want, tt.wantUser, wantAnn)
			}
		})
	}
}

func checkImage(t *testing.T, img v1.Image, name string, p v1.Platform, wantUser string, wantAnn map[string]string) {
	t.Helper()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != p.OS || cfg.Architecture != p.Architecture || cfg.Config.User != wantUser ||
		!cmp.Equal(cfg.Config.Entrypoint, []string{"/usr/local/bin/" + name}) || !cfg.Created.Equal(time.Date(2026, 12, 3, 9, 10, 21, 0, time.UTC)) {
		t.Errorf("%s config: os %s arch %s user %q entrypoint %q created %s", p, cfg.OS, cfg.Architecture, cfg.Config.User, cfg.Config.Entrypoint, cfg.Created)
	}
	if diff := cmp.Diff(wantAnn, cfg.Config.Labels); diff != "" {
		t.Errorf("%s labels (-want +got):\n%s", p, diff)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantAnn, m.Annotations); diff != "" {
		t.Errorf("%s manifest annotations (-want +got):\n%s", p, diff)
	}

	got := map[string]entry{}
	tr := tar.NewReader(mutate.Extract(img))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(cfg.Created.Time) {
			t.Errorf("%s: %s has time %s, want %s", p, h.Name, h.ModTime, cfg.Created.Time)
		}
		e := entry{Mode: h.Mode, UID: h.Uid, GID: h.Gid, Dir: h.Typeflag == tar.TypeDir}
		if b, _ := io.ReadAll(tr); len(b) < 200 {
			e.Data = string(b)
		}
		got[strings.TrimSuffix(h.Name, "/")] = e
	}
	ca := got["etc/ssl/certs/ca-certificates.crt"]
	delete(got, "etc/ssl/certs/ca-certificates.crt")
	if ca.Mode != 0o644 || ca.UID != 0 {
		t.Errorf("%s: CA bundle %+v, want mode 0644 owned by root", p, ca)
	}
	root := func(mode int64) entry { return entry{Mode: mode, Dir: true} }
	want := map[string]entry{
		"etc":                   root(0o755),
		"etc/ssl":               root(0o755),
		"etc/ssl/certs":         root(0o755),
		"etc/passwd":            {Mode: 0o644, Data: passwd},
		"etc/group":             {Mode: 0o644, Data: group},
		"home":                  root(0o755),
		"home/nonroot":          {Mode: 0o700, UID: 65532, GID: 65532, Dir: true},
		"root":                  root(0o700),
		"tmp":                   root(0o1777),
		"usr":                   root(0o755),
		"usr/local":             root(0o755),
		"usr/local/bin":         root(0o755),
		"usr/local/bin/" + name: {Mode: 0o755, Data: "\x7fELF " + name + " for " + p.Architecture},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s files (-want +got):\n%s", p, diff)
	}
}

func TestCABundle(t *testing.T) {
	rest := CABundle()
	var n int
	var amazon bool
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("certificate %d: %v", n, err)
		}
		n++
		amazon = amazon || c.Subject.CommonName == "Amazon Root CA 1"
	}
	if len(strings.TrimSpace(string(rest))) != 0 || n < 100 || !amazon {
		t.Errorf("bundle: %d certificates (want over 100, with Amazon Root CA 1 for AWS's endpoints: %v), %d bytes left over", n, amazon, len(rest))
	}
}

func TestArchiveRoundTrip(t *testing.T) {
	img := Image{Name: "berth-ccm", NonRoot: true}
	idx, err := Build(img, testOptions(t, img.Name))
	if err != nil {
		t.Fatal(err)
	}
	ref := name.MustParseReference("ghcr.io/berthlb/berth-ccm:v0.1.0").(name.Tag)
	dst := filepath.Join(t.TempDir(), "berth-ccm.oci.tar")
	if err := WriteArchive(dst, idx, ref); err != nil {
		t.Fatal(err)
	}
	a, err := ReadArchive(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	want, _ := idx.Digest()
	got, err := a.Index.Digest()
	if err != nil || got != want || a.Ref.String() != ref.String() {
		t.Errorf("read back %s@%s (%v), want %s@%s", a.Ref, got, err, ref, want)
	}
}
