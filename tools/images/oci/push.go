package oci

import (
	"context"
	"fmt"
	"path"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Push uploads the index of the archive file src to registry (a host, or
// host/path), under the archive's repository name and tag:
// <registry>/<image name>:<tag>. It returns the reference and the index's
// digest. Credentials come from the Docker config (~/.docker/config.json),
// as `docker login` or `crane auth login` write it.
func Push(ctx context.Context, src, registry string, opts ...name.Option) (name.Tag, v1.Hash, error) {
	a, err := ReadArchive(src)
	if err != nil {
		return name.Tag{}, v1.Hash{}, err
	}
	defer a.Close()
	ref, err := name.NewTag(registry+"/"+path.Base(a.Ref.RepositoryStr())+":"+a.Ref.TagStr(), opts...)
	if err != nil {
		return name.Tag{}, v1.Hash{}, fmt.Errorf("push %s: %w", src, err)
	}
	if err := remote.WriteIndex(ref, a.Index, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return name.Tag{}, v1.Hash{}, fmt.Errorf("push %s to %s: %w", src, ref, err)
	}
	d, err := a.Index.Digest()
	return ref, d, err
}
