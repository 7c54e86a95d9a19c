package oci

import (
	"bytes"
	"encoding/pem"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// NonRoot is the uid and gid of the unprivileged user the controller and
// berth-ccm run as (the "nonroot" of distroless images).
const NonRoot = 65532

const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group = "root:x:0:\n" +
		"nonroot:x:65532:\n"
)

// CABundle is the PEM bundle written to /etc/ssl/certs/ca-certificates.crt,
// where Go's crypto/x509 looks first on Linux: Mozilla's NSS roots as
// golang.org/x/crypto/x509roots/fallback/bundle ships them, so the bundle
// is pinned by tools/images/go.sum rather than taken from the build host.
// Roots with a constraint PEM cannot express (distrust after a date) are
// left out.
func CABundle() []byte {
	var b bytes.Buffer
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate})
	}
	return b.Bytes()
}

// baseLayer is the layer every image starts with. It does not depend on
// the platform, so all images share one blob.
func baseLayer(mtime time.Time) (v1.Layer, error) {
	return layer([]file{
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte(passwd)},
		{Path: "/etc/group", Mode: 0o644, Data: []byte(group)},
		{Path: "/etc/ssl/certs/ca-certificates.crt", Mode: 0o644, Data: CABundle()},
		{Path: "/home/nonroot", Mode: 0o700, UID: NonRoot, GID: NonRoot, Dir: true},
		{Path: "/root", Mode: 0o700, Dir: true},
		{Path: "/tmp", Mode: 0o1777, Dir: true},
	}, mtime)
}
