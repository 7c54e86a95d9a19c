package e2e

import (
	"os"
	"testing"
)

// TestMain removes the Berth binaries the tests built (some 370 MB per
// run), which nothing else removes.
func TestMain(m *testing.M) {
	code := m.Run()
	if berthBins.dir != "" {
		_ = os.RemoveAll(berthBins.dir)
	}
	os.Exit(code)
}
