package cluster

import (
	"context"
	"os"
	"testing"

	"github.com/go-logr/logr"
)

// TestNewRemovesWhatItMadeOnFailure: a New that fails after making the
// cluster's directory (here its context is cancelled, so the first build
// step fails) returns the error and leaves no directory behind.
func TestNewRemovesWhatItMadeOnFailure(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	c, err := New(ctx, Options{Nodes: 2}, logr.Discard())
	if err == nil {
		_ = c.Close()
		t.Fatal("New with a cancelled context succeeded")
	}
	t.Logf("New failed as it should: %v", err)
	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("New left %s in the temporary directory", e.Name())
	}
}
