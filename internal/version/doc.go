// Package version says which Berth a binary is: the version and commit the
// build set with -ldflags -X (see the Makefile's LDFLAGS), or, for a plain
// `go build`, what the Go toolchain recorded from version control.
//
// It must stay tiny and import nothing of Berth's: every command links it.
package version
