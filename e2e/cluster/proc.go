package cluster

import (
	"github.com/berthlb/berth/e2e/controlplane"
)

// startProc starts argv as the daemon name, logging to dir/name.log, in the
// network namespace netns unless it is empty. It uses nsenter, not `ip netns
// exec`: the latter remounts /sys, which would hide the cgroup hierarchies
// from the kubelet; nsenter execs argv, so signals reach the daemon itself.
func startProc(dir, name, netns string, argv ...string) (*controlplane.Process, error) {
	if netns != "" {
		argv = append([]string{"nsenter", "--net=/run/netns/" + netns, "--"}, argv...)
	}
	return controlplane.StartProcess(dir, name, argv...)
}
