// Package testimages holds the programs of the two images that the cluster
// of package cluster runs besides Berth's: pause, the sandbox image every
// Pod starts with (nothing can be pulled, so registry.k8s.io/pause is not an
// option), and echo, a tiny HTTP server that tells who answered whom. Both
// are built into OCI archives by the images tool (tools/images) and imported
// into each node's containerd.
package testimages
