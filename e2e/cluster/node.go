package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/berthlb/berth/e2e/controlplane"
	"github.com/berthlb/berth/e2e/netlab"
)

// Node is one worker: a netlab host running containerd, kubelet and
// kube-proxy.
type Node struct {
	// Name is the Node object's name.
	Name string
	// Host is the node's network namespace on the lab bridge; its IPv4
	// address is the node's InternalIP.
	Host *netlab.Host
	// PodCIDR and PodCIDR6 are the ranges kube-controller-manager gave
	// the node.
	PodCIDR, PodCIDR6 netip.Prefix

	dir         string
	cgroupRoot  string
	kubeletArgs []string
	containerd  *controlplane.Process
	kubelet     *controlplane.Process
	kubeProxy   *controlplane.Process
}

// socket is the node's containerd socket.
func (n *Node) socket() string { return filepath.Join(n.dir, "containerd", "containerd.sock") }

// cniConfDir is where the node's containerd looks for the CNI configuration.
func (n *Node) cniConfDir() string { return filepath.Join(n.dir, "cni", "net.d") }

// containerdConfig is containerd 1.6's configuration for one node.
func (n *Node) containerdConfig(cniBin string) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  # Processes here lack CAP_SYS_RESOURCE: without this every sandbox fails
  # with runc's "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[6]q
    conf_dir = %[7]q
`, filepath.Join(n.dir, "containerd", "root"), filepath.Join(n.dir, "containerd", "state"), n.socket(),
		n.socket()+".ttrpc", PauseImage, cniBin, n.cniConfDir())
}

// kubeletConfig is the node's KubeletConfiguration.
func (n *Node) kubeletConfig(caFile string) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %[1]s
containerRuntimeEndpoint: unix://%[2]s
imageServiceEndpoint: unix://%[2]s
podLogsDir: %[3]s
staticPodPath: %[4]s
address: %[5]s
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
  x509:
    clientCAFile: %[6]s
authorization:
  mode: AlwaysAllow
clusterDomain: cluster.local
failSwapOn: false
nodeStatusUpdateFrequency: 4s
nodeStatusReportFrequency: 20s
syncFrequency: 10s
# Nothing can be pulled again: never collect an image.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%%"
  imagefs.available: "1%%"
  nodefs.inodesFree: "1%%"
serializeImagePulls: false
shutdownGracePeriod: 0s
`, n.cgroupRoot, n.socket(), filepath.Join(n.dir, "pod-logs"), filepath.Join(n.dir, "manifests"),
		n.Host.IPv4, caFile)
}

// cniConfig is the node's CNI network: a bridge with the pod ranges (an
// IPv4 and an IPv6 address per pod), and portmap for hostPort.
func (n *Node) cniConfig(cniState string) string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "berth-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q}], [{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, cniState, n.PodCIDR.String(), n.PodCIDR6.String())
}

// makeCgroupRoot creates the node's cgroupRoot in every mounted v1
// hierarchy (and the unified one): the kubelet refuses a missing one.
func (n *Node) makeCgroupRoot() error {
	for _, h := range cgroupHierarchies() {
		dir := filepath.Join(h, n.cgroupRoot)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cgroup root: %w", err)
		}
		if filepath.Base(h) == "cpuset" {
			// A new cpuset is empty: tasks cannot join it until it
			// has CPUs and memory nodes.
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join(h, f))
				if err != nil {
					return fmt.Errorf("cgroup root: %w", err)
				}
				if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
					return fmt.Errorf("cgroup root: %w", err)
				}
			}
		}
	}
	return nil
}

// removeCgroupRoot removes the node's cgroups, deepest first, once nothing
// runs in them.
func (n *Node) removeCgroupRoot() error {
	var errs []error
	for _, h := range cgroupHierarchies() {
		root := filepath.Join(h, n.cgroupRoot)
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// cgroupHierarchies returns the mounted cgroup hierarchies' directories
// (symlinks such as cpu,cpuacct left out).
func cgroupHierarchies() []string {
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil
	}
	var out []string
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) > 2 && (f[2] == "cgroup" || f[2] == "cgroup2") {
			out = append(out, f[1])
		}
	}
	return out
}

// waitSocket waits until the unix socket path accepts connections.
func waitSocket(ctx context.Context, p *controlplane.Process, path string) error {
	for {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil
		}
		if !p.Running() {
			return p.ExitError()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w\n%s", path, ctx.Err(), p.Tail(40))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ctr runs ctr against the node's containerd in the k8s.io namespace.
func (n *Node) ctr(ctx context.Context, args ...string) (string, error) {
	argv := append([]string{"--address", n.socket(), "--namespace", "k8s.io"}, args...)
	out, err := exec.CommandContext(ctx, "ctr", argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// unmountUnder lazily unmounts every mount point below dir, deepest first
// (the kubelet's volume mounts, containerd's rootfs and shm mounts).
func unmountUnder(dir string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// Stop makes the node fail as a machine would: its link goes down first
// (nothing it sends arrives anywhere any more), then its kubelet,
// containerd and kube-proxy are killed. Its pods' processes stay until the
// cluster's teardown, unreachable, like those of a powered-off machine.
func (n *Node) Stop(ctx context.Context) error {
	if _, err := n.Host.Exec(ctx, "ip", "link", "set", "eth0", "down"); err != nil {
		return err
	}
	for _, p := range []*controlplane.Process{n.kubelet, n.containerd, n.kubeProxy} {
		if p.Running() {
			_ = p.Signal(syscall.SIGKILL)
		}
	}
	return nil
}

// killCgroupProcs SIGKILLs every process in the node's cgroups (its pods'
// containers, which outlive the shims and containerd).
func (n *Node) killCgroupProcs() {
	for _, h := range cgroupHierarchies() {
		_ = filepath.WalkDir(filepath.Join(h, n.cgroupRoot), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			data, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(data)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil && pid > 0 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			return nil
		})
	}
}
