// Package oci builds Berth's container images without a container daemon
// and without pulling a base image: each image is one static binary on an
// empty base plus a small, shared layer with /etc/passwd, /etc/group, /tmp
// and the CA bundle. It writes multi-platform image indexes as OCI
// image-layout tarballs (which `ctr images import` reads) and pushes them
// to a registry.
//
// Everything is a function of its inputs: file times, owners and modes are
// fixed, entries are sorted and the creation time is given, so the same
// binaries and options give the same digests on any machine.
//
// It must not be linked into Berth's commands: it lives in its own module
// (tools/images) so that go-containerregistry stays out of their
// dependencies.
package oci
