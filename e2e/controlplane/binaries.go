package controlplane

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
)

// buildScript is the single entry point that builds or reuses the binaries;
// `make controlplane` runs the same script.
const buildScript = "hack/build-controlplane.sh"

// Binaries returns the paths of the kube-apiserver and etcd binaries; see
// BinaryPaths.
func Binaries(ctx context.Context) (apiserver, etcd string, err error) {
	p, err := BinaryPaths(ctx)
	return p.APIServer, p.Etcd, err
}

// Paths are the absolute paths of the binaries that
// hack/build-controlplane.sh builds.
type Paths struct {
	APIServer string
	Etcd      string
	// KubeProxy is the upstream kube-proxy, for tests that check Berth's
	// forwarding against the real NodePort implementation.
	KubeProxy string
}

// BinaryPaths returns the paths of the kube-apiserver, etcd and kube-proxy
// binaries, building them with hack/build-controlplane.sh if the cache does
// not hold binaries for the current tools modules yet.
//
// The cache is $BERTH_CACHE/bin, by default $HOME/.cache/berth/bin. A cold
// build takes about fifteen minutes on two cores, longer than go test's
// default ten-minute timeout: run `make controlplane` first or pass a larger
// -timeout. Progress lines are logged to the logger in ctx.
func BinaryPaths(ctx context.Context) (Paths, error) {
	out, err := runBuildScript(ctx)
	if err != nil {
		return Paths{}, err
	}
	p := Paths{APIServer: out["kube-apiserver"], Etcd: out["etcd"], KubeProxy: out["kube-proxy"]}
	if p.APIServer == "" || p.Etcd == "" || p.KubeProxy == "" {
		return Paths{}, fmt.Errorf("build control plane binaries: %s printed no paths: %v", buildScript, out)
	}
	return p, nil
}

// ClusterPaths are the binaries of a real cluster (package e2e/cluster):
// the control plane's and the nodes'.
type ClusterPaths struct {
	Paths
	ControllerManager string
	Scheduler         string
	Kubelet           string
	// CNIPlugins is a directory holding the bridge, host-local, loopback
	// and portmap plugins.
	CNIPlugins string
}

// ClusterBinaryPaths returns the paths of everything BinaryPaths returns
// plus kube-controller-manager, kube-scheduler, kubelet and the CNI
// plugins, building what the cache lacks (`hack/build-controlplane.sh
// cluster`; a few minutes once kube-apiserver is built).
func ClusterBinaryPaths(ctx context.Context) (ClusterPaths, error) {
	out, err := runBuildScript(ctx, "cluster")
	if err != nil {
		return ClusterPaths{}, err
	}
	p := ClusterPaths{
		Paths:             Paths{APIServer: out["kube-apiserver"], Etcd: out["etcd"], KubeProxy: out["kube-proxy"]},
		ControllerManager: out["kube-controller-manager"],
		Scheduler:         out["kube-scheduler"],
		Kubelet:           out["kubelet"],
		CNIPlugins:        out["cni-plugins"],
	}
	for _, v := range []string{p.APIServer, p.Etcd, p.KubeProxy, p.ControllerManager, p.Scheduler, p.Kubelet, p.CNIPlugins} {
		if v == "" {
			return ClusterPaths{}, fmt.Errorf("build cluster binaries: %s cluster printed no paths: %v", buildScript, out)
		}
	}
	return p, nil
}

// runBuildScript runs the build script with args and returns the name=path
// lines it printed.
func runBuildScript(ctx context.Context, args ...string) (map[string]string, error) {
	logger := klog.FromContext(ctx).WithName("controlplane")
	root, err := RepoRoot()
	if err != nil {
		return nil, fmt.Errorf("build control plane binaries: %w", err)
	}
	var stdout bytes.Buffer
	progress := &lineLogger{logger: logger}
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(root, buildScript)}, args...)...)
	cmd.Dir = root
	cmd.Stdout = &stdout
	cmd.Stderr = progress
	// The script runs go build as a child: on cancellation kill the whole
	// process group, not just bash.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w); run `make controlplane` once or raise go test -timeout", err, ctx.Err())
		}
		return nil, fmt.Errorf("build control plane binaries: %s: %w\n%s", buildScript, err, progress.tail())
	}
	out := map[string]string{}
	for line := range strings.Lines(stdout.String()) {
		key, value, _ := strings.Cut(strings.TrimSpace(line), "=")
		out[key] = value
	}
	return out, nil
}

// RepoRoot returns the root of the Berth repository that this package was
// built from: the directory of this source file when it is on disk (go test
// without -trimpath), otherwise the nearest parent of the working directory
// whose go.mod declares the Berth module.
func RepoRoot() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		root := filepath.Join(filepath.Dir(file), "..", "..")
		if _, err := os.Stat(filepath.Join(root, buildScript)); err == nil {
			return filepath.Clean(root), nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(data, []byte("module github.com/berthlb/berth\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find repository root: no go.mod for github.com/berthlb/berth above the working directory")
		}
		dir = parent
	}
}

// lineLogger is an io.Writer that logs each complete line and remembers the
// last few for error messages.
type lineLogger struct {
	logger  logr.Logger
	mu      sync.Mutex
	partial []byte
	last    []string
}

const tailLines = 40

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		l.logger.Info(line)
		l.last = append(l.last, line)
		if len(l.last) > tailLines {
			l.last = l.last[len(l.last)-tailLines:]
		}
	}
}

func (l *lineLogger) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(append(l.last, string(l.partial)), "\n")
}

// fileTail returns the last n lines of the file at path, for error messages
// about a process that exited.
func fileTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 2*n {
			lines = lines[len(lines)-n:]
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
