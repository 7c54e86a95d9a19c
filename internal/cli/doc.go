// Package cli is the little that every Berth command's main shares: klog
// flags (including --v), --version, a context cancelled by SIGINT and
// SIGTERM with a logger in it, and turning an error into a non-zero exit.
package cli
