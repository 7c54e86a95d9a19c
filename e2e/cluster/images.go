package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// Image references of the test images, as the archives name them.
const (
	PauseImage = "berth.test/pause:e2e"
	EchoImage  = "berth.test/echo:e2e"
)

// buildImages builds the OCI archives of Berth's images (`make images` for
// linux/amd64, tagged with the chart's appVersion so the chart's defaults
// name them) and of the test images into dir, and returns their paths and
// the tag of Berth's images.
func buildImages(ctx context.Context, root, dir string) (archives []string, tag string, err error) {
	chart, err := os.ReadFile(filepath.Join(root, "charts", "berth", "Chart.yaml"))
	if err != nil {
		return nil, "", fmt.Errorf("build images: %w", err)
	}
	m := regexp.MustCompile(`(?m)^appVersion:\s*"?([^"\s]+)"?`).FindSubmatch(chart)
	if m == nil {
		return nil, "", fmt.Errorf("build images: no appVersion in charts/berth/Chart.yaml")
	}
	tag = string(m[1])
	rel, err := filepath.Rel(root, filepath.Join(dir, "dist"))
	if err != nil {
		return nil, "", err
	}
	testBin := filepath.Join(dir, "test", "bin", "linux_amd64")
	steps := [][]string{
		// The Makefile writes under $(CURDIR)/$(DIST): DIST is relative.
		{"make", "--no-print-directory", "images", "IMAGE_PLATFORMS=linux/amd64", "VERSION=" + tag, "DIST=" + rel},
		{"go", "build", "-trimpath", "-ldflags", "-s -w", "-o", testBin + "/", "./e2e/cluster/testimages/pause", "./e2e/cluster/testimages/echo"},
		{"go", "-C", "tools/images", "run", ".", "build", "-binaries", filepath.Join(dir, "test", "bin"), "-out", filepath.Join(dir, "test", "images"),
			"-platforms", "linux/amd64", "-repository", "berth.test", "-version", "e2e", "-nonroot-images", "pause,echo"},
	}
	for _, argv := range steps {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		// When ctx ends (Ctrl-C in the demo), stop the whole step, not
		// only make or go: their children hold the output pipe open.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 5 * time.Second
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, "", fmt.Errorf("build images: %s: %w\n%s", strings.Join(argv, " "), err, out)
		}
	}
	for _, name := range []string{"berth-controller", "berth-speaker", "berth-ccm"} {
		archives = append(archives, filepath.Join(dir, "dist", "images", name+".oci.tar"))
	}
	for _, name := range []string{"pause", "echo"} {
		archives = append(archives, filepath.Join(dir, "test", "images", name+".oci.tar"))
	}
	return archives, tag, nil
}
