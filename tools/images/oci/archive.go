package oci

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// Annotations on the index's entry in index.json that name the image.
const (
	// refNameAnnotation is the OCI image-layout name: the tag.
	refNameAnnotation = "org.opencontainers.image.ref.name"
	// containerdNameAnnotation is the full reference containerd's import
	// (`ctr images import`) gives the image.
	containerdNameAnnotation = "io.containerd.image.name"
)

// WriteArchive writes idx as an OCI image layout, tarred into the file
// dst, with ref as its name. The tarball's entries are sorted and have
// fixed times and owners, so the same index gives the same file.
func WriteArchive(dst string, idx v1.ImageIndex, ref name.Tag) error {
	dir, err := os.MkdirTemp("", "berth-oci-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write layout: %w", err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		refNameAnnotation:        ref.TagStr(),
		containerdNameAnnotation: ref.Name(),
	})); err != nil {
		return fmt.Errorf("write layout: %w", err)
	}
	return tarDir(dst, dir)
}

// tarDir writes the regular files under dir into the tarball dst, sorted,
// with directories, time zero and root ownership.
func tarDir(dst, dir string) (err error) {
	var names []string
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if d.IsDir() {
			rel += "/"
		}
		names = append(names, filepath.ToSlash(rel))
		return err
	}); err != nil {
		return fmt.Errorf("read layout: %w", err)
	}
	slices.Sort(names)
	out, err := os.Create(dst + ".tmp")
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(dst+".tmp", dst)
		} else {
			os.Remove(dst + ".tmp")
		}
	}()
	tw := tar.NewWriter(out)
	for _, n := range names {
		h := &tar.Header{Name: n, ModTime: time.Unix(0, 0).UTC(), Mode: 0o644, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if strings.HasSuffix(n, "/") {
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			continue
		}
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(n)))
		if err != nil {
			return err
		}
		st, err := f.Stat()
		if err == nil {
			h.Size = st.Size()
			err = tw.WriteHeader(h)
		}
		if err == nil {
			_, err = io.Copy(tw, f)
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("archive %s: %w", n, err)
		}
	}
	return tw.Close()
}

// Archive is an image index read back from WriteArchive's file. Close
// removes the unpacked copy.
type Archive struct {
	Index v1.ImageIndex
	// Ref is the name the archive was written with.
	Ref name.Tag
	dir string
}

// Close removes the unpacked layout.
func (a *Archive) Close() error { return os.RemoveAll(a.dir) }

// ReadArchive unpacks WriteArchive's file and returns its index and name.
func ReadArchive(src string) (_ *Archive, err error) {
	dir, err := os.MkdirTemp("", "berth-oci-layout-")
	if err != nil {
		return nil, err
	}
	a := &Archive{dir: dir}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if err := untar(src, dir); err != nil {
		return nil, fmt.Errorf("unpack %s: %w", src, err)
	}
	root, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("read layout %s: %w", src, err)
	}
	m, err := root.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read layout %s: %w", src, err)
	}
	if len(m.Manifests) != 1 {
		return nil, fmt.Errorf("read layout %s: want one image index, found %d entries", src, len(m.Manifests))
	}
	d := m.Manifests[0]
	if a.Ref, err = name.NewTag(d.Annotations[containerdNameAnnotation]); err != nil {
		return nil, fmt.Errorf("read layout %s: image name: %w", src, err)
	}
	if a.Index, err = root.ImageIndex(d.Digest); err != nil {
		return nil, fmt.Errorf("read layout %s: %w", src, err)
	}
	return a, nil
}

// untar unpacks the regular files and directories of src into dir.
func untar(src, dir string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		clean := path.Clean(h.Name)
		if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
			return fmt.Errorf("entry %q leaves the archive", h.Name)
		}
		target := filepath.Join(dir, filepath.FromSlash(clean))
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(target, 0o755)
		case tar.TypeReg:
			err = writeFile(target, tr)
		default:
			err = fmt.Errorf("entry %q: unexpected type %c", h.Name, h.Typeflag)
		}
		if err != nil {
			return err
		}
	}
}

func writeFile(target string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	w, err := os.Create(target)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}
